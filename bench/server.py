#!/usr/bin/env python
"""How many live sessions one meetcap-server process holds.

    python bench/server.py [--steps 100,250,500,1000,1500,2000] [--seconds 20]
                           [--fsync-mode auto|file|syncfs] [--flush-interval-ms 10]
                           [--server-log FILE]

One server process (``python -m meetcap.server``, embedded state, a temporary data
directory under .benchmarks/ on this disk, real fsyncs, its default settings) and the
simulated clients in a SEPARATE process (multiprocessing, asyncio): each client is one
session on its own WebSocket that sends a real 3,216-byte audio message every 100 ms,
as a capturing desktop would, and measures the ack latency of every frame (send -> the
cumulative ack that covers it). The clients speak the protocol through
meetcap.protocol.ClientConnection over a lean WebSocket layer (bench/rawws.py): a
thousand websockets-library clients would take as much CPU as the server under test on
a 2-core machine. Each step opens N sessions (200 a second), lets them settle for 3 s,
measures for ``--seconds``, waits for every last ack, then ends every session and checks
the server's ``ended`` (frame count and SHA-256 of the stored PCM) against what was sent:
a frame missing or different counts as lost.

A step passes when the ack p99 is under 100 ms, nothing is lost and no connection
failed; the ramp stops at the first failing step. Per step it also prints the server's
RSS above its idle RSS divided by N (memory per session), its CPU share, its slowest
write round and worst event-loop lag (from its ``--stats-interval-s`` log line), the
load generator's CPU and lag, and the machine's load average before the step (other
programs on the machine show up here, and in the tail latency).

The LAST line is exactly: ``server: <N> sessions at ack p99 <X> ms, <L> frames lost``
for the largest passing step.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout
sys.path.insert(0, str(REPO / "bench"))

from server_harness import SimDesktop, start_server, stop_server  # noqa: E402

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


class SimSession(SimDesktop):
    """One simulated desktop: hello, then a frame every 100 ms (sent by the shared
    ticker), then end. Latency is measured from each send to the first ack covering it."""

    def __init__(self, seed: int, t_measure: float, latencies: list[float]) -> None:
        super().__init__(seed)
        self.t_measure = t_measure
        self.latencies = latencies
        self.sent_at: dict[int, float] = {}
        self.final: int | None = None
        self.last_ack = asyncio.Event()

    def on_ack(self, seq: int) -> None:
        now = time.monotonic()
        for sent in range(self.acked + 1, seq + 1):
            t = self.sent_at.pop(sent, None)
            if t is not None and t >= self.t_measure:
                self.latencies.append((now - t) * 1000)
        super().on_ack(seq)
        if self.final is not None and self.acked >= self.final:
            self.last_ack.set()

    def send_next(self, now: float) -> None:
        self.send_frame(speech=self.seq % 7 == 0)
        self.sent_at[self.seq - 1] = now  # no ack can come in between: one event loop

    async def finish(self) -> tuple[int, int]:
        """End the session once its last frame is acked; returns (sent, lost)."""
        self.final = self.seq - 1
        if self.acked < self.final:
            await asyncio.wait_for(self.last_ack.wait(), 30)
        return self.seq, 0

    async def end(self) -> int:
        """Send end, check ended against what was sent; returns frames lost."""
        result = await self.send_end()
        if not self.stored_as_sent(result):
            return max(1, self.seq - result.frames)
        return 0


async def _clients(url: str, sessions: int, seconds: float) -> StepResult:
    latencies: list[float] = []
    connect_budget_s = max(5.0, sessions / 100)
    t0 = time.monotonic()
    t_measure = t0 + connect_budget_s + SETTLE_S
    t_stop = t_measure + seconds
    sims = [SimSession(i, t_measure, latencies) for i in range(sessions)]
    # One ticker sends every session's frames: session i is due every 100 ms at phase
    # (i % 10) * 10 ms. 100 wake-ups a second instead of one task wake-up per frame keeps
    # the load generator light on a machine it shares with the server.
    buckets: list[list[SimSession]] = [[] for _ in range(10)]
    failures: list[BaseException] = []

    async def open_one(i: int) -> None:
        await asyncio.sleep(i // CONNECT_CONCURRENCY * CONNECT_CONCURRENCY / 200)
        try:
            await sims[i].open(url)
        except BaseException as exc:
            failures.append(exc)
            return
        buckets[i % 10].append(sims[i])

    openers = asyncio.gather(*(open_one(i) for i in range(sessions)))
    lags: list[float] = []
    tick = 0
    next_tick = time.monotonic()
    cpu_start = None
    while next_tick < t_stop:
        await asyncio.sleep(max(0.0, next_tick - time.monotonic()))
        now = time.monotonic()
        if now >= t_measure:
            if cpu_start is None:
                cpu_start = time.process_time()
            lags.append((now - next_tick) * 1000)
        for sim in list(buckets[tick % 10]):
            try:
                sim.send_next(now)
            except BaseException as exc:
                failures.append(exc)
                buckets[tick % 10].remove(sim)
        tick += 1
        next_tick += 0.01
    cpu_share = (time.process_time() - cpu_start) / seconds if cpu_start else float("nan")
    await openers
    live = [sim for bucket in buckets for sim in bucket]
    # Every session stops at the same moment here, which a real server never sees: wait
    # for every last ack before any end, so the burst of ends (hash + sidecar + state
    # fsyncs each) is not measured as ack latency.
    results = await asyncio.gather(*(sim.finish() for sim in live), return_exceptions=True)
    sent = sum(r[0] for r in results if isinstance(r, tuple))
    failures += [r for r in results if isinstance(r, BaseException)]
    ended = await asyncio.gather(*(sim.end() for sim in live), return_exceptions=True)
    lost = sum(r for r in ended if isinstance(r, int))
    failures += [r for r in ended if isinstance(r, BaseException)]
    for failure in failures[:3]:
        print(f"  client failure: {failure!r}", file=sys.stderr)
    return StepResult(
        sessions, len(live), len(failures), latencies, sent, lost, cpu_share,
        percentile(lags, 99),
    )


def _client_process(url: str, sessions: int, seconds: float, queue) -> None:
    try:
        queue.put(asyncio.run(_clients(url, sessions, seconds)))
    except BaseException as exc:  # reported by the parent
        queue.put(exc)


# ------------------------------------------------------------------ server process


def start_logging_server(
    data_dir: Path, args: argparse.Namespace
) -> tuple[subprocess.Popen, str]:
    """The server under test, its log (a stats line every 2 s) in data_dir/server.log."""
    return start_server(
        data_dir,
        ["--log-level", "info", "--stats-interval-s", "2", "--fsync-mode", args.fsync_mode,
         "--flush-interval-ms", str(args.flush_interval_ms)],
        stderr=open(data_dir / "server.log", "w"),
    )


_STATS = re.compile(r"round p99 ([\d.]+) ms max ([\d.]+) ms, loop lag max ([\d.]+) ms")


def server_stats(log_path: Path, from_line: int) -> tuple[float, float, int]:
    """Worst write-round time and event-loop lag the server logged since ``from_line``
    (its stats line every 2 s), and the log's current length."""
    lines = log_path.read_text().splitlines()
    worst_round = worst_lag = 0.0
    for line in lines[from_line:]:
        match = _STATS.search(line)
        if match:
            worst_round = max(worst_round, float(match.group(2)))
            worst_lag = max(worst_lag, float(match.group(3)))
    return worst_round, worst_lag, len(lines)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else float("nan")


