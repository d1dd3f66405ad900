"""``meetcap-server``: the command line of the meetcap streaming server.

Prints ``meetcap-server listening on ws://HOST:PORT/v1/stream`` (flushed) once it
listens, so scripts and tests can start it with ``--port 0`` and read the real port.
SIGTERM / SIGINT shut it down gracefully (going_away + close 1012 to every client).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from meetcap import redact
from meetcap.errors import ConfigError, StorageError
from meetcap.oscalls import on_shutdown_signals, raise_open_file_limit
from meetcap.server import memtrace
from meetcap.server.config import (
    TOKENS_ENV,
    FsyncMode,
    ServerConfig,
    default_data_dir,
    load_tokens,
)
from meetcap.server.transcription import TranscriptionConfig

LISTENING_PREFIX = "meetcap-server listening on "


def build_parser() -> argparse.ArgumentParser:
    defaults = ServerConfig.__dataclass_fields__
    d = {name: f.default for name, f in defaults.items()}
    parser = argparse.ArgumentParser(
        prog="meetcap-server",
        description="Receive meetcap audio streams over WebSocket and store each session "
        "as one gapless WAV file with a JSON sidecar (spec: docs/protocol.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    net = parser.add_argument_group("network")
    net.add_argument("--host", default=d["host"], help="address to listen on")
    net.add_argument("--port", type=int, default=d["port"], help="port (0: pick a free one)")
    net.add_argument(
        "--allowed-origin", action="append", default=[], metavar="ORIGIN",
        help="a browser Origin allowed to connect (repeatable); when given, other origins "
        "get HTTP 403; clients without Origin (desktop) are always allowed",
    )
    auth = parser.add_argument_group("auth")
    auth.add_argument(
        "--tokens-file", action="append", default=[], type=Path, metavar="FILE",
        help=f"file of '<user> <token>' lines (repeatable); {TOKENS_ENV}='user:token,...' "
        "adds more",
    )
    store = parser.add_argument_group("storage and state")
    store.add_argument(
        "--data-dir", type=Path, default=None,
        help=f"where session audio and sidecars go (default: {default_data_dir()})",
    )
    store.add_argument(
        "--redis", metavar="URL", default=None,
        help="share session state in Redis (redis://host:port/db) between instances that "
        "use the same --data-dir; without it the state is embedded in --data-dir",
    )
    store.add_argument("--flush-interval-ms", type=int, default=d["flush_interval_ms"],
                       help="shortest time between two write+fsync rounds (group commit)")
    store.add_argument("--fsync-mode", choices=("auto", "file", "syncfs"), default="auto",
                       help="'file': fdatasync each written file (portable); 'syncfs': one "
                       "syncfs(2) of the data filesystem per round (Linux; much cheaper "
                       "with many sessions, but also flushes other programs' writes there); "
                       "'auto': syncfs on Linux, else file")
    store.add_argument("--fsync-threads", type=int, default=d["fsync_threads"],
                       help="threads that write and fsync session files")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--realtime-slack-s", type=float, default=d["realtime_slack_s"],
                        help="how far a session's audio may run ahead of the wall clock "
                        "before it is closed as a flood (4009)")
    limits.add_argument("--offline-grace-s", type=float, default=d["offline_grace_s"],
                        help="how much audio captured before the session was created "
                        "(hello.started_at) the flood rule accepts")
    limits.add_argument("--no-tracks", dest="accept_tracks", action="store_false",
                        help="do not accept the tracks extension (two-lane frames, "
                        "docs/protocol.md 3.5): clients send the mono mix only")
    limits.add_argument("--catchup-x", type=float, default=d["catchup_x"],
                        help="fastest a session is read, in multiples of real time")
    limits.add_argument("--max-sessions-per-user", type=int,
                        default=d["max_sessions_per_user"],
                        help="sessions one user may have connected at once (4010 beyond)")
    limits.add_argument("--new-sessions-per-minute", type=int,
                        default=d["new_sessions_per_minute"],
                        help="new sessions one user may start a minute (4010 beyond)")
    limits.add_argument("--hello-timeout-s", type=float, default=d["hello_timeout_s"],
                        help="time a new connection has to send hello (4004 after)")
    limits.add_argument("--idle-timeout-s", type=float, default=d["idle_timeout_s"],
                        help="a quiet connection is pinged after this long and dropped "
                        "when no pong comes in as long")
    limits.add_argument("--going-away-max-ms", type=int, default=d["going_away_max_ms"],
                        help="on shutdown, clients are told to wait a random 0..this ms")
    limits.add_argument("--max-connections-per-ip", type=int,
                        default=d["max_connections_per_ip"],
                        help="connections one address may hold at once, loopback exempt "
                        "(HTTP 429 beyond; 0: no limit)")
    limits.add_argument("--handshakes-per-ip-per-s", type=float,
                        default=d["handshakes_per_ip_per_s"],
                        help="connection attempts a second one address may make, loopback "
                        "exempt (HTTP 429 beyond; 0: no limit)")
    limits.add_argument("--handshake-burst-per-ip", type=int,
                        default=d["handshake_burst_per_ip"],
                        help="connection attempts one address may make at once before "
                        "--handshakes-per-ip-per-s applies")
    limits.add_argument("--takeover-wait-s", type=float, default=d["takeover_wait_s"],
                        help="how long a resume waits for another instance to release a "
                        "session's files")
    tr = parser.add_argument_group("transcription")
    tr.add_argument("--transcribe", action="store_true",
                    help="transcribe every session live (worker processes; transcripts "
                    "stored beside each WAV as <id>.transcript.json, .vtt and .srt, and "
                    "sent to clients that ask)")
    tr.add_argument("--model", metavar="DIR|NAME", default=None,
                    help="a faster-whisper model directory, or the name of a packaged "
                    "model (default: the packaged Whisper tiny.en); never downloaded")
    tr.add_argument("--language", default=None,
                    help="the spoken language (e.g. en, de); default: the model's own")
    tr.add_argument("--transcribe-workers", type=int, default=1, metavar="N",
                    help="transcription worker processes (each loads the model once)")
    tr.add_argument("--transcribe-threads", type=int, default=1, metavar="N",
                    help="threads of each worker's engine")
    tr.add_argument("--min-words", type=int, default=4, metavar="N",
                    help="segments of fewer words (or only filler) are marked minor")
    tr.add_argument("--partials", choices=("on", "off"), default="on",
                    help="live partial text of the utterance being spoken, about once a "
                    "second; off: finals only (the same finals), less CPU")
    tr.add_argument("--partial-budget", type=partial_budget_percent, default=None,
                    metavar="PERCENT",
                    help="the most CPU the partials may take, in %% of the audio time "
                    "(None: the transcriber's 8 %%); partials come less often where each costs "
                    "more (8: about one a second with tiny.en on 2 cores; 2: a cost cap)")
    parser.add_argument("--stats-interval-s", type=float, default=d["stats_interval_s"],
                        help="log a line of load and storage statistics this often (0: off)")
    parser.add_argument("--log-level", default=d["log_level"],
                        choices=("debug", "info", "warning", "error"), help="log verbosity")
    return parser


def partial_budget_percent(text: str) -> float:
    """``--partial-budget``: a percentage (``3`` or ``3%``) above 0 and at most 100,
    returned as a fraction of the audio time."""
    try:
        percent = float(text.strip().removesuffix("%"))
    except ValueError:
        percent = float("nan")
    if not 0 < percent <= 100:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a share of the audio time: give a percentage above 0 and at "
            "most 100, e.g. 3 (or --partials off for no partials at all)"
        )
    return percent / 100


def resolve_fsync_mode(mode: str) -> FsyncMode:
    """'auto' is syncfs on Linux (a dedicated server: one syscall per round instead of one
    per session), else file."""
    if mode == "auto":
        return "syncfs" if sys.platform.startswith("linux") else "file"
    return mode  # type: ignore[return-value]


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Turn parsed arguments (and MEETCAP_TOKENS) into a ServerConfig; ConfigError if bad."""
    tokens = load_tokens(args.tokens_file)
    if not tokens:
        raise ConfigError(
            f"no tokens configured: pass --tokens-file FILE ('<user> <token>' lines) or set "
            f"{TOKENS_ENV}='user:token'"
        )
    return ServerConfig(
        tokens=tokens,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir if args.data_dir is not None else default_data_dir(),
        redis_url=args.redis,
        allowed_origins=tuple(args.allowed_origin),
        realtime_slack_s=args.realtime_slack_s,
        offline_grace_s=args.offline_grace_s,
        catchup_x=args.catchup_x,
        accept_tracks=args.accept_tracks,
        max_sessions_per_user=args.max_sessions_per_user,
        new_sessions_per_minute=args.new_sessions_per_minute,
        flush_interval_ms=args.flush_interval_ms,
        fsync_mode=resolve_fsync_mode(args.fsync_mode),
        fsync_threads=args.fsync_threads,
        hello_timeout_s=args.hello_timeout_s,
        idle_timeout_s=args.idle_timeout_s,
        going_away_max_ms=args.going_away_max_ms,
        takeover_wait_s=args.takeover_wait_s,
        max_connections_per_ip=args.max_connections_per_ip,
        handshakes_per_ip_per_s=args.handshakes_per_ip_per_s,
        handshake_burst_per_ip=args.handshake_burst_per_ip,
        stats_interval_s=args.stats_interval_s,
        transcription=transcription_from_args(args),
        log_level=args.log_level,
    )


