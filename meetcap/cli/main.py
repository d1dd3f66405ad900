"""`meetcap` entry point: no subcommand launches the app."""

from __future__ import annotations

import argparse
import sys

from meetcap.errors import MeetcapError


def build_parser() -> argparse.ArgumentParser:
    from meetcap.cli import devices, record

    parser = argparse.ArgumentParser(
        prog="meetcap",
        description="Capture your microphone and the meeting's system audio as speech-ready audio.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{devices,record}")
    devices.add_parser(sub)
    record.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command is None:
        try:
            from meetcap.gui.app import main as gui_main
        except ImportError as exc:
            print(f"meetcap: the desktop app cannot start: {exc}", file=sys.stderr)
            return 1
        return gui_main([])
    try:
        return args.run(args)
    except MeetcapError as exc:
        print(f"meetcap: {exc}", file=sys.stderr)
        return 2
