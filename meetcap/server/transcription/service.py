"""The server side of live transcription: worker processes and each session's transcript.

:class:`TranscriptionService` runs on the server's event loop. As a sink
(meetcap/server/sink.py) it hears what is durable and passes it on to the worker that
transcribes that session (sessions are spread over ``workers`` processes and stay with
one). It starts the workers (spawn) and waits until each has loaded its model, so a
missing or broken model is an error at server start; it restarts a worker that dies
(the new one carries on from the transcript files: the utterance it was working on is
transcribed again). Each session it serves has a :class:`SessionTranscript`: the finals
(loaded from ``<id>.transcript.json``, then as the worker reports them: each is on disk
before it is reported), the newest partial, and the lag, which connection feeds
(feed.py) turn into messages.

A session whose audio crashes its worker every time would be retried for ever and
starve the other sessions of that worker. Each worker says which session it works on
(``step``); when it dies, that session is blamed, and after ``max_crashes`` deaths in a
row at the same point of its audio its transcription is given up: logged, written into
its ``<id>.transcript.json`` (``failed``: a restarted server does not retry it either;
the audio is whole, ``meetcap transcribe`` can be tried on it), and sent to its clients
in ``transcript_status.failed``. The worker is restarted for the other sessions.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meetcap.constants import FRAME_MS
from meetcap.durable import read_json
from meetcap.errors import ConfigError, StorageError
from meetcap.server.sink import SessionSummary, StoredBatch
from meetcap.server.transcription.config import TranscriptionConfig
from meetcap.server.transcription.feed import TranscriptFeed
from meetcap.server.transcription.files import LOCK_DIR, TranscriptFiles
from meetcap.server.transcription.worker import worker_main
from meetcap.transcribe.segments import TranscriptSegment

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from meetcap.protocol import Hello
    from meetcap.server.handler import ConnectionHandler

log = logging.getLogger(__name__)

_RESTART_DELAYS_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # a worker dying again soon waits longer
_STABLE_AFTER_S = 30.0  # a worker up this long counts as healthy again
_STOP_WAIT_S = 5.0


class SessionTranscript:
    """What the server knows of one session's transcript (the loop thread only)."""

    def __init__(self, session_id: str, files: TranscriptFiles) -> None:
        self.session_id = session_id
        self.files = files
        self.finals: list[TranscriptSegment] = []
        self.partial: TranscriptSegment | None = None
        self.durable = 0  # frames stored
        self.fed = 0  # frames the worker has taken in
        self.ended = False
        self.complete = False
        self.failed: str | None = None
        self.resume_seq = -1  # where its worker would carry on (its "saved" messages)
        self.crashes = 0  # worker deaths while on this session, all at resume_seq crash_at
        self.crash_at = -1
        self.feeds: set[TranscriptFeed] = set()
        self._changed = asyncio.Event()
        self.reload()

    @property
    def lag_s(self) -> float:
        """How far the transcript is behind the stored audio."""
        if self.complete:
            return 0.0
        return max(0, self.durable - self.fed) * FRAME_MS / 1000

    def changed(self) -> asyncio.Event:
        """Set at the next change: take it, look, then wait (nothing is missed)."""
        return self._changed

    def notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def reload(self) -> None:
        """Read the finals from the file (each final is there before it is reported)."""
        try:
            state = self.files.load()
        except StorageError as exc:
            self.failed = str(exc)
            log.error("session %s: %s", self.session_id, exc)
            return
        if len(state.segments) > len(self.finals):
            self.finals = state.segments
        self.complete = self.complete or state.complete
        self.failed = self.failed or state.failed

    def add_finals(self, segments: list[TranscriptSegment]) -> None:
        for seg in segments:
            if seg.id < len(self.finals):
                continue  # already known (read from the file)
            if seg.id > len(self.finals):
                self.reload()  # the file has the ones in between
                if seg.id < len(self.finals):
                    continue
            if seg.id == len(self.finals):
                self.finals.append(seg)
        if self.partial is not None and self.partial.id < len(self.finals):
            self.partial = None