def run_step(
    url: str, server_pid: int, sessions: int, seconds: float, rss_fresh: int
) -> tuple[StepResult, float, float]:
    """One step; returns its result, the server's RSS per session above ``rss_fresh``
    (the idle server before any step) and the server's CPU share (of one core)."""
    import psutil

    server = psutil.Process(server_pid)
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
    return result, (rss_during - rss_fresh) / max(1, sessions), cpu_share


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", default="100,250,500,1000,1500,2000")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time per step")
    parser.add_argument("--fsync-mode", choices=("auto", "file", "syncfs"), default="auto",
                        help="the server's --fsync-mode (auto: its default)")
    parser.add_argument("--flush-interval-ms", type=int, default=10)
    parser.add_argument("--server-log", type=Path, default=None,
                        help="keep the server's log (with a stats line every 2 s) here")
    args = parser.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    best: tuple[int, float, int] | None = None
    with tempfile.TemporaryDirectory(prefix="meetcap-bench-", dir=REPO / ".benchmarks"
                                     if (REPO / ".benchmarks").is_dir() else None) as tmp:
        proc, url = start_logging_server(Path(tmp), args)
        try:
            print(f"server pid {proc.pid} at {url}; fsync mode {args.fsync_mode}, "
                  f"rounds every {args.flush_interval_ms} ms; {args.seconds:g} s per step")
            import psutil

            rss_fresh = psutil.Process(proc.pid).memory_info().rss
            log_path = Path(tmp) / "server.log"
            log_line = 0
            for sessions in steps:
                load_before = os.getloadavg()[0]
                result, rss_per_session, cpu_share = run_step(
                    url, proc.pid, sessions, args.seconds, rss_fresh
                )
                worst_round, worst_lag, log_line = server_stats(log_path, log_line)
                p50 = percentile(result.latencies_ms, 50)
                p99 = percentile(result.latencies_ms, 99)
                ok = (p99 < P99_LIMIT_MS and result.lost == 0 and result.failures == 0
                      and result.connected == sessions)
                print(
                    f"{sessions:5d} sessions: ack p50 {p50:6.1f} ms, p99 {p99:6.1f} ms over "
                    f"{len(result.latencies_ms)} frames; {result.sent} sent, {result.lost} lost, "
                    f"{result.failures} failed; server {rss_per_session / 1024:.0f} KiB/session, "
                    f"{cpu_share * 100:.0f}% CPU, slowest write round {worst_round:.0f} ms, "
                    f"loop lag max {worst_lag:.0f} ms; clients "
                    f"{result.client_cpu_share * 100:.0f}% CPU, "
                    f"loop lag p99 {result.client_lag_p99_ms:.0f} ms; machine load "
                    f"{load_before:.1f} before; {'ok' if ok else 'FAIL'}",
                    flush=True,
                )
                if not ok:
                    break
                best = (sessions, p99, result.lost)
        finally:
            stop_server(proc)
            if args.server_log is not None:
                shutil.copyfile(Path(tmp) / "server.log", args.server_log)
    if best is None:
        print("server: 0 sessions at ack p99 nan ms, 0 frames lost")
    else:
        print(f"server: {best[0]} sessions at ack p99 {best[1]:.1f} ms, {best[2]} frames lost")


if __name__ == "__main__":
    main()