def transcription_from_args(args: argparse.Namespace) -> TranscriptionConfig | None:
    """The transcription settings (None without --transcribe; ConfigError when an
    option of it is given without --transcribe)."""
    if not args.transcribe:
        if args.model is not None or args.language is not None:
            raise ConfigError("--model and --language need --transcribe")
        if args.partial_budget is not None or args.partials != "on":
            raise ConfigError("--partials and --partial-budget need --transcribe")
        return None
    if args.partials == "off" and args.partial_budget is not None:
        raise ConfigError("--partial-budget with --partials off: there are no partials to "
                          "budget; give one of the two")
    return TranscriptionConfig(
        model=args.model, language=args.language, workers=args.transcribe_workers,
        threads=args.transcribe_threads, min_words=args.min_words,
        partials=args.partials == "on", partial_budget=args.partial_budget,
    )


def tune_garbage_collector() -> None:
    """Fewer, larger young-generation collections for this dedicated process.

    Every frame allocates a few short-lived objects; with the default threshold (700)
    CPython ran ~1,600 collections (1.7 s of pauses) in 30 s at 1,000 sessions; with
    10,000 it ran 29 (0.16 s), the longest pause 28 ms (bench/server.py). Objects that
    exist once the server listens are frozen out of every collection. Only the
    command-line server does this: an embedding app keeps its own GC settings.
    """
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