@dataclass(eq=False)
class _WorkerProcess:
    index: int
    process: multiprocessing.process.BaseProcess
    conn: Connection
    ready: asyncio.Future[str]
    started_at: float = field(default_factory=time.monotonic)
    alive: bool = True
    stepping: str | None = None  # the session it said it works on (blamed if it dies)


class TranscriptionService:
    """See the module doc. ``start()`` before the server listens, ``stop()`` after it."""

    def __init__(
        self, config: TranscriptionConfig, data_dir: Path, *, log_level: str = "info"
    ) -> None:
        self.config = config
        self.data_dir = Path(data_dir)
        self.log_level = log_level
        self.sessions: dict[str, SessionTranscript] = {}
        self._assigned: dict[str, int] = {}  # session -> worker index
        self._workers: list[_WorkerProcess | None] = [None] * config.workers
        self._failures = [0] * config.workers
        self._context = multiprocessing.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self.model_dir: str | None = None
        self.restarts = 0  # workers restarted after dying (tests and the stats read it)

    # -- lifecycle

    async def start(self) -> None:
        """Start the workers; raise ConfigError when the model cannot be loaded."""
        self._loop = asyncio.get_running_loop()
        for index in range(self.config.workers):
            self._spawn(index)
        try:
            for worker in list(self._workers):
                assert worker is not None
                self.model_dir = await asyncio.wait_for(
                    asyncio.shield(worker.ready), self.config.ready_timeout_s
                )
        except asyncio.TimeoutError:
            await self.stop()
            raise ConfigError(
                f"transcription cannot start: the model did not load within "
                f"{self.config.ready_timeout_s:g} s"
            ) from None
        except ConfigError:
            await self.stop()
            raise
        log.info(
            "transcribing with %d worker(s), model %s", self.config.workers, self.model_dir
        )
        await asyncio.to_thread(self._find_unfinished)

    async def stop(self) -> None:
        """Stop the workers (their state is on disk; a restart carries on from it)."""
        self._stopping = True
        workers = [w for w in self._workers if w is not None]
        for worker in workers:
            # Not close(): our reader thread is blocked reading this pipe, so closing it
            # here would not reach the worker as EOF.
            try:
                worker.conn.send(("stop", "", 0))
            except (OSError, ValueError):
                pass

        def join() -> None:
            for worker in workers:
                worker.process.join(_STOP_WAIT_S)
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join(_STOP_WAIT_S)

        await asyncio.to_thread(join)
        for feed in [f for s in self.sessions.values() for f in s.feeds]:
            feed.close()

    def worker_pids(self) -> list[int]:
        return [w.process.pid for w in self._workers if w is not None and w.process.pid]

    # -- the sink (called on the loop thread after storage)

    def frames_stored(self, batch: StoredBatch) -> None:
        self._stored(batch.session_id, batch.first_seq + batch.frames)

    def session_ended(self, summary: SessionSummary) -> None:
        session = self._session(summary.session_id)
        session.ended = True
        session.durable = max(session.durable, summary.frames)
        self._send(summary.session_id, ("ended", summary.session_id, summary.frames))

    def _stored(self, session_id: str, frames: int) -> None:
        session = self._session(session_id)
        if frames > session.durable:
            session.durable = frames
            # The lag grows with what is stored, not only with what a worker reports:
            # a worker that is stalled (a busy machine) reports nothing at all.
            session.notify()
        self._send(session_id, ("stored", session_id, session.durable))

    # -- connections

    def attach(self, handler: ConnectionHandler, hello: Hello) -> TranscriptFeed:
        """A connection attached ``handler.session_id``: transcribe what is stored (after a
        restart nothing else would start it); the feed sends the transcript if the hello
        asked for it (else it sends nothing). Call :meth:`detach` when it detaches."""
        assert handler.session_id is not None and handler.writer is not None
        session_id = handler.session_id
        self._stored(session_id, handler.writer.durable_frames)
        session = self._session(session_id)
        feed = TranscriptFeed(
            handler.ws, session, hello.transcript_from, wanted=hello.transcript
        )
        session.feeds.add(feed)
        feed.start()
        return feed

    def detach(self, feed: TranscriptFeed) -> None:
        """The connection detached: its worker lets go of the session once it has read
        what is stored (unless new audio comes), so a resume on another instance takes
        the transcript over at once."""
        feed.close()
        session = feed.session
        session.feeds.discard(feed)
        if not session.ended:
            self._send(session.session_id, ("detached", session.session_id, session.durable))
        self._maybe_forget(session)

    # -- internals

    def _session(self, session_id: str) -> SessionTranscript:
        session = self.sessions.get(session_id)
        if session is None:
            session = SessionTranscript(session_id, TranscriptFiles(self.data_dir, session_id))
            self.sessions[session_id] = session
        return session

    def _maybe_forget(self, session: SessionTranscript) -> None:
        if not session.feeds and session.session_id not in self._assigned:
            self.sessions.pop(session.session_id, None)

    def _worker_for(self, session_id: str) -> int:
        index = self._assigned.get(session_id)
        if index is None:
            load = [0] * len(self._workers)
            for assigned in self._assigned.values():
                load[assigned] += 1
            index = min(range(len(load)), key=load.__getitem__)
            self._assigned[session_id] = index
        return index

    def _send(self, session_id: str, message: tuple) -> None:
        session = self.sessions.get(session_id)
        if session is not None and (session.complete or session.failed):
            return
        worker = self._workers[self._worker_for(session_id)]
        if worker is None or not worker.alive or not worker.ready.done():
            return  # the restarted worker is told everything once it is ready
        try:
            worker.conn.send(message)
        except (OSError, ValueError):
            pass  # it died: _on_exit restarts it and resends

    def _spawn(self, index: int) -> None:
        assert self._loop is not None
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, name=f"meetcap-transcribe-{index}",
            args=(child, self.config, str(self.data_dir), self.log_level), daemon=True,
        )
        process.start()
        child.close()
        worker = _WorkerProcess(index, process, parent, self._loop.create_future())
        self._workers[index] = worker
        threading.Thread(
            target=self._read_worker, args=(worker,), name=f"meetcap-transcribe-read-{index}",
            daemon=True,
        ).start()
        log.info("transcription worker %d started (pid %s)", index, process.pid)

    def _read_worker(self, worker: _WorkerProcess) -> None:
        """Thread: the worker's messages, handed to the loop."""
        loop = self._loop
        assert loop is not None
        while True:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            try:
                loop.call_soon_threadsafe(self._on_message, worker, message)
            except RuntimeError:
                return  # the loop is closed
        try:
            loop.call_soon_threadsafe(self._on_exit, worker)
        except RuntimeError:
            pass

    def _on_message(self, worker: _WorkerProcess, message: tuple) -> None:
        kind = message[0]
        if kind == "step":
            worker.stepping = message[1]
            return
        if kind == "ready":
            if not worker.ready.done():
                worker.ready.set_result(message[1])
            self._resend(worker.index)
            return
        if kind == "fatal":
            if not worker.ready.done():
                worker.ready.set_exception(ConfigError(f"transcription cannot start: {message[1]}"))
            return
        session = self.sessions.get(message[1])
        if session is None:
            return
        if kind == "finals":
            session.add_finals([TranscriptSegment.from_json(d) for d in message[2]])
        elif kind == "partial":
            partial = TranscriptSegment.from_json(message[2])
            if partial.id >= len(session.finals):
                session.partial = partial
        elif kind == "progress":
            session.fed = message[2]
        elif kind == "saved":
            session.resume_seq = message[2]
            return
        elif kind == "complete":
            if message[2] > len(session.finals):
                session.reload()
            session.complete = True
            session.partial = None
            self._assigned.pop(session.session_id, None)
        elif kind == "released":
            session.partial = None
            self._assigned.pop(session.session_id, None)
        elif kind == "failed":
            session.failed = message[2]
            self._assigned.pop(session.session_id, None)
        session.notify()
        if kind in ("complete", "released", "failed"):
            self._maybe_forget(session)

    def _on_exit(self, worker: _WorkerProcess) -> None:
        worker.alive = False
        if self._stopping or self._workers[worker.index] is not worker:
            return
        worker.process.join(0.1)
        if not worker.ready.done():
            worker.ready.set_exception(ConfigError(
                f"transcription cannot start: the worker exited (status "
                f"{worker.process.exitcode}) before loading its model"
            ))
            return
        self._blame(worker)
        healthy = time.monotonic() - worker.started_at > _STABLE_AFTER_S
        self._failures[worker.index] = 0 if healthy else self._failures[worker.index] + 1
        delay = _RESTART_DELAYS_S[min(self._failures[worker.index], len(_RESTART_DELAYS_S) - 1)]
        log.warning(
            "transcription worker %d (pid %s) died (status %s); restarting it in %.1f s: "
            "its sessions carry on from their transcript files",
            worker.index, worker.process.pid, worker.process.exitcode, delay,
        )
        assert self._loop is not None
        self._loop.call_later(delay, self._restart, worker.index)

    def _blame(self, worker: _WorkerProcess) -> None:
        """The worker died while on ``worker.stepping``: count it against that session at
        its resume point (the same after every restart until a final is saved, whatever
        the timing); give the session up after ``max_crashes`` at one resume point."""
        session = self.sessions.get(worker.stepping or "")
        if session is None or session.complete or session.failed:
            return
        if session.crash_at == session.resume_seq:
            session.crashes += 1
        else:
            session.crashes, session.crash_at = 1, session.resume_seq
        if session.crashes < self.config.max_crashes:
            return
        sentence = (
            f"transcription of this session stopped: the transcription worker crashed "
            f"{session.crashes} times on its audio after "
            f"{max(0, session.resume_seq) * FRAME_MS / 1000:.1f} s (status "
            f"{worker.process.exitcode}); the audio is stored whole, and "
            f"'meetcap transcribe {session.session_id}.wav' can be tried on it"
        )
        log.error("session %s: %s", session.session_id, sentence)
        session.failed = sentence
        session.partial = None
        self._assigned.pop(session.session_id, None)
        session.notify()
        # Into its transcript file (a restart does not retry it), off the loop.
        assert self._loop is not None
        self._loop.run_in_executor(None, _record_failure, session.files, sentence)
        self._maybe_forget(session)

    def _restart(self, index: int) -> None:
        if self._stopping:
            return
        self.restarts += 1
        self._spawn(index)

    def _resend(self, index: int) -> None:
        """A (re)started worker: tell it every session it serves."""
        for session_id, assigned in list(self._assigned.items()):
            if assigned != index:
                continue
            session = self.sessions.get(session_id)
            if session is None:
                continue
            kind = "ended" if session.ended else "stored"
            self._send(session_id, (kind, session_id, session.durable))

    def _find_unfinished(self) -> None:
        """Thread, at start: sessions that ended while their transcript was unfinished
        (the server stopped or died first) still hold a lock file: finish them."""
        lock_dir = self.data_dir / LOCK_DIR
        try:
            names = [p.stem for p in lock_dir.glob("*.lock")]
        except OSError:
            return
        for session_id in names:
            try:
                doc = read_json(self.data_dir / f"{session_id}.json")
            except (OSError, ValueError) as exc:
                log.warning("session %s: its sidecar cannot be read (%s): its transcript "
                            "is finished when its client comes back", session_id, exc)
                continue
            if isinstance(doc, dict) and doc.get("finished"):
                frames = int(doc.get("frames", 0))
                assert self._loop is not None
                self._loop.call_soon_threadsafe(self._finish_ended, session_id, frames)

    def _finish_ended(self, session_id: str, frames: int) -> None:
        session = self._session(session_id)
        if session.complete:
            self._maybe_forget(session)
            return
        session.ended = True
        session.durable = max(session.durable, frames)
        self._send(session_id, ("ended", session_id, frames))


def _record_failure(files: TranscriptFiles, sentence: str) -> None:
    """Thread: write ``failed`` into the session's transcript file and remove its lock
    file (the worker that held the lock is dead; the restarted one is not given this
    session), so neither this server nor a restarted one takes it up again."""
    try:
        if not files.try_lock():
            log.warning("session %s: its transcript is locked by another process; the "
                        "failure is not recorded in it", files.session_id)
            return
        try:
            state = files.load()
            state.failed = sentence
            files.save(state)
        finally:
            files.unlock(remove=True)
    except (OSError, StorageError) as exc:
        log.error("session %s: the failure cannot be recorded in its transcript: %s",
                  files.session_id, exc)
