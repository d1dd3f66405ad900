"""Deliver one spooled session to the server, over as many connections as it takes.

A :class:`SessionLink` is an asyncio task on the streamer's loop. Each connection:

1. handshake with ``Authorization: Bearer <token>`` (HTTP 401/403/404 are fatal);
2. ``hello`` (session id + resume token when resuming), wait for ``welcome``;
3. persist the new resume token in the spool (fsync) before sending anything else;
4. send every spooled frame after ``welcome.acked``, then each new one as it arrives;
   acks delete acknowledged frames from the spool;
5. once the capture side is done (:meth:`close_input`) and everything is sent: ``end``,
   then wait for ``ended``.

A dropped connection (or one that stops acking for ``ack_timeout_s``) is retried after a
full-jitter backoff; fatal answers stop the link with a reason a person can read. The
wire rules themselves live in :class:`meetcap.protocol.ClientConnection`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from meetcap.client.backoff import Backoff, ConnectionSpan
from meetcap.client.config import StreamerConfig
from meetcap.client.outcomes import Outcome, from_close, from_http_status
from meetcap.client.spool import SpoolSession
from meetcap.client.status import State, format_duration
from meetcap.constants import FRAME_MS
from meetcap.errors import StorageError
from meetcap.protocol import (
    Ack,
    ClientConnection,
    CloseCode,
    Ended,
    Error,
    GoingAway,
    MessageReceived,
    ProtocolViolation,
    Transcript,
    TranscriptStatus,
    Welcome,
)
from meetcap.protocol.audio import SPEAKERS_VERSION, TRACKS_VERSION
from meetcap.protocol.connection import ClientState
from meetcap.protocol.messages import MAX_TEXT_BYTES
from meetcap.transcribe.segments import TranscriptSegment

log = logging.getLogger(__name__)


def format_offset(frame: int) -> str:
    """Where frame ``frame`` starts in the recording, as m:ss (h:mm:ss past an hour)."""
    return format_duration(frame * FRAME_MS // 1000)  # whole seconds: where it starts

_READ_BATCH = 32  # spool records read per pread while catching up (100 KB)
_RTT_SMOOTHING = 0.2  # weight of the newest sample in the moving average
_QUICK_FAILURES_WORTH_SAYING = 3
_FLOOD_MARGIN_MS = 300  # stay this far inside the server's flood limit once it is known
# The outcome's reason for a recording of no frame that never reached the server.
NOTHING_TO_DELIVER = "nothing was captured and the server never created the session"


@dataclass(frozen=True, slots=True)
class LinkSnapshot:
    """The link's counters at one moment (read from any thread)."""

    state: State
    session_id: str | None
    reason: str | None
    next_retry_in_s: float | None
    frames_sent: int
    frames_acked: int
    frames_spooled: int
    ack_rtt_ms: float | None
    ack_rtt_avg_ms: float | None
    reconnects: int
    quick_failures: int
    transcript_lag_s: float | None
    transcript_failed: str | None = None  # see StreamStatus.transcript_failed
    # A tracks session: whether the server stores both lanes (welcome.tracks of the last
    # connection); None before a welcome, or for a mono session.
    tracks_stored: bool | None = None


