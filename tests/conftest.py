"""Shared pytest set-up: the fixtures that start real services live in tests/support/."""

import os

# Qt widgets render offscreen in tests unless a test asks for a real display (Xvfb).
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

pytest_plugins = [
    "tests.support.pulse",  # a private PulseAudio server with virtual devices
    "tests.support.speech",  # espeak-ng speech with known speech spans
    "tests.support.redis_server",  # Debian's redis-server on a free port
    "tests.support.server_proc",  # meetcap-server subprocesses
]
