"""The app survives PySide6 6.12.0's None reference leak on Python < 3.12 (qt_compat)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from meetcap.gui import qt_compat

# Many more void Qt calls than None has references in a fresh interpreter (~5,000-10,000),
# as a meter repainting at 60 fps makes in well under a minute.
_HAMMER = """
import sys
{prelude}
from PySide6.QtCore import QSize
size = QSize()
for _ in range(200_000):
    size.setWidth(1)
print("survived")
"""


def _run(prelude: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _HAMMER.format(prelude=prelude)],
                          capture_output=True, text=True, timeout=60)


def test_the_app_survives_many_void_qt_calls():
    result = _run("import meetcap.gui")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "survived" in result.stdout


def test_without_the_workaround_this_pyside_build_would_abort():
    probe = subprocess.run(
        [sys.executable, "-c",
         "from meetcap.gui.qt_compat import leaks_none_references as f; print(f())"],
        capture_output=True, text=True, timeout=60,
    )
    if probe.stdout.strip() != "True":
        pytest.skip("this PySide6/Python pair does not leak references to None")
    result = _run("")
    assert result.returncode != 0 and "none_dealloc" in result.stderr
    assert qt_compat.apply(), "the workaround is active in this test process too"
