"""``meetcap`` with no subcommand: the desktop app.

``main(argv)`` builds the QApplication, the window and the tray icon, runs the event
loop and, on the way out, stops a running session (what the server has not confirmed
in time stays in the spool for the next start) and saves the settings.

Options (for packaging checks, benchmarks and screenshots; people just run ``meetcap``):
``--smoke-test[=S]`` opens the window, prints that it was shown and exits 0 after S
seconds (default 1; 1 if the window never showed);
``--start`` starts recording at launch; ``--settings FILE`` uses an INI file instead of
the user's settings; ``--data-dir DIR`` stores sessions and spools there.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from meetcap.gui import icons
from meetcap.gui.main_window import MainWindow
from meetcap.gui.session_controller import SessionController
from meetcap.gui.settings import APPLICATION, ORGANIZATION, SettingsStore
from meetcap.gui.theme import apply_theme
from meetcap.gui.tray import Tray

# At quit, how long to wait for the server to confirm the last frames (the rest is safe
# in the spool and sent at the next start).
QUIT_FINISH_TIMEOUT_S = 10.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meetcap", description="meetcap desktop app")
    parser.add_argument("--smoke-test", nargs="?", const=1.0, type=float, metavar="SECONDS",
                        help="open the window, then exit 0 after SECONDS (default 1)")
    parser.add_argument("--start", action="store_true", help="start recording at launch")
    parser.add_argument("--settings", metavar="FILE", help="settings INI file to use")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="where the built-in server stores sessions (and the spools)")
    return parser


def display_problem(env: Mapping[str, str] = os.environ,
                    platform: str = sys.platform) -> str | None:
    """Why no window can open here, in words, or None. On Linux without X11 or Wayland
    (an SSH session, a server) Qt would abort with a message about platform plugins."""
    if not platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None  # other systems always have a screen; a chosen Qt platform is trusted
    if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"):
        return None
    return ("there is no display to show the window on (neither DISPLAY nor "
            "WAYLAND_DISPLAY is set). Start meetcap from your desktop session, or record "
            "without a window: meetcap record --help")


def main(argv: list[str] | None = None) -> int:
    """Run the app until its window is closed; returns the process exit code."""
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    problem = display_problem()
    if problem is not None:
        print(f"meetcap: {problem}", file=sys.stderr)
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    # argv[0] "meetcap" names the X11 window class (WM_CLASS), as the .desktop file expects.
    app = QApplication.instance() or QApplication(["meetcap"])
    assert isinstance(app, QApplication)
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("meetcap")
    app.setDesktopFileName("meetcap")  # matches resources/meetcap.desktop (Wayland icons)
    app.setWindowIcon(icons.icon("meetcap"))
    apply_theme(app)

    store = SettingsStore.at_path(args.settings) if args.settings else SettingsStore()
    controller = SessionController(
        store.load(), data_root=Path(args.data_dir) if args.data_dir else None
    )
    window = MainWindow(controller, store)
    tray = Tray(window)
    controller.start_services()  # after the window and tray listen (either order is safe)
    window.show()
    QTimer.singleShot(0, window.offer_pending_recordings)
    if args.start:
        QTimer.singleShot(0, window.start_recording)
    _quit_on_signals(window)
    if args.smoke_test is not None:
        window.confirm_quit = lambda parent: True  # unattended: never wait for an answer
        QTimer.singleShot(int(args.smoke_test * 1000), lambda: _end_smoke_test(window))
    app.setQuitOnLastWindowClosed(True)
    code = app.exec()
    tray.icon.hide()
    window.save_settings()
    controller.shutdown(QUIT_FINISH_TIMEOUT_S)
    result = controller.recorder.last_result
    if result is not None and not result.ok:
        print(f"meetcap: {result.message}", file=sys.stderr)
    return code


def _end_smoke_test(window: MainWindow) -> None:
    """Say whether the window was really up (packaging checks read this line), then
    close it as a person would (exit code 1 if it never showed)."""
    size = window.size()
    if window.isVisible() and size.width() > 0 and size.height() > 0:
        print(f"meetcap smoke test: window {window.windowTitle()!r} shown at "
              f"{size.width()}x{size.height()}", flush=True)
    else:
        print("meetcap smoke test: the window was not shown", file=sys.stderr, flush=True)
        QApplication.exit(1)
        return
    window.close()


def _quit_on_signals(window: MainWindow) -> None:
    """SIGTERM / Ctrl-C end the app like closing the window, without the question (the
    system or the person at the terminal has already decided): the session is stopped
    and finished on the way out. Python runs the handler between Qt events; the window's
    timers make sure there are some."""

    def handle(signum: int, frame: object) -> None:
        window.confirm_quit = lambda parent: True
        QTimer.singleShot(0, window.close)

    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(signum, handle)
        except ValueError:  # not the main thread (embedded use): leave the defaults
            return


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
