"""Starting the app where it cannot show a window says so in words."""

from __future__ import annotations

import os
import subprocess
import sys

from meetcap.gui.app import display_problem


def test_without_a_display_the_app_says_what_to_do_instead_of_aborting(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    run = subprocess.run([sys.executable, "-m", "meetcap", "--data-dir", str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert "no display to show the window on" in run.stderr
    assert "meetcap record" in run.stderr
    assert "platform plugin" not in run.stderr and "Traceback" not in run.stderr


def test_a_display_or_a_chosen_qt_platform_lets_the_app_start():
    assert display_problem({"DISPLAY": ":0"}, "linux") is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux") is None
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux") is None
    assert display_problem({}, "darwin") is None and display_problem({}, "win32") is None
    assert display_problem({}, "linux") is not None
