"""`meetcap devices [--json]`: the capture sources and their ids."""

from __future__ import annotations

import argparse
import json

from meetcap.audio.devices import list_devices, loopback_guidance


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("devices", help="list microphones and system-audio sources")
    parser.add_argument("--json", action="store_true", help="print a JSON list for scripts")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the devices (marking defaults), or a JSON list with ``--json``: one object
    per device with id, name, kind ("mic" | "loopback"), default, host_api, rate_hz,
    channels."""
    devices = list_devices()
    if args.json:
        print(json.dumps([d.to_json() for d in devices], indent=2))
        return 0
    if not devices:
        print("No capture devices found.")
    for kind, title in (("mic", "Microphones"), ("loopback", "System audio (loopback)")):
        print(f"{title}:")
        for d in (d for d in devices if d.kind == kind):
            mark = "*" if d.default else " "
            print(f" {mark} {d.name}\n      id: {d.id}  ({d.rate_hz} Hz, {d.channels} ch)")
    print("* = system default. Pass an id to `meetcap record --mic ID --system ID`.")
    guidance = loopback_guidance(devices)
    if guidance:
        print(f"\n{guidance}")
    return 0
