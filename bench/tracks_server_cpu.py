#!/usr/bin/env python
"""What two tracks cost the server's CPU: the same sessions streamed in mono and in
tracks mode, side by side.

    python bench/tracks_server_cpu.py [--sessions 40] [--seconds 30] [--rounds 2]

Each run starts a fresh ``meetcap-server`` process (a real subprocess, its default
settings, real fsyncs, a temporary data directory under .benchmarks/ when it exists)
and, in a separate process, ``--sessions`` simulated desktops (bench/rawws.py, as
bench/server.py does) that each send one frame every 100 ms, as a capturing app does:
in mono the 3,216-byte audio message, in tracks mode the 9,616-byte tracks message
(hello.tracks = 1, the mono mix plus both lanes; docs/protocol.md 3.5). The server's
CPU time (user + system, psutil) is read when every session has been welcomed and
again when every frame has been acknowledged; divided by the minutes of audio streamed
in between (sessions x seconds / 60) it is the CPU seconds per minute of audio. Then
every session ends and is checked: frames and SHA-256 of the stored mono PCM as sent,
and in tracks mode a ``tracks_audio`` file named in the sidecar (in mono none).

Runs alternate mono, tracks, mono, tracks ... (``--rounds`` pairs) so that a change
in the machine's load hits both modes alike; the machine's load average is printed
per run. Other programs on a shared machine only ever add CPU time (cache and
scheduler contention), so each mode's figure is its best (lowest) run. The LAST line
is exactly:
``tracks server CPU: mono <M> s, tracks <T> s per minute of audio, ratio <R>x (<N> sessions)``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
sys.path.insert(0, str(REPO / "bench"))

from server_harness import SimDesktop, start_server, stop_server  # noqa: E402

CONNECT_CONCURRENCY = 20
SETTLE_S = 2.0  # after the last welcome, before the measured window


class Desktop(SimDesktop):
    """One simulated session: hello (asking for tracks or not), a frame per tick, end."""

    def __init__(self, seed: int, tracks: bool) -> None:
        super().__init__(seed)
        self.lanes = self.rng.randbytes(6400) if tracks else None
        self.tracks = tracks
        self.caught_up = asyncio.Event()

    def on_ack(self, seq: int) -> None:
        super().on_ack(seq)
        if self.acked >= self.seq - 1:
            self.caught_up.set()

    async def connect(self, url: str) -> None:
        """Open the session, asking for two tracks in tracks mode, and check it got them."""
        from meetcap.protocol.audio import TRACKS_VERSION

        welcome = await self.open(url, tracks=TRACKS_VERSION if self.tracks else None)
        if self.tracks and not welcome.tracks:
            raise RuntimeError("the server did not accept two tracks")

    def send_next(self) -> None:
        self.send_frame(tracks=self.lanes)
        self.caught_up.clear()  # no ack can come in between: one event loop

    async def end(self) -> str | None:
        """End the session; a sentence if the server stored anything else than was sent."""
        result = await self.send_end()
        if not self.stored_as_sent(result):
            return f"stored {result.frames} frames (sent {self.seq}) or a different SHA-256"
        return None


async def _stream(url: str, sessions: int, seconds: float, tracks: bool, marks) -> list[str]:
    """Open every session, settle, tell the parent ("start"), stream ``seconds``, wait
    for every ack, tell the parent ("stop"), end every session. Returns the failures."""
    desktops = [Desktop(i, tracks) for i in range(sessions)]

    async def open_one(i: int) -> None:
        await asyncio.sleep(i // CONNECT_CONCURRENCY * 0.1)
        await desktops[i].connect(url)

    await asyncio.gather(*(open_one(i) for i in range(sessions)))
    # One ticker: session i is due every 100 ms at phase (i % 10) * 10 ms, as 100
    # desktops' capture clocks would be spread, and the load generator stays light.
    ticks = round(seconds * 100)
    start = time.monotonic() + SETTLE_S
    for tick in range(ticks + round(SETTLE_S * 100)):
        await asyncio.sleep(max(0.0, start - SETTLE_S + tick * 0.01 - time.monotonic()))
        if tick == round(SETTLE_S * 100):
            marks.put(("start", time.monotonic()))
        for desktop in desktops[tick % 10 :: 10]:
            desktop.send_next()
    await asyncio.wait_for(asyncio.gather(*(d.caught_up.wait() for d in desktops)), 60)
    marks.put(("stop", time.monotonic()))
    results = await asyncio.gather(*(d.end() for d in desktops), return_exceptions=True)
    return [repr(r) if isinstance(r, BaseException) else r for r in results if r]


def _client_process(url: str, sessions: int, seconds: float, tracks: bool, marks) -> None:
    try:
        marks.put(("done", asyncio.run(_stream(url, sessions, seconds, tracks, marks))))
    except BaseException as exc:  # reported by the parent
        marks.put(("done", [repr(exc)]))


def check_stored(data_dir: Path, sessions: int, tracks: bool) -> list[str]:
    """Every session's sidecar says finished, and names a tracks file exactly in tracks
    mode (that file holding every frame's two lanes)."""
    problems = []
    sidecars = [json.loads(p.read_text()) for p in data_dir.rglob("*.json")
                if not p.name.endswith(".transcript.json")]
    sidecars = [s for s in sidecars if "frames" in s]
    if len(sidecars) != sessions:
        problems.append(f"{len(sidecars)} sessions stored, {sessions} streamed")
    for sidecar in sidecars:
        name = sidecar.get("tracks_audio")
        if not sidecar.get("finished") or bool(name) != tracks:
            problems.append(f"session {sidecar.get('id')}: finished "
                            f"{sidecar.get('finished')}, tracks file {name!r}")
        elif tracks:
            [path] = list(data_dir.rglob(name))
            if path.stat().st_size != 44 + sidecar["frames"] * 6400:
                problems.append(f"{name}: {path.stat().st_size} bytes")
    return problems


def run(sessions: int, seconds: float, tracks: bool) -> float:
    """One run; returns the server's CPU seconds per minute of audio."""
    import psutil

    base = REPO / ".benchmarks" if (REPO / ".benchmarks").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="meetcap-tracks-cpu-", dir=base) as tmp:
        proc, url = start_server(Path(tmp), [])
        try:
            server = psutil.Process(proc.pid)
            ctx = multiprocessing.get_context("spawn")
            marks = ctx.Queue()
            client = ctx.Process(target=_client_process,
                                 args=(url, sessions, seconds, tracks, marks))
            load = os.getloadavg()[0]
            client.start()
            cpu: dict[str, float] = {}
            at: dict[str, float] = {}
            failures: list[str] = []
            while True:
                kind, value = marks.get(timeout=seconds + 180)
                if kind == "done":
                    failures = value
                    break
                cpu[kind] = sum(server.cpu_times()[:2])
                at[kind] = value
            client.join()
            if failures or len(cpu) != 2:
                raise SystemExit(f"{len(failures)} sessions failed: {failures[:3]}")
        finally:
            stop_server(proc)
        problems = check_stored(Path(tmp), sessions, tracks)
        if problems:
            raise SystemExit(f"stored audio is wrong: {problems[:3]}")
    audio_min = sessions * seconds / 60
    used, wall = cpu["stop"] - cpu["start"], at["stop"] - at["start"]
    per_min = used / audio_min
    print(f"  {'tracks' if tracks else 'mono  '}: {used:.2f} s of server CPU over {wall:.1f} s "
          f"for {audio_min:.1f} min of audio = {per_min:.3f} s per minute of audio "
          f"({used / wall * 100:.0f}% of a core); load average {load:.1f} before; every "
          "session stored exactly", flush=True)
    return per_min


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=30.0, help="streamed per run")
    parser.add_argument("--rounds", type=int, default=3, help="mono + tracks pairs")
    args = parser.parse_args()
    print(f"{args.sessions} sessions at once, {args.seconds:g} s each run, "
          f"{args.rounds} rounds (mono, tracks)")
    mono, tracks = [], []
    for _ in range(args.rounds):
        mono.append(run(args.sessions, args.seconds, tracks=False))
        tracks.append(run(args.sessions, args.seconds, tracks=True))
    m, t = min(mono), min(tracks)
    print(f"tracks server CPU: mono {m:.3f} s, tracks {t:.3f} s per minute of audio, "
          f"ratio {t / m:.2f}x ({args.sessions} sessions)")


if __name__ == "__main__":
    main()