# See collect_cycles: a full collection this often.
CYCLE_COLLECTION_INTERVAL_S = 60.0


async def collect_cycles(interval_s: float = CYCLE_COLLECTION_INTERVAL_S) -> None:
    """A full garbage collection every ``interval_s``, for as long as the server runs.

    Every connection leaves its objects in reference cycles (websockets' connection and
    its tasks, asyncio futures, the handler's closures): about 240 objects each, freed only
    by the cyclic collector. With the thresholds above the oldest generation is collected
    rarely, so they piled up there: the single-instance soak grew 1.2-2 MB a minute
    (30 -> 42 MB in 8.5 minutes, still rising); with a full collection once a minute it
    stayed flat (docs/figures.md). Startup objects are frozen, so a collection only walks
    what the connections made (milliseconds).
    """
    while True:
        await asyncio.sleep(interval_s)
        gc.collect()


async def run(config: ServerConfig) -> None:
    """Serve until SIGTERM or SIGINT (or Ctrl-Break on Windows), then shut down
    gracefully."""
    from meetcap.server.app import serve

    # Each session holds a socket and two files: Linux desktops allow 1,024 descriptors
    # by default (about 340 sessions).
    raise_open_file_limit()

    server = await serve(config)
    tune_garbage_collector()
    collector = asyncio.create_task(collect_cycles(), name="meetcap-gc")
    trace = memtrace.start_from_env(server)  # None unless MEETCAP_MEMTRACE is set
    on_shutdown_signals(asyncio.get_running_loop(), server.request_shutdown)
    print(f"{LISTENING_PREFIX}{server.url}", flush=True)
    await server.wait_closed()
    collector.cancel()
    if trace is not None:
        trace.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.log_level != "debug":
        logging.getLogger("websockets").setLevel(logging.WARNING)
    # Whatever logger a record comes from, no secret reaches stderr (meetcap/redact.py).
    redact.install()
    redact.install_on_handlers(logging.getLogger().handlers)
    try:
        config = config_from_args(args)
        asyncio.run(run(config))
    except (ConfigError, StorageError) as exc:
        print(f"meetcap-server: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # typically: the port is taken
        print(f"meetcap-server: error: cannot listen: {exc}", file=sys.stderr)
        return 2
    return 0
