"""`meetcap` entry point: no subcommand launches the app; `devices`, `record` and `spool`
are headless. Also run by ``python -m meetcap``."""

from __future__ import annotations

import argparse
import sys

from meetcap import __version__
from meetcap.errors import MeetcapError

EXIT_OK = 0
EXIT_NO_APP = 1  # the desktop app cannot start here
EXIT_ERROR = 2  # a MeetcapError: bad device, bad setting, unwritable file...
# Options of `meetcap` itself; any other leading option belongs to the desktop app.
_OWN_OPTIONS = ("-h", "--help", "--version")


def build_parser() -> argparse.ArgumentParser:
    from meetcap.cli import devices, record, spool, transcribe

    parser = argparse.ArgumentParser(
        prog="meetcap",
        description="Capture your microphone and the meeting's system audio as speech-ready "
                    "audio. Without a command, the desktop app starts.",
        epilog="The desktop app also takes: --start (record at launch), --settings FILE, "
               "--data-dir DIR, --smoke-test[=SECONDS] (open the window, then quit).",
    )
    parser.add_argument("--version", action="version", version=f"meetcap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{devices,record,spool,transcribe}")
    devices.add_parser(sub)
    record.add_parser(sub)
    spool.add_parser(sub)
    transcribe.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the process exit code (0 ok, 2 on a MeetcapError,
    whose message is printed without a traceback)."""
    import multiprocessing

    # The built-in server's transcription workers are spawned processes: in a frozen
    # app (PyInstaller) each starts as this executable and must run the worker, not this.
    multiprocessing.freeze_support()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in _OWN_OPTIONS):
        return _run_app(argv)  # no command: the app, with its own options
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except MeetcapError as exc:
        print(f"meetcap: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:  # Ctrl-C outside `record`'s own handling (e.g. while listing)
        return 130


def _run_app(argv: list[str]) -> int:
    try:
        from meetcap.gui.app import main as gui_main
    except ModuleNotFoundError as exc:
        if exc.name in ("meetcap.gui", "meetcap.gui.app"):
            print("meetcap: this installation has no desktop app; use `meetcap devices` and "
                  "`meetcap record` (see `meetcap --help`)", file=sys.stderr)
        else:
            print(f"meetcap: the desktop app cannot start: {exc}. Reinstall meetcap "
                  "(the app needs PySide6-Essentials)", file=sys.stderr)
        return EXIT_NO_APP
    return int(gui_main(argv) or 0)  # meetcap.gui.app.main() -> exit code (or None)
