"""Group commit: one write + fsync round for every session with new frames.

Fsyncing per frame would cost one disk flush per frame per session (10 a second each);
instead a single task runs rounds back to back, at most one per ``interval_s``: it
takes every session's pending frames, writes them (page cache, on the loop thread),
fsyncs the files on a small thread pool, and only then advances each session's durable
count, which is what the acks report.
A round never waits for a slow session's socket, and a session that failed to store
gets its error without affecting the others.

``mode="file"`` fdatasyncs each written file (portable). ``mode="syncfs"`` (Linux) makes
the whole data filesystem durable with one syncfs(2) per round: far fewer system calls
with many sessions, but it also flushes other programs' writes to that filesystem.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from meetcap.errors import ConfigError
from meetcap.oscalls import syncfs_function

if TYPE_CHECKING:
    from meetcap.server.storage import Batch, SessionWriter

log = logging.getLogger(__name__)
_ROUND_TIMES_KEPT = 100_000  # a bound for when nobody reads the stats


def _syncfs_function() -> Callable[[int], None]:
    syncfs = syncfs_function()
    if syncfs is None:
        raise ConfigError("fsync mode 'syncfs' needs Linux (syncfs(2)); use --fsync-mode file")
    return syncfs


def _sync_chunk(batches: list[Batch]) -> list[BaseException | None]:
    """Thread side of a round: fdatasync each batch's files; collect errors."""
    results: list[BaseException | None] = []
    for batch in batches:
        try:
            batch.writer.sync()
            results.append(None)
        except OSError as exc:
            results.append(exc)
    return results


class Flusher:
    """Runs the write rounds; ``on_stored(batch)`` is called after each durable batch."""

    def __init__(
        self,
        interval_s: float,
        *,
        mode: str = "file",
        threads: int = 8,
        data_dir: Path,
        on_stored: Callable[[Batch], None] | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.mode = mode
        self._threads = threads
        self._data_dir = data_dir
        self._syncfs = _syncfs_function() if mode == "syncfs" else None
        self._dir_fd: int | None = None
        self._on_stored = on_stored
        self._dirty: dict[SessionWriter, None] = {}  # insertion-ordered set
        self._kick = asyncio.Event()
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="meetcap-store")
        self._task: asyncio.Task[None] | None = None
        self.rounds = 0
        self.last_round_s = 0.0
        self.frames_stored = 0
        self.keep_round_times = False  # set when someone reads the stats
        self.round_times_s: list[float] = []  # since the last stats report (bounded)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="meetcap-flusher")

    async def stop(self) -> None:
        """Finish the round in progress plus one for whatever is still pending."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self._round()
        self._pool.shutdown(wait=True)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def mark_dirty(self, writer: SessionWriter) -> None:
        """``writer`` has frames to store: include it in the next round."""
        self._dirty[writer] = None
        self._kick.set()

    async def _run(self) -> None:
        while True:
            await self._kick.wait()
            self._kick.clear()
            started = time.monotonic()
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not stop every session's acks for good
                log.exception("a storage round failed")
            # Group commit: frames arriving during a round wait for the next one, which
            # starts no sooner than interval_s after this one started.
            rest = self.interval_s - (time.monotonic() - started)
            if rest > 0:
                await asyncio.sleep(rest)

    async def _round(self) -> None:
        writers, self._dirty = list(self._dirty), {}
        batches = [b for w in writers if (b := w.take_batch()) is not None]
        if not batches:
            return
        started = time.monotonic()
        errors: dict[int, BaseException | None] = {}
        written: list[Batch] = []
        # Writes go to the page cache from this thread (microseconds each); only the
        # fsyncs, which wait for the disk, go to the pool. Every call a pool thread makes
        # must win the GIL back from the busy loop thread, so they are kept to one a file.
        for batch in batches:
            try:
                batch.writer.write_batch(batch)
                written.append(batch)
            except OSError as exc:
                errors[id(batch)] = exc
        loop = asyncio.get_running_loop()
        try:
            if self._syncfs is not None:
                if written:
                    try:
                        await loop.run_in_executor(self._pool, self._sync_filesystem)
                    except OSError as exc:  # nothing written this round is known durable
                        errors.update((id(b), exc) for b in written)
            elif written:
                parts = min(self._threads, len(written))
                chunks = [written[i::parts] for i in range(parts)]
                chunk_errors = await asyncio.gather(
                    *(loop.run_in_executor(self._pool, _sync_chunk, c) for c in chunks)
                )
                for chunk, results in zip(chunks, chunk_errors, strict=True):
                    errors.update(
                        (id(b), e) for b, e in zip(chunk, results, strict=True) if e is not None
                    )
        except BaseException as exc:  # cancelled mid-round: nothing of it is known durable
            for batch in batches:
                batch.writer.complete_batch(batch, exc)
            raise
        for batch in batches:
            error = errors.get(id(batch))
            batch.writer.complete_batch(batch, error)
            if error is None and self._on_stored is not None:
                self._on_stored(batch)
        self.rounds += 1
        self.last_round_s = time.monotonic() - started
        self.frames_stored += sum(b.frames for b in batches if errors.get(id(b)) is None)
        if self.keep_round_times and len(self.round_times_s) < _ROUND_TIMES_KEPT:
            self.round_times_s.append(self.last_round_s)

    def _sync_filesystem(self) -> None:
        assert self._syncfs is not None
        # One descriptor for the server's lifetime: syncfs reports writeback errors that
        # happened since *this descriptor* was opened (Linux >= 5.8, errseq), so a fresh
        # one per round could miss an error between rounds.
        if self._dir_fd is None:
            self._dir_fd = os.open(self._data_dir, os.O_RDONLY)
        self._syncfs(self._dir_fd)