class SessionLink:
    """Delivers one :class:`SpoolSession`; run :meth:`run` as a task on one event loop.

    ``live`` is True for the session being captured now (more frames will come:
    :meth:`wake` after each append, :meth:`close_input` when capture ends). A session
    recovered from the spool is not live: it is delivered and ended at once. Other
    threads reach the link only through ``loop.call_soon_threadsafe`` (wake,
    close_input) and :meth:`snapshot`; :attr:`done` is set when :attr:`outcome` is final.
    """

    def __init__(
        self,
        session: SpoolSession,
        config: StreamerConfig,
        *,
        live: bool,
        on_change: Callable[[], None] | None = None,
        on_transcript: Callable[[TranscriptSegment], None] | None = None,
    ) -> None:
        self.session = session
        self.config = config
        self.live = live
        self._on_change = on_change
        self._input_closed = not live
        self._wake = asyncio.Event()
        self._backoff = Backoff(
            config.backoff_base_s,
            config.backoff_cap_s,
            healthy_after_s=config.healthy_after_s,
            quick_failure_s=config.quick_failure_s,
        )
        self.done = threading.Event()
        self.outcome: Outcome | None = None
        # Counters, written by the loop thread, read under _lock by snapshot().
        self._lock = threading.Lock()
        self._state: State = "connecting"
        self._reason: str | None = None
        self._retry_at: float | None = None
        self._frames_sent = 0
        self._rtt_ms: float | None = None
        self._rtt_avg_ms: float | None = None
        self._reconnects = 0
        self._ever_welcomed = False
        # Per-connection state, reset by _attempt().
        self._welcomed = False
        self._error: Error | None = None
        self._going_away: GoingAway | None = None
        self._stall_reason: str | None = None
        self._sender_failure: BaseException | None = None
        self._end_sent = False
        self._last_progress = 0.0
        self._outstanding_since = 0.0
        self._sent_at: collections.deque[tuple[int, float]] = collections.deque()
        # The server's flood rule, learnt from a rate_limited refusal: (monotonic time,
        # audio ms it allowed then). The rule is fixed per session, so it holds across
        # reconnects; see _flood_wait_s.
        self._refused_at: tuple[float, int] | None = None  # (monotonic, excess_ms)
        self._audio_limit: tuple[float, float] | None = None
        # The transcript extension (live session only): the next final id this client
        # needs, asked for again in every hello, so each final is handed up once.
        self._on_transcript = on_transcript
        self._wants_transcript = live and config.transcript
        self._transcript_next = 0
        self._transcript_lag_s: float | None = None
        self._transcript_failed: str | None = None  # the server gave the transcript up
        self._tail = False  # `ended` came; reading the last transcript messages
        self._tracks_stored: bool | None = None  # see LinkSnapshot.tracks_stored
        self._reopened_at_ack: int | None = None  # the ack when re-opened as new, this run

    # -- called on the loop thread (via call_soon_threadsafe from other threads)

    def wake(self) -> None:
        """New frames are in the spool."""
        self._wake.set()

    def close_input(self) -> None:
        """No more frames will come: end the session once every frame is sent."""
        self._input_closed = True
        self._wake.set()

    # -- read from any thread

    def snapshot(self) -> LinkSnapshot:
        now = time.monotonic()
        with self._lock:
            retry_in = None
            if self._state == "reconnecting" and self._retry_at is not None:
                retry_in = max(0.0, self._retry_at - now)
            return LinkSnapshot(
                state=self._state,
                # Only once a welcome confirmed it: the id chosen for hello.create names
                # no session on the server until then.
                session_id=self.session.meta.server_session_id,
                reason=self._reason,
                next_retry_in_s=retry_in,
                frames_sent=self._frames_sent,
                frames_acked=self.session.acked + 1,
                frames_spooled=self.session.unacked_frames,
                ack_rtt_ms=self._rtt_ms,
                ack_rtt_avg_ms=self._rtt_avg_ms,
                reconnects=self._reconnects,
                quick_failures=self._backoff.quick_failures,
                transcript_lag_s=self._transcript_lag_s,
                transcript_failed=self._transcript_failed,
                tracks_stored=self._tracks_stored,
            )

    def _set_state(self, state: State, reason: str | None = None, retry_at: float | None = None):
        with self._lock:
            changed = state != self._state or reason != self._reason
            self._state, self._reason, self._retry_at = state, reason, retry_at
        if changed and self._on_change is not None:
            self._on_change()

    # -- the task

    async def run(self) -> Outcome:
        """Connect, deliver, reconnect until the session ends or a fatal answer comes."""
        try:
            while True:
                outcome = await self._attempt()
                if outcome.kind != "retry":
                    return self._conclude(outcome)
                delay = self._backoff.next_delay_s(outcome.retry_after_s)
                reason = outcome.reason
                if self._backoff.quick_failures >= _QUICK_FAILURES_WORTH_SAYING:
                    reason += (
                        f" (the connection closed right after opening "
                        f"{self._backoff.quick_failures} times in a row)"
                    )
                log.info("session %s: %s; retrying in %.2f s", self._label(), reason, delay)
                self._set_state("reconnecting", reason, time.monotonic() + delay)
                await asyncio.sleep(delay)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave the app waiting forever
            log.exception("session %s: the streamer failed", self._label())
            return self._conclude(Outcome("fatal", f"the streamer failed: {exc!r}"))
        finally:
            self.done.set()

    def _conclude(self, outcome: Outcome) -> Outcome:
        self.outcome = outcome
        if outcome.kind == "finished":
            self._set_state("finished", None)
        else:
            log.warning("session %s: stopped: %s", self._label(), outcome.reason)
            # Why the session waits, for `meetcap spool list` and the app's dialog: it
            # stays in the spool until delivered or discarded, never dropped silently.
            code = outcome.close_code if outcome.close_code is not None else outcome.http_status
            try:
                self.session.record_refusal(code, outcome.reason)
            except StorageError as exc:
                log.error("session %s: cannot record the refusal: %s", self._label(), exc)
            self._set_state("failed", outcome.reason)
        return outcome

    def _label(self) -> str:
        return self.session.meta.session_id or self.session.dir.name

    async def _attempt(self) -> Outcome:
        """One connection, from the handshake to its close."""
        self._welcomed = False
        self._error = None
        self._going_away = None
        self._stall_reason = None
        self._sender_failure = None
        self._end_sent = False
        self._tail = False
        self._sent_at.clear()
        if self._state == "reconnecting":
            self._set_state("reconnecting", self._reason, None)
        opened_at: float | None = None
        cfg = self.config
        try:
            async with connect(
                cfg.url,
                additional_headers={"Authorization": f"Bearer {cfg.token}"},
                user_agent_header=cfg.client_name,
                compression=None,  # audio does not compress; deflate costs memory per link
                max_size=MAX_TEXT_BYTES,  # the server sends only small JSON
                open_timeout=cfg.open_timeout_s,
                # Pings keep NAT and proxies from timing out an idle link, but must not
                # judge liveness: while the server paces a catch-up by reading slowly, a
                # ping waits behind megabytes of audio. The ack watchdog judges instead.
                ping_interval=20.0,
                ping_timeout=None,
                close_timeout=1.0,
            ) as ws:
                opened_at = time.monotonic()
                outcome = await self._converse(ws)
        except InvalidStatus as exc:
            outcome = from_http_status(exc.response.status_code, cfg.url)
        except InvalidURI as exc:
            outcome = Outcome("fatal", f"the server URL is not valid: {exc}")
        except (OSError, asyncio.TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
            detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            outcome = Outcome("retry", f"cannot reach the server at {cfg.url}: {detail}")
        except StorageError as exc:
            outcome = Outcome("fatal", str(exc))
        if outcome.kind == "retry":  # only a retry needs a delay
            lifetime = time.monotonic() - opened_at if opened_at is not None else 0.0
            self._backoff.record(ConnectionSpan(opened_at is not None, self._welcomed, lifetime))
        return outcome

    async def _converse(self, ws: WebSocket) -> Outcome:
        conn = ClientConnection()
        meta = self.session.meta
        hello_sent_at = time.monotonic()
        await ws.send(
            conn.hello(
                meta.session_id, meta.resume_token, self.session.wire_started_at(),
                self.config.client_name,
                transcript=self._wants_transcript, transcript_from=self._transcript_next,
                speakers=SPEAKERS_VERSION,  # who spoke rides in frame flags if accepted
                # The two lanes ride in the frames only if the welcome accepts them.
                tracks=TRACKS_VERSION if self.session.tracks else None,
                # An id chosen here for a session to create (Spool.new_session, or
                # SpoolSession.reopen_as_new): resumed if an earlier hello created it.
                # A recording left with no frame only asks whether it exists (_probing).
                create=meta.create_pending and not self._probing(),
            )
        )
        ended: Outcome | None = None
        sender: asyncio.Task[None] | None = None
        watchdog = asyncio.create_task(self._watchdog(ws, conn, hello_sent_at))
        try:
            async for message in ws:
                if isinstance(message, str):
                    events = conn.receive_text(message)
                else:
                    events = conn.receive_binary(message)
                for event in events:
                    if isinstance(event, ProtocolViolation):
                        await ws.close(event.close_code, str(event.error)[:120])
                        return Outcome(
                            "fatal", f"the server broke the protocol: {event.error}",
                            close_code=event.close_code,
                        )
                    if not isinstance(event, MessageReceived):
                        continue  # server-side events never come out of a ClientConnection
                    msg = event.message
                    if isinstance(msg, Welcome):
                        refusal = await self._on_welcome(msg)
                        if refusal is not None:
                            await ws.close(CloseCode.BAD_MESSAGE, refusal.reason[:120])
                            return refusal
                        cursor = msg.acked + 1 + self.session.seq_offset  # a local number
                        sender = asyncio.create_task(self._send_guarded(ws, conn, cursor))
                    elif isinstance(msg, Ack):
                        self._on_ack(msg.seq + self.session.seq_offset)
                    elif isinstance(msg, Ended):
                        ended = await self._on_ended(msg)
                        if not self._wants_transcript:
                            return ended
                        # The session's last finals follow `ended`; the server closes
                        # (1000) once they are out. The audio is done either way.
                        self.outcome = ended
                        self._tail = True
                    elif isinstance(msg, Transcript):
                        self._on_segment(msg)
                    elif isinstance(msg, TranscriptStatus):
                        self._on_transcript_status(msg)
                    elif isinstance(msg, Error):
                        self._error = msg  # the close that follows carries its code
                        if msg.code == "rate_limited" and msg.retry_after_ms is not None:
                            self._refused_at = (time.monotonic(), msg.retry_after_ms)
                    elif isinstance(msg, GoingAway):
                        self._going_away = msg
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            await ws.close(CloseCode.GOING_AWAY, "client stopped")
            raise
        finally:
            self._tail = False
            for task in (sender, watchdog):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (sender, watchdog) if t), return_exceptions=True)
        if ended is not None:
            return ended
        # The sender's own failure, kept before it closed the socket: the 1011 it sent
        # is not the server's internal error, and the sender may be cancelled above
        # before its exception is read.
        failure = self._sender_failure
        if failure is None and sender is not None and not sender.cancelled():
            failure = sender.exception()
        if failure is not None:
            if isinstance(failure, StorageError):
                return Outcome("fatal", str(failure))
            if not isinstance(failure, ConnectionClosed):
                raise failure
        if self._stall_reason is not None:
            return Outcome("retry", self._stall_reason)
        code = ws.close_code
        if code == CloseCode.UNKNOWN_SESSION and self._probing():
            # No earlier hello created it: nothing on the server, nothing captured.
            log.info("session %s: nothing was captured and the server never created it",
                     self._label())
            await asyncio.to_thread(self.session.mark_ended)
            return Outcome("finished", NOTHING_TO_DELIVER, close_code=code)
        if code == CloseCode.UNKNOWN_SESSION and self.session.meta.create_pending:
            # Only a server that predates hello.create answers it with 4005 (a newer one
            # creates the session): ask it for a new session the old way.
            log.info("session %s: the server does not know hello.create; asking for a new "
                     "session without it", self._label())
            await asyncio.to_thread(self.session.forget_chosen_id)
            self._backoff.reset()
            return Outcome("retry", "the server gives the new session its id", close_code=code)
        if code in (CloseCode.UNKNOWN_SESSION, CloseCode.BAD_RESUME_TOKEN) and (
            self.session.meta.session_id is not None
        ):
            reopened = await self._reopen_as_new(code)
            if reopened is not None:
                return reopened
        if code == CloseCode.SESSION_ENDED and self._input_closed:
            # The server finalised the session but the ended answer was lost with the old
            # connection: every frame up to our end is stored.
            self.session.mark_ended()
            return Outcome("finished", "the server had already ended the session", close_code=code)
        return from_close(
            code, error=self._error, going_away=self._going_away,
            session_id=self.session.meta.session_id,
        )

    async def _reopen_as_new(self, code: int) -> Outcome | None:
        """The server lost the session (4005) or holds it under an older token than ours
        (4006: its state restored from an old snapshot): what it acknowledged is all it
        has, and resuming can never work again. The frames not acknowledged go out as a
        new session (never stranded in the spool), and the user is told once, in words.
        None (the refusal stands) when a session re-opened on this run is refused again
        before the server acknowledged anything of it: no loop of new sessions."""
        session = self.session
        if self._reopened_at_ack is not None and session.acked <= self._reopened_at_ack:
            return None
        old = session.meta.session_id
        offset = await asyncio.to_thread(session.reopen_as_new, self._held_to(code))
        self._reopened_at_ack = session.acked
        what = "no longer knows" if code == CloseCode.UNKNOWN_SESSION else (
            "refused the resume token of"
        )
        reason = (
            f"the server {what} session {old} (code {code}: it lost that session's state); "
            f"the audio it had not acknowledged, from {format_offset(offset)} on, is sent "
            "as a new session"
        )
        log.warning("session %s: %s", old, reason)
        self._backoff.reset()  # a new session: no reason to wait
        return Outcome("retry", reason, close_code=code)

    def _probing(self) -> bool:
        """A recording an earlier run left with no frame before any welcome confirmed its
        session (killed right after its first hello, maybe): its hello resumes without
        ``create``, so a session that hello created is ended (no empty session left
        open on the server) and none is created for nothing (4005: the folder goes)."""
        meta = self.session.meta
        return not self.live and meta.create_pending and self.session.last_seq < 0

    def _held_to(self, code: int) -> int | None:
        """The last local frame the refused session holds, when the server said so (a
        4006's error.held): the new session starts after it, so no frame is in both.
        None when it did not say, or said what cannot be (then after the last ack)."""
        error, session = self._error, self.session
        if code != CloseCode.BAD_RESUME_TOKEN or error is None or error.held is None:
            return None
        held_to = session.seq_offset + error.held - 1
        if held_to > session.last_seq:
            log.warning("session %s: the server says it holds %d frames, but only %d were "
                        "sent to it; starting the new session after the last ack",
                        self._label(), error.held, session.last_seq + 1 - session.seq_offset)
            return None
        if held_to < session.acked:
            log.warning("session %s: the server holds %d frames, fewer than it acknowledged "
                        "(%d)", self._label(), error.held,
                        session.acked + 1 - session.seq_offset)
            return None
        return held_to

    async def _on_welcome(self, welcome: Welcome) -> Outcome | None:
        meta = self.session.meta
        if meta.create_pending and welcome.session_id != meta.session_id and welcome.acked == -1:
            # A server that ignores hello.create and takes a hello it cannot resume as a
            # new session (none of meetcap's do: they answer 4005) gave it its own id: a
            # new, empty session all the same; its id is stored below, before any frame.
            log.info("session %s: the server named the new session %s", meta.session_id,
                     welcome.session_id)
        elif meta.session_id is not None and welcome.session_id != meta.session_id:
            return Outcome(
                "fatal",
                f"the server broke the protocol: asked to resume session {meta.session_id}, "
                f"it welcomed {welcome.session_id}",
            )
        acked = welcome.acked + self.session.seq_offset  # local frame numbers from here
        if acked > self.session.last_seq:
            return Outcome(
                "fatal",
                f"the server broke the protocol: it says it stored frame {welcome.acked}, but "
                f"only frames up to {self.session.last_seq - self.session.seq_offset} were "
                "captured",
            )
        if acked < self.session.first_seq - 1:
            return Outcome(
                "fatal",
                f"the server lost audio it had acknowledged: it holds frames up to "
                f"{welcome.acked}, but frames up to {self.session.first_seq - 1} were acked "
                "and deleted from the spool",
            )
        # The protocol requires the fresh token to be durable before any frame goes out:
        # if we crash now, the next run resumes with it (or the previous one, which the
        # server still accepts until the new one is used).
        await asyncio.to_thread(self.session.set_session, welcome.session_id, welcome.resume_token)
        self.session.ack(acked)
        if self._refused_at is not None:
            # The refused frame was the first one not stored: welcome.acked + 1.
            refused_t, excess_ms = self._refused_at
            self._refused_at = None
            allowed_ms = (welcome.acked + 2) * FRAME_MS - excess_ms
            self._audio_limit = (refused_t, allowed_ms)
            log.info(
                "session %s: audio captured while offline is ahead of the server's clock; "
                "sending it at real-time pace", welcome.session_id,
            )
        if self.session.tracks:
            stored = bool(welcome.tracks)
            if not stored and self._tracks_stored is not False:
                log.info(  # the user is told by the recorder (on_problem), once
                    "session %s: this server does not store two tracks; it gets the mono "
                    "mix only (a local copy keeps both)", welcome.session_id,
                )
            with self._lock:
                self._tracks_stored = stored
        self._welcomed = True
        now = time.monotonic()
        self._last_progress = now
        with self._lock:
            if self._ever_welcomed:
                self._reconnects += 1
            self._ever_welcomed = True
        self._set_state("connected", None)
        log.info(
            "session %s: connected (epoch %d), server holds frames up to %d, spool up to %d",
            welcome.session_id, welcome.epoch, welcome.acked, self.session.last_seq,
        )
        return None

    def _on_transcript_status(self, msg: TranscriptStatus) -> None:
        """The lag, and the server's sentence when it gave the transcript up: a change
        listeners hear of (no more finals will come), once per session."""
        with self._lock:
            self._transcript_lag_s = msg.lag_s
            newly_failed = msg.failed is not None and self._transcript_failed is None
            if newly_failed:
                self._transcript_failed = msg.failed
        if newly_failed:
            log.info(  # the user is told by the recorder (on_problem), once
                "session %s: the server stopped transcribing it: %s", self._label(), msg.failed)
            if self._on_change is not None:
                self._on_change()

    def _on_segment(self, msg: Transcript) -> None:
        """A transcript segment: finals handed up exactly once (by id), partials of the
        utterance not yet final as they come."""
        if msg.final:
            if msg.id < self._transcript_next:
                return  # seen before (a replay the server could not know we had)
            if msg.id > self._transcript_next:
                log.warning("session %s: transcript segments %d-%d never arrived",
                            self._label(), self._transcript_next, msg.id - 1)
            self._transcript_next = msg.id + 1
        elif msg.id < self._transcript_next:
            return  # a partial of an utterance whose final we have
        if self._on_transcript is None:
            return
        segment = TranscriptSegment(
            id=msg.id, start_s=msg.start, end_s=msg.end, text=msg.text, final=msg.final,
            speaker=msg.speaker, minor=msg.minor,
        )
        try:
            self._on_transcript(segment)
        except Exception:
            log.exception("the transcript callback failed")

    def _on_ack(self, seq: int) -> None:
        now = time.monotonic()
        if seq > self.session.acked:
            self.session.ack(seq)
            self._last_progress = now
        sent_at = None
        while self._sent_at and self._sent_at[0][0] <= seq:
            sent_at = self._sent_at.popleft()[1]
        if sent_at is not None:
            rtt_ms = (now - sent_at) * 1000
            with self._lock:
                self._rtt_ms = rtt_ms
                avg = self._rtt_avg_ms
                self._rtt_avg_ms = rtt_ms if avg is None else avg + _RTT_SMOOTHING * (rtt_ms - avg)

    async def _on_ended(self, ended: Ended) -> Outcome:
        expected = self.session.last_seq + 1 - self.session.seq_offset
        if ended.frames != expected:
            log.error(
                "session %s: the server ended with %d frames, %d were captured",
                ended.session_id, ended.frames, expected,
            )
        await asyncio.to_thread(self.session.mark_ended)
        return Outcome("finished", "the server stored every frame", ended=ended)

    async def _send_guarded(self, ws: WebSocket, conn: ClientConnection, cursor: int) -> None:
        try:
            await self._send_loop(ws, conn, cursor)
        except (ConnectionClosed, asyncio.CancelledError):
            raise
        except BaseException as exc:
            self._sender_failure = exc  # read by _converse: the close below is ours
            # The receiver waits on the socket: closing it is how it learns we failed.
            await ws.close(CloseCode.INTERNAL_ERROR, "client failure")
            raise

    async def _send_loop(self, ws: WebSocket, conn: ClientConnection, cursor: int) -> None:
        """Send frames from ``cursor`` on as they appear in the spool; then ``end``."""
        session = self.session
        while conn.state is ClientState.STREAMING:
            # Clear before looking: a wake() after the look is then never lost.
            self._wake.clear()
            if cursor <= session.last_seq:
                # Checked frames: one damaged or missing on disk comes as silence at its
                # own number, noted in the spool (see meetcap/client/spool.py).
                for message in session.read_frames(cursor, _READ_BATCH):
                    if conn.state is not ClientState.STREAMING:
                        return  # the server said goodbye; the receiver handles the close
                    wait_s = self._flood_wait_s(message.seq - session.seq_offset)
                    if wait_s > 0:
                        await asyncio.sleep(wait_s)
                        if conn.state is not ClientState.STREAMING:
                            return
                    now = time.monotonic()
                    if conn.highest_sent <= conn.acked:
                        self._outstanding_since = now  # the ack clock starts now
                    # The lanes go out only if this connection's welcome accepted them.
                    data = conn.frame(message.seq - session.seq_offset, message.pcm,
                                      message.speech, message.speaker, message.tracks)
                    self._sent_at.append((message.seq, now))
                    await ws.send(data)
                    cursor += 1
                    with self._lock:
                        self._frames_sent += 1
                continue
            if self._input_closed:
                if conn.highest_sent <= conn.acked:
                    self._outstanding_since = time.monotonic()
                self._end_sent = True
                await ws.send(conn.end(session.last_seq - session.seq_offset))
                return
            await self._wake.wait()

    def _flood_wait_s(self, seq: int) -> float:
        """How long frame ``seq`` must wait so the server's flood rule accepts it.

        The server refuses audio that runs ahead of its clock for the session (4009). A
        live client never does, but audio captured while the server was unreachable,
        longer than the server's offline grace, stays ahead for the whole meeting:
        without pacing, every frame of it would cost a refusal and a reconnect.
        """
        if self._audio_limit is None:
            return 0.0
        learnt_at, allowed_ms = self._audio_limit
        allowed_ms += (time.monotonic() - learnt_at) * 1000 - _FLOOD_MARGIN_MS
        return max(0.0, ((seq + 1) * FRAME_MS - allowed_ms) / 1000)

    async def _watchdog(self, ws: WebSocket, conn: ClientConnection, hello_sent_at: float) -> None:
        """Drop a connection that stopped answering, so the link reconnects.

        Pings alone miss a path that delivers pings but not data (a stalled proxy), and
        TCP can take minutes to notice a dead peer while the send buffer fills.
        """
        cfg = self.config
        period = min(0.5, cfg.ack_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            if self._tail:
                continue  # after `ended`: nothing is outstanding, the server closes
            if not self._welcomed:
                if now - hello_sent_at > cfg.open_timeout_s:
                    limit = f"{cfg.open_timeout_s:g} s"
                    self._stall(ws, f"the server did not answer hello within {limit}")
                    return
                continue
            waiting = conn.highest_sent > conn.acked or self._end_sent
            quiet_s = now - max(self._last_progress, self._outstanding_since)
            if waiting and quiet_s > cfg.ack_timeout_s:
                what = "ended" if conn.highest_sent <= conn.acked else "ack"
                self._stall(ws, f"no {what} from the server for {cfg.ack_timeout_s:g} s")
                return

    def _stall(self, ws: WebSocket, reason: str) -> None:
        self._stall_reason = reason
        # Abort, not close: a closing handshake cannot get through a stalled path.
        ws.transport.abort()
