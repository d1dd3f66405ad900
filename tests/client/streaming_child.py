"""A client process for the crash test: stream seeded frames, get killed, deliver later.

    python -m tests.client.streaming_child stream  URL TOKEN SPOOL LOG [--frames N] [--rate HZ]
                                                   [--start-after-s S]
    python -m tests.client.streaming_child deliver URL TOKEN SPOOL

``stream`` submits frames of tests.client.frames.synthetic_frames(seed=1) at ``--rate``
frames a second and appends "seq sha256" to LOG once submit() returned (the frame is in
the spool), flushed at once, so the parent knows what was captured before it killed
this process with SIGKILL; ``--start-after-s`` holds the first frame back that long
after the streamer started (its first hello goes out at once). ``deliver`` delivers
what the spool holds and prints the FinishResult as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

from meetcap.client import Streamer, StreamerConfig, deliver_pending
from tests.client.frames import synthetic_frames


def _config(args: argparse.Namespace) -> StreamerConfig:
    return StreamerConfig(
        url=args.url, token=args.token, spool_dir=Path(args.spool), backoff_base_s=0.05,
        backoff_cap_s=0.5, ack_timeout_s=3.0, open_timeout_s=3.0,
    )


def stream(args: argparse.Namespace) -> int:
    streamer = Streamer(_config(args))
    streamer.start()
    time.sleep(args.start_after_s)
    with open(args.log, "a", buffering=1) as log:
        started = time.monotonic()
        for frame in synthetic_frames(args.frames):
            delay = started + frame.seq / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            streamer.submit(frame)
            log.write(f"{frame.seq} {hashlib.sha256(frame.pcm).hexdigest()}\n")
            log.flush()
            os.fsync(log.fileno())
    print(json.dumps(dataclasses.asdict(streamer.finish(30))))
    return 0


def deliver(args: argparse.Namespace) -> int:
    result = deliver_pending(_config(args), timeout_s=60)
    print(json.dumps(dataclasses.asdict(result)))
    return 0 if result.ok else 1


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("stream", "deliver"))
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("spool")
    parser.add_argument("log", nargs="?")
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--start-after-s", type=float, default=0.0)
    args = parser.parse_args()
    return stream(args) if args.mode == "stream" else deliver(args)


if __name__ == "__main__":
    sys.exit(main())
