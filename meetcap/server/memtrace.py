"""Opt-in memory tracing of a running server, for finding leaks (off by default).

``MEETCAP_MEMTRACE=<file>`` makes ``meetcap-server`` start :mod:`tracemalloc` and append
a report to ``<file>`` every ``MEETCAP_MEMTRACE_EVERY_S`` seconds (default 60): its RSS,
the size of every in-memory table that holds something per session or per peer, the
live objects of the types that exist per connection, and the allocations that grew most
(by traceback) since the baseline, the report taken ``MEETCAP_MEMTRACE_BASELINE_S``
(default 120) seconds in. A leak shows as a table or an object count that keeps rising
with sessions that have ended, or a traceback whose size grows report after report.

Tracing costs CPU and memory of its own (tracemalloc's records): use it to look, never
to measure speed. ``MEETCAP_MEMTRACE_FRAMES=0`` leaves tracemalloc off (no tracebacks,
but RSS near the untraced figure and pymalloc's own counts, which tracemalloc hides).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import gc
import linecache
import os
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from meetcap.server.app import MeetcapServer

ENV_FILE = "MEETCAP_MEMTRACE"
ENV_EVERY = "MEETCAP_MEMTRACE_EVERY_S"
ENV_BASELINE = "MEETCAP_MEMTRACE_BASELINE_S"
ENV_FRAMES = "MEETCAP_MEMTRACE_FRAMES"  # traceback depth; 0: no tracemalloc
_FRAMES = 8  # traceback depth kept per allocation
_TOP = 25  # tracebacks listed per report
_OBJECT_TYPES = 30  # object types listed per report (largest growth first)


def rss_mb() -> float:
    """This process's resident set, MB (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost",
    )]


def malloc_mb() -> str:
    """glibc's view of the C heap (all arenas): what is in use versus what it holds free.
    RSS that grows while "in use" stays flat is the allocator keeping freed memory
    (fragmentation), not live objects. Empty where glibc's mallinfo2 is missing."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return ""
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    mb = 2**20
    return (
        f"malloc: heaps {info.arena / mb:.1f} MB (in use {info.uordblks / mb:.1f}, free "
        f"{info.fordblks / mb:.1f}), mmapped {info.hblkhd / mb:.1f} MB in {info.hblks} blocks, "
        f"threads {threading.active_count()}"
    )


def pymalloc_mb() -> str:
    """Python's small-object allocator: arenas held (1 MiB each, given back only when
    wholly empty) versus bytes in live blocks. Read from sys._debugmallocstats, which
    writes to the C stderr: captured through a temporary file."""
    wanted = ("# arenas allocated current", "# arenas highwater mark",
              "# bytes in allocated blocks")
    with tempfile.TemporaryFile("w+") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        found = {
            key: int(line.split("=")[1].replace(",", ""))
            for line in capture for key in wanted if line.startswith(key)
        }
    if len(found) < len(wanted):
        return ""
    return (
        f"pymalloc: {found[wanted[0]]} arenas (highwater {found[wanted[1]]}), "
        f"{found[wanted[2]] / 2**20:.1f} MB in live blocks"
    )


def table_sizes(server: MeetcapServer) -> dict[str, int]:
    """Every in-memory table of the server (and of an embedded store) that holds an
    entry per session, connection, peer address or user."""
    sizes = {
        "handlers": len(server.handlers),
        "attachments": len(server.attachments),
        "attach locks": len(server._attach_locks),
        "ip open": len(server.ip_limits.open),
        "ip buckets": len(server.ip_limits._buckets),
        "flusher dirty": len(server.flusher._dirty),
        "asyncio tasks": len(asyncio.all_tasks()),
    }
    store = server.store
    for name in ("_records", "_locks", "_connected", "_created"):
        table = getattr(store, name, None)
        if table is not None:
            sizes[f"store {name.lstrip('_')}"] = len(table)
    if server.transcription is not None:
        for name, value in vars(server.transcription).items():
            if isinstance(value, (dict, set, list)):
                sizes[f"transcription {name.lstrip('_')}"] = len(value)
    return sizes


def object_counts() -> collections.Counter[str]:
    """Live objects tracked by the garbage collector, by type name."""
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


class MemTrace:
    """Writes the reports (module doc) to ``path`` until cancelled."""

    def __init__(self, server: MeetcapServer, path: Path, every_s: float, baseline_s: float):
        self.server, self.path = server, path
        self.every_s, self.baseline_s = every_s, baseline_s
        self.started = time.monotonic()
        self.baseline_taken = False
        self.baseline: tracemalloc.Snapshot | None = None
        self.baseline_objects: collections.Counter[str] = collections.Counter()

    async def run(self) -> None:
        next_at = self.started + min(self.every_s, self.baseline_s)
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self.report()
            if not self.baseline_taken and time.monotonic() - self.started < self.baseline_s:
                next_at = self.started + self.baseline_s
            else:
                next_at += self.every_s

    def report(self) -> None:
        gc.collect()
        elapsed = time.monotonic() - self.started
        snapshot = None
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                # Not the tracing's own work: its records and the source lines it prints.
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, linecache.__file__),
                ]
            )
        objects = object_counts()
        traced, peak = tracemalloc.get_traced_memory()
        lines = [
            f"=== memtrace at {elapsed:.0f} s: RSS {rss_mb():.1f} MB, traced "
            f"{traced / 2**20:.1f} MB (peak {peak / 2**20:.1f}), gc objects "
            f"{sum(objects.values())}",
            malloc_mb(),
            pymalloc_mb(),  # empty while tracemalloc runs (it replaces the allocator)
            "tables: " + ", ".join(f"{k} {v}" for k, v in table_sizes(self.server).items()),
        ]
        if not self.baseline_taken and elapsed >= self.baseline_s - 1:
            self.baseline_taken = True
            self.baseline, self.baseline_objects = snapshot, objects
            lines.append("(baseline taken)")
        elif self.baseline_taken:
            grown = sorted(
                ((n - self.baseline_objects.get(t, 0), t, n) for t, n in objects.items()),
                reverse=True,
            )[:_OBJECT_TYPES]
            lines.append("objects grown since the baseline: " + ", ".join(
                f"{t} {d:+d} ({n})" for d, t, n in grown if d))
            if snapshot is None or self.baseline is None:
                lines.append("(no tracebacks: MEETCAP_MEMTRACE_FRAMES=0)")
            else:
                lines.append(f"allocations grown since the baseline (top {_TOP} by traceback):")
            stats = [] if snapshot is None or self.baseline is None else (
                snapshot.compare_to(self.baseline, "traceback")[:_TOP]
            )
            for stat in stats:
                lines.append(
                    f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks "
                    f"(now {stat.size / 1024:.1f} KiB)"
                )
                lines.extend(f"      {line}" for line in stat.traceback.format()[-6:])
        with self.path.open("a") as out:
            out.write("\n".join(line for line in lines if line) + "\n")


def start_from_env(server: MeetcapServer) -> asyncio.Task[None] | None:
    """Start tracing if MEETCAP_MEMTRACE names a file (module doc); else do nothing."""
    target = os.environ.get(ENV_FILE)
    if not target:
        return None
    frames = int(os.environ.get(ENV_FRAMES, str(_FRAMES)))
    if frames > 0:
        tracemalloc.start(frames)
    trace = MemTrace(
        server, Path(target), float(os.environ.get(ENV_EVERY, "60")),
        float(os.environ.get(ENV_BASELINE, "120")),
    )
    return asyncio.create_task(trace.run(), name="meetcap-memtrace")
