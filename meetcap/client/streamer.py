"""The streaming client: frames in from the audio side, delivered to meetcap-server.

The :class:`Streamer` owns one thread running its own asyncio event loop (the websockets
client lives there, nowhere else). The audio side calls :meth:`Streamer.submit` from its
own thread: the frame is written to the disk spool right there (one ``os.write``, tens
of microseconds), and the sender on the loop is woken with ``loop.call_soon_threadsafe``.
Nothing on the audio side waits for the network, and no frame is ever dropped: if the
spool cannot take a frame, ``submit`` raises (:class:`~meetcap.errors.SpoolFullError`,
:class:`~meetcap.errors.StorageError`) and the app stops capture with that message.

Sessions an earlier run left in the spool (the app crashed, or was closed without
ending) are delivered automatically on :meth:`Streamer.start`, each over its own
connection, alongside the new session, and then ended; :meth:`Streamer.finish` waits for
them too. :func:`deliver_pending` does only that, without capturing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import asdict, replace

from meetcap.client.config import StreamerConfig
from meetcap.client.link import NOTHING_TO_DELIVER, SessionLink, format_offset
from meetcap.client.outcomes import Outcome
from meetcap.client.spool import Spool, SpoolSession, describe_lost
from meetcap.client.status import FinishResult, State, StreamStatus
from meetcap.constants import FRAME_MS
from meetcap.errors import FatalError, StorageError, UsageError
from meetcap.frames import Frame
from meetcap.transcribe.segments import TranscriptSegment

log = logging.getLogger(__name__)

_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0


class Streamer:
    """Streams frames to meetcap-server through a disk spool, surviving drops and crashes.

    Call :meth:`start`, then :meth:`submit` each frame (from any one thread, in sequence
    order from 0), then :meth:`finish` to end the session (or :meth:`close` to stop and
    keep the rest in the spool for the next run). :meth:`status` is safe to call from any
    thread at any time. ``on_status`` (optional) is called with a fresh
    :class:`StreamStatus` whenever the state or failure reason changes, on the streamer's
    thread (the last call: on the thread calling finish()/close()); a GUI must hand it
    over to its own thread (e.g. a Qt queued signal) and must not block in it.

    Sessions an earlier run left in the spool for the same destination
    (:meth:`StreamerConfig.resolved_destination`) are delivered and ended on their own
    connections from :meth:`start` on (``StreamerConfig.deliver_pending``); status()
    counts them in ``earlier_sessions`` and finish() reports them in ``result.earlier``.
    Sessions recorded for another destination stay in the spool, untouched and unlocked.

    With ``config.transcript``, the live session asks the server for its transcript:
    ``on_transcript`` gets each final segment exactly once (across reconnects) and the
    partials as they come, on the streamer's thread (hand them over, do not block);
    finish() also waits for the finals that follow the server's ``ended``.

    ``capture`` False starts no new session (only the earlier ones are delivered);
    ``pending_ids`` (local ids) limits which earlier sessions are taken.
    """

    def __init__(
        self,
        config: StreamerConfig,
        on_status: Callable[[StreamStatus], None] | None = None,
        *,
        capture: bool = True,
        pending_ids: Collection[str] | None = None,
        on_transcript: Callable[[TranscriptSegment], None] | None = None,
    ) -> None:
        self.config = config
        self._on_status = on_status
        self._on_transcript = on_transcript
        self._capture = capture
        self._pending_ids = None if pending_ids is None else frozenset(pending_ids)
        self._spool: Spool | None = None
        self._live: SpoolSession | None = None
        self._live_link: SessionLink | None = None
        self._earlier_links: list[SessionLink] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._submit_lock = threading.Lock()
        self._accepting = False
        self._closed = False
        self._sha256 = hashlib.sha256()  # of the PCM submitted, checked against `ended`
        self._sync_error: StorageError | None = None
        self._sync_stop = threading.Event()
        self._syncer: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> None:
        """Open the spool, start the streamer thread and connect.

        Raises :class:`~meetcap.errors.StorageError` when the spool cannot be created.
        """
        if self._thread is not None:
            raise UsageError("Streamer.start() may be called only once")
        destination = self.config.resolved_destination()
        self._spool = Spool.open(
            self.config.resolved_spool_dir(), self.config.spool_cap_bytes,
            destination=destination,
            local_ids=self._pending_ids if self.config.deliver_pending else (),
        )
        if self._spool.elsewhere:
            log.info(
                "%d session(s) in the spool at %s are for another server or account, "
                "busy or damaged: left alone (see `meetcap spool list`)",
                len(self._spool.elsewhere), self._spool.root,
            )
        if self.config.deliver_pending:
            for session in self._spool.pending:
                self._earlier_links.append(
                    SessionLink(session, self.config, live=False, on_change=self._notify)
                )
                log.info(
                    "delivering %d frames left in the spool by an earlier run (%s)",
                    session.unacked_frames, session.dir,
                )
        if self._capture:
            self._live = self._spool.new_session(
                time.time(), self.config.url, destination=destination,
                account=self.config.account(), tracks=self.config.tracks,
            )
            self._live_link = SessionLink(
                self._live, self.config, live=True, on_change=self._notify,
                on_transcript=self._on_transcript,
            )
            self._accepting = True
        self._thread = threading.Thread(target=self._run, name="meetcap-streamer", daemon=True)
        self._thread.start()
        if self._live is not None:
            self._syncer = threading.Thread(
                target=self._sync_forever, name="meetcap-spool-sync", daemon=True
            )
            self._syncer.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise FatalError(f"the streamer thread did not start within {_START_TIMEOUT_S:g} s")

    def submit(self, frame: Frame) -> None:
        """Hand one frame over for delivery; returns once it is in the spool.

        Thread-safe and non-blocking (no network wait). Frames must come in order,
        ``frame.seq`` 0, 1, 2, ... Raises :class:`~meetcap.errors.SpoolFullError` when the
        spool reached its cap and :class:`~meetcap.errors.StorageError` when the disk
        refuses the write: the frame was not taken, so the caller must stop capture and
        show the message (audio is never dropped silently).
        """
        with self._submit_lock:
            if not self._accepting:
                raise UsageError(
                    "this streamer takes no more frames (not started, or finish()/close() "
                    "was called)"
                )
            if self._sync_error is not None:
                raise self._sync_error
            assert self._live is not None
            self._live.append(frame)
            self._sha256.update(frame.pcm)
        loop, link = self._loop, self._live_link
        if loop is not None and link is not None:
            try:
                loop.call_soon_threadsafe(link.wake)
            except RuntimeError:
                pass  # the loop is shutting down; the frame is safe in the spool

    def finish(self, timeout_s: float = 30.0) -> FinishResult:
        """End the session: deliver every frame, send ``end``, wait for ``ended``.

        Also waits (within the same ``timeout_s``) for sessions recovered from the spool.
        Stops the streamer in any case. On failure or timeout the result says how many
        frames stay in the spool; they are delivered by the next :meth:`start`.
        """
        if self._thread is None:
            raise UsageError("finish() needs a started streamer")
        deadline = time.monotonic() + timeout_s
        with self._submit_lock:
            self._accepting = False
        live = self._live
        skipped_live = False
        if live is not None and self._live_link is not None:
            snap = self._live_link.snapshot()
            if live.last_seq < 0 and snap.state != "connected":
                skipped_live = True  # nothing captured and no server session in use
            else:
                self._call(self._live_link.close_input)
                self._live_link.done.wait(max(0.0, deadline - time.monotonic()))
        for link in self._earlier_links:
            link.done.wait(max(0.0, deadline - time.monotonic()))
        self._shutdown()
        earlier = tuple(self._result_of(link, timeout_s) for link in self._earlier_links)
        if self._live_link is None:
            ok = all(r.ok for r in earlier)
            left = sum(r.frames_left for r in earlier)
            problems = [r.message for r in earlier if not r.ok and not r.frames_left]
            if left:
                problems.insert(0, f"{left} frames from earlier sessions stay in the spool")
            delivered = f"delivered {len(earlier)} session(s) left in the spool"
            message = "; ".join(problems) or delivered
            return FinishResult(ok=ok, message=message, frames_left=left, earlier=earlier)
        if skipped_live:
            return FinishResult(
                ok=all(r.ok for r in earlier), message="no audio was captured", earlier=earlier
            )
        result = self._result_of(self._live_link, timeout_s, self._sha256.hexdigest())
        return _with_earlier(result, earlier)

    def close(self) -> None:
        """Stop without ending the session; unacked frames stay in the spool for next time."""
        with self._submit_lock:
            self._accepting = False
        if self._thread is not None:
            self._shutdown()

    def status(self) -> StreamStatus:
        """A consistent snapshot of the live session's delivery (thread-safe)."""
        if self._thread is None:
            return StreamStatus(state="closed", server_url=self.config.url, reason="not started")
        earlier = [link.snapshot() for link in self._earlier_links]
        earlier_active = [s for s in earlier if s.state not in ("finished", "failed")]
        common = dict(
            server_url=self.config.url,
            earlier_sessions=len(earlier_active),
            earlier_frames_spooled=sum(s.frames_spooled for s in earlier),
            spool_problems=self._spool_problems(),
        )
        link = self._live_link or (self._earlier_links[0] if self._earlier_links else None)
        if link is None:
            state: State = "closed" if self._closed else "finished"
            return StreamStatus(state=state, **common)  # type: ignore[arg-type]
        # The link's snapshot holds the live-session fields of StreamStatus, by name.
        snap = asdict(link.snapshot())
        if self._closed and snap["state"] not in ("finished", "failed"):
            snap["state"] = "closed"
        return StreamStatus(**snap, **common)  # type: ignore[arg-type]

    def _spool_problems(self) -> tuple[str, ...]:
        """What is damaged or odd in the spool, one sentence per session folder."""
        problems = []
        if self._spool is not None:
            problems += [f"recording {d.name}: {why}" for d, why in self._spool.problems]
        links = [*self._earlier_links, *([self._live_link] if self._live_link else [])]
        for link in links:
            words = link.session.damage_words()
            if words:
                problems.append(f"recording {link.session.dir.name}: {words}")
        return tuple(problems)

    # -- the streamer thread

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        except Exception:  # pragma: no cover - _main catches its own errors
            log.exception("the streamer loop failed")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop = asyncio.Event()
        links = [*self._earlier_links, *([self._live_link] if self._live_link else [])]
        tasks = [asyncio.create_task(link.run()) for link in links]
        self._loop = loop
        self._ready.set()
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _sync_forever(self) -> None:
        """fsync the live session every ``fsync_interval_s``, on a thread of its own.

        Off the audio thread (an fsync can take milliseconds on a busy disk) and off the
        event loop; a plain thread's timed wait costs less CPU per round than a hop
        through the loop's executor (~40 us vs ~90 us on the 2-core test VM).
        """
        live = self._live
        assert live is not None
        while not self._sync_stop.wait(self.config.fsync_interval_s):
            try:
                live.sync()
            except StorageError as exc:
                log.error("%s", exc)
                self._sync_error = exc  # the next submit() raises it: capture must stop
                return

    # -- helpers

    def _call(self, callback: Callable[[], None]) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(callback)
            except RuntimeError:
                pass  # loop already closed

    def _shutdown(self) -> None:
        if self._closed:
            return
        if self._loop is not None and self._stop is not None:
            self._call(self._stop.set)
        if self._thread is not None:
            self._thread.join(_STOP_TIMEOUT_S)
            if self._thread.is_alive():
                log.error("the streamer thread did not stop within %.0f s", _STOP_TIMEOUT_S)
        self._sync_stop.set()
        if self._syncer is not None:
            self._syncer.join(_STOP_TIMEOUT_S)
        self._closed = True
        live = self._live
        if live is not None:
            if live.last_seq < 0 and not (self._live_link and self._live_link.outcome):
                live.remove()  # nothing captured: nothing to deliver later
            elif live.dir.exists():
                live.close()
        if self._spool is not None:
            self._spool.close()
        self._notify()

    def _notify(self) -> None:
        if self._on_status is None:
            return
        try:
            self._on_status(self.status())
        except Exception:
            log.exception("the status callback failed")

    def _result_of(
        self, link: SessionLink, timeout_s: float, local_sha256: str | None = None
    ) -> FinishResult:
        session = link.session
        outcome: Outcome | None = link.outcome
        session_id = session.meta.server_session_id  # None: no welcome confirmed it
        left = 0 if outcome is not None and outcome.kind == "finished" else session.unacked_frames
        lost = session.lost
        if session.seq_offset:
            # Re-opened as a new server session (the server lost the first): its copy
            # starts seq_offset frames in, so the whole capture's hash cannot match it.
            local_sha256 = None
        # Audio the spool lost on disk, in words: what went out as silence, or was cut.
        lost_words = (
            f"; audio lost from the spool before delivery: {describe_lost(session.lost_ranges)}"
            if lost else ""
        )
        if outcome is not None and outcome.kind == "finished":
            ended = outcome.ended
            if ended is None and outcome.reason == NOTHING_TO_DELIVER:
                return FinishResult(ok=True, message=f"recording {session.meta.local_id}: "
                                    f"{NOTHING_TO_DELIVER}", frames=0)
            if ended is None:
                # The server finalised the session after our end{last_seq} (it accepts end
                # only once every frame arrived) but its answer was lost with the
                # connection: stored, though its hash cannot be checked.
                stored = session.last_seq + 1 - session.seq_offset
                return FinishResult(
                    ok=not lost, session_id=session_id, frames=stored,
                    local_sha256=local_sha256, lost=lost,
                    message=reopened_words(session) + f"session {session_id}: {stored} "
                    "frames stored (the "
                    "server's final answer was lost, so its hash was not checked)" + lost_words,
                )
            verified = local_sha256 is not None and ended.sha256 == local_sha256
            captured = session.last_seq + 1 - session.seq_offset
            if lost and ended.frames == captured:
                # The hash differs, as it must: silence went out for the lost frames.
                message = (
                    f"session {session_id}: {ended.frames} frames "
                    f"({ended.duration_ms / 1000:.1f} s) stored" + lost_words
                )
            elif local_sha256 is not None and not verified:
                message = (
                    f"the server's copy of session {session_id} differs from the captured audio "
                    f"(server sha256 {ended.sha256[:12]}..., captured {local_sha256[:12]}...)"
                )
            elif ended.frames != captured:
                message = f"the server stored {ended.frames} frames, {captured} were captured"
            else:
                message = (
                    f"session {session_id}: {ended.frames} frames "
                    f"({ended.duration_ms / 1000:.1f} s) stored"
                    + (" and verified" if verified else "")
                )
            ok = ended.frames == captured and (local_sha256 is None or verified) and not lost
            message = reopened_words(session) + message
            return FinishResult(
                ok=ok, message=message, session_id=session_id, frames=ended.frames,
                duration_ms=ended.duration_ms, sha256=ended.sha256, local_sha256=local_sha256,
                verified=verified, lost=lost,
            )
        seconds = left * FRAME_MS / 1000
        if outcome is None:
            message = (
                f"the server did not confirm every frame within {timeout_s:g} s: {left} frames "
                f"({seconds:.1f} s of audio) stay in the spool at {session.dir}: the next "
                "recording to the same server and account delivers them, or `meetcap spool "
                "deliver`"
            )
            last = link.snapshot().reason
            if last:
                message += f" (last problem: {last})"
        else:
            message = (
                f"{outcome.reason}; {left} frames ({seconds:.1f} s of audio) stay in the "
                f"spool at {session.dir}"
            )
        damage = session.damage_words()
        if damage:
            message += f" ({damage})"
        return FinishResult(
            ok=False, message=message, session_id=session_id, frames=session.acked + 1,
            local_sha256=local_sha256, frames_left=left, lost=lost,
        )


def reopened_words(session: SpoolSession) -> str:
    """What became of a session the server lost (see SpoolSession.reopen_as_new), in
    words, ending in "; " ("" for any other session)."""
    meta = session.meta
    if not meta.seq_offset and meta.lost_session is None:
        return ""
    return (
        f"the server had lost session {meta.lost_session}; the audio it had not "
        f"acknowledged, from {format_offset(meta.seq_offset)} on (frames {meta.seq_offset}-"
        f"{session.last_seq}), went to a new session: "
    )


def _with_earlier(result: FinishResult, earlier: tuple[FinishResult, ...]) -> FinishResult:
    return replace(result, earlier=earlier) if earlier else result


def deliver_pending(config: StreamerConfig, timeout_s: float = 60.0) -> FinishResult:
    """Deliver and end the sessions an earlier run left in the spool for ``config``'s
    destination, without capturing.

    Returns at once when there is nothing to deliver; ``result.earlier`` has one entry
    per session. (:meth:`Streamer.start` does the same alongside a new capture.)
    """
    streamer = Streamer(config, capture=False)
    streamer.start()
    return streamer.finish(timeout_s)
