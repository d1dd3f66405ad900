#!/usr/bin/env python
"""How many live sessions one meetcap-server process holds.

    python bench/server.py [--steps 100,250,500,1000,1500,2000] [--seconds 20]
                           [--fsync-mode file|syncfs] [--flush-interval-ms 50]

One server process (``python -m meetcap.server``, embedded state, a temporary data
directory on this disk, real fsyncs) and simulated clients in a SEPARATE process
(multiprocessing, asyncio, websockets): each client is one session that sends a real
3,216-byte audio message every 100 ms, as a capturing desktop would, and measures the
ack latency of every frame (send -> the cumulative ack that covers it). Each step opens
N sessions, lets them settle for 3 s, measures for ``--seconds``, then ends every
session and checks the server's ``ended`` (frame count and SHA-256 of the stored PCM)
against what was sent: a frame missing or different counts as lost.

A step passes when the ack p99 is under 100 ms, nothing is lost and no connection
failed. Memory per session is the server's RSS during the step minus its RSS before,
divided by N. The ramp stops at the first failing step.

The LAST line is exactly: ``server: <N> sessions at ack p99 <X> ms, <L> frames lost``
for the largest passing step.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import multiprocessing
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout

USER, TOKEN = "bench", "bench-token-0123456789"
P99_LIMIT_MS = 100.0
SETTLE_S = 3.0
CONNECT_CONCURRENCY = 50


# ------------------------------------------------------------------ client process


@dataclass
class StepResult:
    sessions: int
    connected: int
    failures: int
    latencies_ms: list[float]
    sent: int
    lost: int
    client_cpu_share: float  # of one core, during the measured window
    client_lag_p99_ms: float  # how late the client's own event loop ran (inflates latency)


async def _session(
    url: str, seed: int, t_measure: float, t_stop: float, end_phase: asyncio.Event, out: dict
) -> None:
    from websockets.asyncio.client import connect

    from meetcap.protocol import Ack, ClientConnection, Ended, MessageReceived, Welcome

    rng = random.Random(seed)
    pcm = rng.randbytes(3200)
    digest = hashlib.sha256()
    conn = ClientConnection()
    sent_at: dict[int, float] = {}
    latencies = out["latencies"]
    ended: asyncio.Future = asyncio.get_running_loop().create_future()
    welcomed: asyncio.Future = asyncio.get_running_loop().create_future()
    acked = -1
    final_seq: int | None = None
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {TOKEN}"}, compression=None,
        open_timeout=30, ping_interval=None, close_timeout=5,
    ) as ws:
        await ws.send(conn.hello(None, None, time.time(), "bench"))

        async def reader() -> None:
            nonlocal acked
            async for message in ws:
                for event in conn.receive_text(message):
                    if not isinstance(event, MessageReceived):
                        continue
                    msg = event.message
                    if isinstance(msg, Welcome):
                        welcomed.set_result(msg)
                    elif isinstance(msg, Ack):
                        now = time.monotonic()
                        for seq in range(acked + 1, msg.seq + 1):
                            t = sent_at.pop(seq, None)
                            if t is not None and t >= t_measure:
                                latencies.append((now - t) * 1000)
                        acked = max(acked, msg.seq)
                        if final_seq is not None and acked >= final_seq:
                            last_ack.set()
                    elif isinstance(msg, Ended):
                        ended.set_result(msg)

        task = asyncio.create_task(reader())
        await asyncio.wait_for(asyncio.shield(welcomed), 30)
        out["connected"] += 1
        last_ack = asyncio.Event()
        # Real time: one frame every 100 ms, at a random phase per session.
        seq = 0
        next_at = time.monotonic() + rng.uniform(0, 0.1)
        while next_at < t_stop:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            data = conn.frame(seq, pcm, speech=seq % 7 == 0)
            sent_at[seq] = time.monotonic()
            await ws.send(data)
            digest.update(pcm)
            seq += 1
            next_at += 0.1
        # Every session ends at the same moment here, which a real server never sees:
        # wait for the last ack, then for every session to get there (end_phase), so the
        # burst of ends (hash + sidecar + state fsyncs) is not measured as ack latency.
        final_seq = seq - 1
        if acked < final_seq:
            await asyncio.wait_for(last_ack.wait(), 30)
        await end_phase.wait()
        await ws.send(conn.end(final_seq))
        result = await asyncio.wait_for(ended, 60)
        out["sent"] += seq
        if result.frames != seq or result.sha256 != digest.hexdigest():
            out["lost"] += max(1, seq - result.frames)
        task.cancel()


async def _clients(url: str, sessions: int, seconds: float) -> StepResult:
    out = {"latencies": [], "connected": 0, "sent": 0, "lost": 0}
    connect_budget_s = max(5.0, sessions / 100)
    t0 = time.monotonic()
    t_measure = t0 + connect_budget_s + SETTLE_S
    t_stop = t_measure + seconds
    end_phase = asyncio.Event()
    asyncio.get_running_loop().call_later(t_stop + 2.0 - time.monotonic(), end_phase.set)

    async def one(i: int) -> None:
        # Open the connections in waves, as a fleet of desktops would, not all at once.
        await asyncio.sleep(i // CONNECT_CONCURRENCY * CONNECT_CONCURRENCY / 200)
        await _session(url, i, t_measure, t_stop, end_phase, out)

    lags: list[float] = []
    cpu: list[float] = []

    async def monitor() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.monotonic()))
        cpu.append(time.process_time())
        while time.monotonic() < t_stop:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append((time.monotonic() - before - 0.01) * 1000)
        cpu.append(time.process_time())

    watcher = asyncio.create_task(monitor())
    results = await asyncio.gather(*(one(i) for i in range(sessions)), return_exceptions=True)
    await watcher
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:3]:
        print(f"  client failure: {failure!r}", file=sys.stderr)
    return StepResult(
        sessions, out["connected"], len(failures), out["latencies"], out["sent"], out["lost"],
        (cpu[1] - cpu[0]) / seconds if len(cpu) == 2 else float("nan"), percentile(lags, 99),
    )


def _client_process(url: str, sessions: int, seconds: float, queue) -> None:
    try:
        queue.put(asyncio.run(_clients(url, sessions, seconds)))
    except BaseException as exc:  # reported by the parent
        queue.put(exc)


# ------------------------------------------------------------------ server process


def start_server(data_dir: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, MEETCAP_TOKENS=f"{USER}:{TOKEN}", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap.server", "--port", "0", "--data-dir", str(data_dir),
         "--log-level", "warning", "--max-sessions-per-user", "100000",
         "--new-sessions-per-minute", "100000", "--fsync-mode", args.fsync_mode,
         "--flush-interval-ms", str(args.flush_interval_ms)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (ws://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def run_step(url: str, server_pid: int, sessions: int, seconds: float) -> tuple[StepResult, float, float]:
    import psutil

    server = psutil.Process(server_pid)
    rss_before = server.memory_info().rss
    cpu_before = sum(server.cpu_times()[:2])
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    client = ctx.Process(target=_client_process, args=(url, sessions, seconds, queue))
    client.start()
    # Sample the server's RSS while every session is connected and streaming.
    connect_budget_s = max(5.0, sessions / 100)
    time.sleep(connect_budget_s + SETTLE_S + seconds / 2)
    rss_during = server.memory_info().rss
    cpu_mid = sum(server.cpu_times()[:2])
    result = queue.get()
    client.join()
    if isinstance(result, BaseException):
        raise result
    elapsed_cpu = cpu_mid - cpu_before
    cpu_share = elapsed_cpu / (connect_budget_s + SETTLE_S + seconds / 2)
    return result, (rss_during - rss_before) / max(1, sessions), cpu_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="100,250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per step")
    parser.add_argument("--fsync-mode", choices=("file", "syncfs"), default="file")
    parser.add_argument("--flush-interval-ms", type=int, default=50)
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    best: tuple[int, float, int] | None = None
    with tempfile.TemporaryDirectory(prefix="meetcap-bench-", dir=REPO / ".benchmarks"
                                     if (REPO / ".benchmarks").is_dir() else None) as tmp:
        proc, url = start_server(Path(tmp), args)
        try:
            print(f"server pid {proc.pid} at {url}; fsync mode {args.fsync_mode}, "
                  f"rounds every {args.flush_interval_ms} ms; {args.seconds:g} s per step")
            for sessions in steps:
                result, rss_per_session, cpu_share = run_step(url, proc.pid, sessions, args.seconds)
                p50 = percentile(result.latencies_ms, 50)
                p99 = percentile(result.latencies_ms, 99)
                ok = (p99 < P99_LIMIT_MS and result.lost == 0 and result.failures == 0
                      and result.connected == sessions)
                print(
                    f"{sessions:5d} sessions: ack p50 {p50:6.1f} ms, p99 {p99:6.1f} ms over "
                    f"{len(result.latencies_ms)} frames; {result.sent} sent, {result.lost} lost, "
                    f"{result.failures} failed; server {rss_per_session / 1024:.0f} KiB/session, "
                    f"{cpu_share * 100:.0f}% CPU; clients {result.client_cpu_share * 100:.0f}% CPU, "
                    f"loop lag p99 {result.client_lag_p99_ms:.0f} ms; {'ok' if ok else 'FAIL'}",
                    flush=True,
                )
                if not ok:
                    break
                best = (sessions, p99, result.lost)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if best is None:
        print("server: 0 sessions at ack p99 nan ms, 0 frames lost")
    else:
        print(f"server: {best[0]} sessions at ack p99 {best[1]:.1f} ms, {best[2]} frames lost")


if __name__ == "__main__":
    main()
