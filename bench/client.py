"""What streaming costs the client: CPU seconds per hour of audio, side by side.

Starts a real meetcap-server subprocess (flood rule and catch-up pacing opened wide), then
in this process streams synthetic frames three ways and measures this process's CPU time
(all threads: time.process_time) per hour of audio:

* at real-time pace (10 frames/s, as in a meeting: every frame wakes the loop and
  crosses loopback TCP on its own), steady state only;
* accelerated (a catch-up: frames as fast as the server takes them), start to ended;

each for the meetcap Streamer and for the bare protocol: the same wire messages over
websockets with no spool, no ack bookkeeping, no reconnect logic (the floor: what sending
the bytes alone costs).

Also times the spool alone: append per frame, and fsync per frame (the policy not chosen).

    python bench/client.py [--minutes 10] [--realtime-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from websockets.asyncio.client import connect  # noqa: E402

from meetcap.client import Streamer, StreamerConfig  # noqa: E402
from meetcap.client.spool import Spool  # noqa: E402
from meetcap.constants import FRAME_BYTES, FRAMES_PER_SECOND  # noqa: E402
from meetcap.frames import Frame  # noqa: E402
from meetcap.protocol import ClientConnection  # noqa: E402
from tests.support.server_proc import TOKEN, ServerProcess  # noqa: E402

_POOL = [random.Random(i).randbytes(FRAME_BYTES) for i in range(64)]


def _frame(seq: int) -> Frame:
    return Frame(seq=seq, pcm=_POOL[seq % len(_POOL)], capture_time=time.time())


def streamer_cpu_per_frame_s(url: str, spool: Path, frames: int, rate_hz: float | None) -> float:
    """CPU seconds per frame this process spent streaming through a Streamer.

    Accelerated (``rate_hz`` None): from start() to the end of finish(), everything.
    Paced: the steady state only (after the first second, up to the last submit), so
    that connecting and ending, which happen once per meeting, are not scaled up to
    an hour from a 20 s run.
    """
    cpu0 = time.process_time()
    streamer = Streamer(StreamerConfig(url=url, token=TOKEN, spool_dir=spool))
    streamer.start()
    started = time.monotonic()
    warmup = FRAMES_PER_SECOND if rate_hz is not None else 0
    for seq in range(frames):
        if rate_hz is not None:
            delay = started + seq / rate_hz - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        if seq == warmup:
            cpu0 = time.process_time()
        streamer.submit(_frame(seq))
    cpu_steady = time.process_time() - cpu0
    result = streamer.finish(300)
    cpu = cpu_steady if rate_hz is not None else time.process_time() - cpu0
    if not result.ok:
        raise SystemExit(f"stream failed: {result.message}")
    return cpu / (frames - warmup)


async def _bare(url: str, frames: int, rate_hz: float | None) -> float:
    conn = ClientConnection()
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                       compression=None) as ws:
        await ws.send(conn.hello(None, None, time.time(), "bench"))
        conn.receive_text(await ws.recv())

        async def drain() -> None:  # acks, then ended
            async for message in ws:
                if '"ended"' in message:
                    return

        reader = asyncio.create_task(drain())
        warmup = FRAMES_PER_SECOND if rate_hz is not None else 0
        started, cpu0 = time.monotonic(), time.process_time()
        for seq in range(frames):
            if rate_hz is not None:
                await asyncio.sleep(max(0.0, started + seq / rate_hz - time.monotonic()))
            if seq == warmup:
                cpu0 = time.process_time()
            await ws.send(conn.frame(seq, _POOL[seq % len(_POOL)]))
        cpu = time.process_time() - cpu0
        await ws.send(conn.end(frames - 1))
        await reader
        return cpu / (frames - warmup)


def bare_cpu_per_frame_s(url: str, frames: int, rate_hz: float | None) -> float:
    """The floor: CPU seconds per frame to send the same messages with nothing else."""
    cpu0 = time.process_time()
    paced = asyncio.run(_bare(url, frames, rate_hz))
    return paced if rate_hz is not None else (time.process_time() - cpu0) / frames


def spool_costs(directory: Path, frames: int = 2000) -> tuple[float, float]:
    """Microseconds per append (no fsync) and milliseconds per append+fsync, wall time."""
    spool = Spool.open(directory)
    session = spool.new_session(time.time(), "ws://bench")
    t0 = time.perf_counter()
    for seq in range(frames):
        session.append(_frame(seq))
    append_us = (time.perf_counter() - t0) / frames * 1e6
    synced = 200
    t0 = time.perf_counter()
    for seq in range(frames, frames + synced):
        session.append(_frame(seq))
        session.sync()
    fsync_ms = (time.perf_counter() - t0) / synced * 1e3
    session.remove()
    return append_us, fsync_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="audio for the fast runs")
    parser.add_argument("--realtime-s", type=float, default=20.0, help="audio at real pace")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meetcap-bench-client-"))
    server = ServerProcess(work / "data", {"realtime_slack_s": 10**6, "catchup_x": 10**4,
                                           "offline_grace_s": 10**6})
    server.start()
    try:
        fast_frames = int(args.minutes * 60 * FRAMES_PER_SECOND)
        live_frames = int(args.realtime_s * FRAMES_PER_SECOND)
        per_hour = 3600 * FRAMES_PER_SECOND  # frames
        live_rate = float(FRAMES_PER_SECOND)
        bare_live = bare_cpu_per_frame_s(server.url, live_frames, live_rate) * per_hour
        live = streamer_cpu_per_frame_s(server.url, work / "s2", live_frames, live_rate)
        live *= per_hour
        bare = bare_cpu_per_frame_s(server.url, fast_frames, None) * per_hour
        fast = streamer_cpu_per_frame_s(server.url, work / "s1", fast_frames, None) * per_hour
        append_us, fsync_ms = spool_costs(work / "s3")
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"client CPU seconds per hour of audio ({os.cpu_count()} cores; this process, "
          "all threads):")
    print("                                 real-time pace   accelerated")
    print(f"  meetcap Streamer               {live:10.1f} s/h  {fast:8.1f} s/h")
    print(f"  bare protocol (no spool/acks)  {bare_live:10.1f} s/h  {bare:8.1f} s/h")
    print(f"  (real-time: {args.realtime_s:g} s of audio, steady state; accelerated: "
          f"{args.minutes:g} min, start to ended)")
    print(f"spool alone: append {append_us:.1f} us/frame; append+fsync {fsync_ms:.2f} ms/frame "
          "(the streamer fsyncs every 100 ms off the audio thread instead)")
    print(f"streamer: {live:.1f} CPU s per audio hour live ({live / bare_live:.1f}x bare), "
          f"{fast:.1f} accelerated ({fast / bare:.1f}x bare)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
