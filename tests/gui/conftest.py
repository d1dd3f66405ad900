"""Fixtures of the GUI tests: isolated settings, the app window on a real session.

Qt runs offscreen (tests/conftest.py sets QT_QPA_PLATFORM unless a display is asked
for). Every QSettings the code might create without a path goes to a temporary folder,
so no test can read or write the real user's settings.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
from PySide6.QtCore import QSettings  # noqa: E402

from meetcap.gui.settings import SettingsStore  # noqa: E402
from meetcap.session import SessionSettings  # noqa: E402
from tests.gui.helpers import app_settings  # noqa: E402

# Reconnect quickly in tests (the defaults suit a real network).
FAST_STREAMER = dict(backoff_base_s=0.05, backoff_cap_s=0.5, healthy_after_s=2.0,
                     quick_failure_s=0.5, open_timeout_s=2.0)


@pytest.fixture(autouse=True)
def isolated_qsettings(tmp_path_factory: pytest.TempPathFactory):
    """Redirect the default QSettings locations (user and system scope) to a temp dir."""
    folder = tmp_path_factory.mktemp("qsettings")
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, str(folder))
    yield folder


@pytest.fixture
def store(tmp_path) -> SettingsStore:
    return SettingsStore.at_path(tmp_path / "settings.ini")


@pytest.fixture
def pane(qtbot):
    """A transcript pane of its own, shown at the app's size (offscreen)."""
    from meetcap.gui.transcript_pane import TranscriptPane

    pane = TranscriptPane()
    qtbot.addWidget(pane)
    pane.resize(700, 320)
    pane.show()
    qtbot.waitExposed(pane)
    return pane


@pytest.fixture
def make_window(qtbot, tmp_path):
    """Build the real window + controller (+ tray) on given settings; torn down after."""
    from meetcap.gui.main_window import MainWindow
    from meetcap.gui.session_controller import SessionController
    from meetcap.gui.tray import Tray

    made = []

    def make(settings: SessionSettings | None = None, *, finish_timeout_s: float = 20.0,
             streamer_options: dict | None = None):
        store = SettingsStore.at_path(tmp_path / f"settings-{len(made)}.ini")
        controller = SessionController(
            settings or app_settings(), data_root=tmp_path / f"data-{len(made)}",
            streamer_options=streamer_options if streamer_options is not None
            else FAST_STREAMER,
            finish_timeout_s=finish_timeout_s, device_poll_s=0.5,
        )
        window = MainWindow(controller, store)
        tray = Tray(window)
        controller.start_services()
        window.confirm_quit = lambda parent: True
        qtbot.addWidget(window)
        window.show()
        made.append((window, controller, tray))
        return window, controller, tray

    yield make
    for window, controller, tray in made:
        tray.icon.hide()
        controller.shutdown(timeout_s=10.0)
        window.close()
