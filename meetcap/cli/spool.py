"""`meetcap spool`: recordings waiting in the local spool; deliver or discard them."""

from __future__ import annotations

import argparse
import json
import sys

from meetcap import paths
from meetcap.errors import ConfigError

EXIT_OK = 0
EXIT_DECLINED = 1  # discard: the answer at the prompt was not yes
EXIT_ERROR = 2  # unknown id, missing token, busy recording, no terminal to confirm...
EXIT_NOT_DELIVERED = 3  # deliver: the server did not take it; it stays in the spool
EXIT_DELIVERED_WITH_LOSS = 4  # deliver: delivered, but audio damaged on disk went as silence

_EPILOG = """\
Every recording in the spool remembers where it belongs: the server URL and the account
(a fingerprint of the token, never the token itself), or the app's built-in server. It is
delivered automatically only by a later recording to the same server and account, and
otherwise waits here.

exit codes:
  0  done (listed, delivered and confirmed by the server, or discarded)
  1  discard: not confirmed at the prompt (nothing was deleted)
  2  error: unknown id, missing or bad --url/--token, the recording is held by another
     meetcap process, discard without a terminal and without --yes
  3  deliver: the server did not confirm it (refused, or unreachable within --timeout);
     the recording stays in the spool and `meetcap spool list` says why
  4  deliver: delivered and confirmed, but part of its audio was damaged or missing on
     disk: those frames were sent as silence (or, after the last intact frame, cut off),
     and the message names them

A recording whose audio is damaged on disk is listed as "damaged", with the frames
concerned; the rest of it is delivered as usual. One whose session.json is missing or
damaged is listed as "unreadable": it can only be discarded.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "spool", help="list, deliver or discard recordings waiting in the local spool",
        description="Recordings the server has not confirmed yet wait in the local spool. "
                    "Without an action: list them.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(parser)
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="list as JSON for scripts")
    actions = parser.add_subparsers(dest="action", metavar="{list,deliver,discard}")

    listing = actions.add_parser(
        "list", help="what is waiting: destination, start time, duration, frames, why",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(listing)
    listing.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                         help="print a JSON list for scripts")

    deliver = actions.add_parser(
        "deliver", help="send one recording to its server (or, with --url/--token, to "
                        "another server or account) and wait for the confirmation",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(deliver)
    deliver.add_argument("id", help="the recording's id (see `meetcap spool list`)")
    deliver.add_argument("--url", help="send it to this server instead of the recorded one "
                                       "(the recording then belongs there)")
    deliver.add_argument("--token", help="bearer token for the recorded server or --url; a "
                                         "token for another account re-binds the recording")
    deliver.add_argument("--timeout", type=float, default=120.0, metavar="S",
                         help="how long to wait for the server to confirm (default 120)")

    discard = actions.add_parser(
        "discard", help="delete one recording from the spool (its audio is lost)",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(discard)
    discard.add_argument("id", help="the recording's id (see `meetcap spool list`)")
    discard.add_argument("--yes", action="store_true",
                         help="do not ask (needed without a terminal)")
    parser.set_defaults(run=run)


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given before or after the action, the value is kept (no default overwrites it).
    parser.add_argument("--data-dir", metavar="DIR", default=argparse.SUPPRESS,
                        help="meetcap's data folder, as for the app (default: "
                             "$MEETCAP_DATA_DIR or the user's data folder); the spool is "
                             "its spool/ folder")


def run(args: argparse.Namespace) -> int:
    from meetcap.client import pending

    root = paths.spool_dir(getattr(args, "data_dir", None))
    action = getattr(args, "action", None) or "list"
    if action == "list":
        return _list(pending.list_pending(root), root, getattr(args, "json", False))
    if action == "deliver":
        return _deliver(args, root)
    return _discard(args, root)


def _list(recordings, root, as_json: bool) -> int:
    from meetcap.client.pending import format_duration, format_started

    if as_json:
        print(json.dumps([r.to_json() for r in recordings], indent=2))
        return EXIT_OK
    if not recordings:
        print(f"Nothing waits in the spool ({root}).")
        return EXIT_OK
    print(f"{len(recordings)} recording(s) wait in the spool ({root}):")
    for r in recordings:
        acked = f", {r.frames_acked} confirmed" if r.frames_acked else ""
        print(f"\n  {r.local_id}\n"
              f"    to:      {r.describe_destination()}\n"
              f"    started: {format_started(r.started_at)}, {format_duration(r.duration_s)} "
              f"({r.frames} frames{acked})\n"
              f"    waiting: {r.why}")
    print("\nDeliver one with `meetcap spool deliver ID --token TOKEN`, delete one with "
          "`meetcap spool discard ID`.")
    return EXIT_OK


def _deliver(args: argparse.Namespace, root) -> int:
    from meetcap.client.pending import deliver

    if args.url and not args.token:
        raise ConfigError("--url needs --token (the bearer token that server gave you)")
    print(f"delivering {args.id}...", flush=True)
    result = deliver(root, args.id, url=args.url, token=args.token, timeout_s=args.timeout)
    print(result.message)
    if not result.ok and result.lost and not result.frames_left:
        print(f"meetcap: recording {args.id} was delivered, but audio the spool lost went "
              "as silence (see above)", file=sys.stderr)
        return EXIT_DELIVERED_WITH_LOSS
    if not result.ok:
        print(f"meetcap: recording {args.id} stays in the spool", file=sys.stderr)
        return EXIT_NOT_DELIVERED
    return EXIT_OK


def _discard(args: argparse.Namespace, root) -> int:
    from meetcap.client.pending import discard, find_pending

    found = find_pending(root, args.id)  # PendingNotFound: a clear one-line error
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError(
                f"discarding deletes the audio of {args.id} for good; without a terminal to "
                "confirm, pass --yes"
            )
        try:
            answer = input(
                f"Delete recording {args.id}: {found.frames} frames ({found.duration_s:.1f} s) "
                f"for {found.describe_destination()}? This cannot be undone [y/N] "
            )
        except EOFError:  # Ctrl-D: no answer is no
            answer = ""
            print()
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return EXIT_DECLINED
    discard(root, args.id)
    print(f"discarded {args.id}")
    return EXIT_OK
