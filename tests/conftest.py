"""Shared pytest set-up: the fixtures that start real services live in tests/support/."""

import os
from pathlib import Path

# Qt widgets render offscreen in tests unless a test asks for a real display (Xvfb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

_SUPPORT = Path(__file__).parent / "support"
# TEMPORARY while the fixture modules are being written: register those that exist.
pytest_plugins = [
    f"tests.support.{name}"
    for name in ("pulse", "speech", "redis_server", "server_proc")
    if (_SUPPORT / f"{name}.py").exists()
]
