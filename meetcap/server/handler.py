"""One WebSocket connection, from hello to close: the asyncio driver of ServerConnection.

The sans-I/O :class:`~meetcap.protocol.ServerConnection` decides what each message
means; this module acts on it: attach the session (state store + storage), check the
flood rule, hand frames to the storage, pace catch-up reads, send acks after each
durable write round, finish the session on ``end``, and refuse with the documented
close code whatever breaks the rules. A failure here closes this connection only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection as WebSocket
from websockets.exceptions import ConnectionClosed

from meetcap.constants import FRAME_MS
from meetcap.errors import StorageError
from meetcap.protocol import (
    AudioMessage,
    CloseCode,
    DuplicateReceived,
    Ended,
    EndReceived,
    FrameReceived,
    Hello,
    HelloReceived,
    ProtocolViolation,
    ServerConnection,
    Welcome,
)
from meetcap.protocol.audio import SPEAKERS_VERSION, TRACKS_VERSION
from meetcap.protocol.codes import ERROR_NAMES
from meetcap.protocol.connection import Event
from meetcap.server.msgsize import too_big
from meetcap.server.ratelimit import AudioClock, Pacer
from meetcap.server.refusals import ANSWERED, Answer, answer_for
from meetcap.server.sidecar import SessionMeta, read_sidecar
from meetcap.server.sink import SessionSummary, call_sink
from meetcap.server.state import (
    LostRecord,
    Refusal,
    SessionRecord,
    StateUnavailable,
    hash_token,
    new_session_id,
    new_token,
)
from meetcap.server.state.base import refusal_for
from meetcap.server.storage import SessionWriter

if TYPE_CHECKING:
    from meetcap.server.app import MeetcapServer
    from meetcap.server.transcription.feed import TranscriptFeed

log = logging.getLogger(__name__)

_CLOSE_REASON_BYTES = 120  # RFC 6455 5.5: a close frame's payload is at most 125 bytes


class ConnectionHandler:
    """Serves one connection of ``user`` (already authenticated at the handshake).

    The server calls :meth:`run` once; :meth:`take_over` and :meth:`go_away` may be
    called from other tasks (a newer connection resuming the session, a shutdown).
    """

    def __init__(self, server: MeetcapServer, ws: WebSocket, user: str) -> None:
        self.server = server
        self.config = server.config
        self.ws = ws
        self.user = user
        self.conn = ServerConnection()
        self.record: SessionRecord | None = None
        self.writer: SessionWriter | None = None
        self.clock: AudioClock | None = None
        self.pacer = Pacer(self.config.catchup_x)
        self.last_receive_s = time.monotonic()  # read by the server's keepalive watch
        self.ping_waiter: asyncio.Future[float] | None = None
        self.ping_sent_s = 0.0
        self._closing = False  # a close is under way: act on no more input
        self._taken_over = False
        self._ended = False
        self._acked_sent = -1
        self._token = ""  # the resume token the welcome carries
        self._proved_hash = ""  # hash of the token this connection resumed with
        self._held: int | None = None  # frames the session holds, told with a 4006
        self._slot_released = False
        self._end_task: asyncio.Task[None] | None = None
        self._ended_sent = False  # `ended` went out: what arrives now crossed it
        self._refused_after_end = False
        self._refusal = Answer(CloseCode.INTERNAL_ERROR, "")
        self.transcript: TranscriptFeed | None = None  # when the server transcribes
        self.tracks = False  # this connection's welcome accepted the tracks extension

    @property
    def session_id(self) -> str | None:
        return self.record.session_id if self.record is not None else None

    @property
    def epoch(self) -> int:
        return self.record.epoch if self.record is not None else -1

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        acker: asyncio.Task[None] | None = None
        try:
            if await self._attach():
                acker = asyncio.create_task(self._ack_loop())
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            if self._end_task is not None:  # a finalise is never cut short
                await asyncio.gather(self._end_task, return_exceptions=True)
            if acker is not None:
                acker.cancel()
                await asyncio.gather(acker, return_exceptions=True)
            await self._detach()

    async def _read_loop(self) -> None:
        ws, conn, pacer = self.ws, self.conn, self.pacer
        writer = self.writer
        assert writer is not None
        max_pending = self.config.max_pending_frames
        while True:
            message = await ws.recv()
            self.last_receive_s = time.monotonic()
            if self._closing:
                ending = self._end_task is not None and not self._end_task.done()
                if ending and not self._ended_sent and not self._taken_over:
                    await self._refuse_after_end(message)
                continue  # the close under way will end recv() soon
            if too_big(message):
                await self._close_too_big()
                return
            if isinstance(message, bytes):
                events = conn.receive_binary(message)
            else:
                events = conn.receive_text(message)
            for event in events:
                # The hot path (a frame every 100 ms per session) stays in this loop:
                # a coroutine call per layer costs more than the work it would wrap.
                if type(event) is FrameReceived:
                    if not self._store_frame(event.frame):
                        await self._refuse(*self._refusal)
                        return
                    delay_s = pacer.delay_s()
                    if delay_s > 0:
                        await asyncio.sleep(delay_s)
                    if writer.unstored_frames >= max_pending and not self._closing:
                        await self._wait_for_disk()
                else:
                    await self._on_event(event)
                if self._closing:
                    break

    def _store_frame(self, frame: AudioMessage) -> bool:
        """Flood check, then hand the frame to storage; False (and ``_refusal`` set) when
        the connection must be refused."""
        writer, clock = self.writer, self.clock
        assert writer is not None and clock is not None
        excess_ms = clock.excess_ms(frame.seq)
        if excess_ms > 0:
            self._refusal = Answer(
                CloseCode.RATE_LIMITED,
                f"frame {frame.seq} ends {excess_ms} ms ahead of real time (audio may not run "
                f"ahead of the wall clock by more than {self.config.realtime_slack_s:g} s)",
                excess_ms,
            )
            return False
        try:
            # speech, and who spoke if negotiated; the two lanes with the tracks extension
            writer.append(frame.pcm, frame.flags, frame.tracks)
        except ANSWERED as exc:  # the storage failed, or the session is full
            self._refusal = answer_for(exc)
            return False
        return True

    async def _wait_for_disk(self) -> None:
        """The disk is behind: stop reading (TCP backpressure) until it catches up."""
        writer = self.writer
        assert writer is not None
        try:
            await writer.wait_durable(writer.received_frames - self.config.max_pending_frames // 2)
        except StorageError:
            pass  # the ack loop reports it

    async def _on_event(self, event: Event) -> None:
        if isinstance(event, DuplicateReceived):
            # Already stored (a replay after a reconnect): drop it, repeat the ack now.
            await self._pace()
            assert self.writer is not None
            await self._send_ack(self.writer.durable_frames - 1, force=True)
        elif isinstance(event, EndReceived):
            # Ending takes a write round and a hash: read on meanwhile, so that anything
            # sent after end is refused (4000) as the spec says, instead of ignored.
            self._closing = True
            self._end_task = asyncio.create_task(self._end())
        elif isinstance(event, ProtocolViolation):
            await self._close_with(event.error_text, event.close_code, str(event.error))
        else:  # HelloReceived after the attach cannot happen: ServerConnection refuses it
            raise AssertionError(f"unexpected event {event!r}")

    async def _pace(self) -> None:
        delay_s = self.pacer.delay_s()
        if delay_s > 0:
            await asyncio.sleep(delay_s)

    # ------------------------------------------------------------------ attach

    async def _attach(self) -> bool:
        """Wait for hello, attach the session, send welcome. False if refused."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), self.config.hello_timeout_s)
        except asyncio.TimeoutError:
            await self._refuse(
                CloseCode.HELLO_REQUIRED,
                f"no hello within {self.config.hello_timeout_s:g} s of connecting",
            )
            return False
        self.last_receive_s = time.monotonic()
        if self._closing:  # a shutdown's go_away answered this connection meanwhile
            return False
        if too_big(message):
            await self._close_too_big()
            return False
        if isinstance(message, bytes):
            events = self.conn.receive_binary(message)
        else:
            events = self.conn.receive_text(message)
        event = events[0]
        if isinstance(event, ProtocolViolation):
            await self._close_with(event.error_text, event.close_code, str(event.error))
            return False
        assert isinstance(event, HelloReceived)
        if self.server.closing:
            await self.go_away()
            return False
        try:
            await self._attach_session(event.hello)
        except ANSWERED as exc:
            await self._refuse(*answer_for(exc), held=self._held)
            return False
        assert self.writer is not None and self.record is not None
        if self._closing:  # the shutdown began during the attach: go_away was sent
            return False  # (run() detaches: the slot and the files are let go)
        acked = self.writer.durable_frames - 1
        self._acked_sent = acked
        text = self.conn.accept(
            Welcome(
                self.record.session_id, self._token, acked=acked, epoch=self.record.epoch,
                # The speakers extension: accepted whenever offered (docs/protocol.md 3.1).
                speakers=SPEAKERS_VERSION if event.hello.speakers else None,
                # The tracks extension (3.5): unless the operator switched it off.
                tracks=TRACKS_VERSION if self.tracks else None,
            )
        )
        await self.ws.send(text)
        if self.server.transcription is not None:
            self.transcript = self.server.transcription.attach(self, event.hello)
        log.info(
            "session %s of %s attached (epoch %d, %d frames stored)",
            self.record.session_id, self.user, self.record.epoch, acked + 1,
        )
        return True

    async def _attach_session(self, hello: Hello) -> None:
        server, store = self.server, self.server.store
        self.tracks = bool(hello.tracks) and self.config.accept_tracks
        self._token = new_token()
        now_s = time.time()
        create = hello.session_id is None
        session_id = new_session_id() if create else hello.session_id
        assert session_id is not None
        async with server.attach_lock(session_id):
            if create:
                record = await store.create(
                    self.user, session_id, hash_token(self._token), hello.started_at, now_s
                )
            else:
                assert hello.resume_token is not None
                self._proved_hash = hash_token(hello.resume_token)
                try:
                    record = await store.resume(
                        self.user, session_id, self._proved_hash, hash_token(self._token), now_s,
                    )
                except Refusal as refusal:
                    if refusal.code == CloseCode.BAD_RESUME_TOKEN:
                        # The owner's token is stale (say the store went back to an old
                        # snapshot): tell it where the stored audio ends, so its new
                        # session starts there (docs/protocol.md 4, "A stale token").
                        self._held = await server.storage.held_frames(
                            session_id, wait_s=1.0  # a just-closed connection's store
                        )
                    if refusal.code != CloseCode.UNKNOWN_SESSION:
                        raise
                    try:
                        record = await self._recover(session_id, refusal, now_s)
                    except Refusal as lost:
                        if not (hello.create and lost.code == CloseCode.UNKNOWN_SESSION):
                            raise
                        # The id and token are the client's own (hello.create): a new
                        # session under them. A retry after a lost welcome resumes it.
                        create, self._token = True, hello.resume_token
                        record = await store.create(
                            self.user, session_id, hash_token(self._token),
                            hello.started_at, now_s,
                        )
                previous = server.attachments.get(session_id)
                if previous is not None:
                    await previous.take_over()
            meta = SessionMeta(self.user, session_id, record.created_at_s, record.started_at_s)

            async def superseded() -> bool:
                epochs = await store.current_epochs([session_id])
                # None: the store lost the record (see _recover); that is no newer resume.
                return epochs.get(session_id) not in (record.epoch, None)

            try:
                self.writer = await server.storage.open(
                    meta, record.epoch, create=create, wait_s=self.config.takeover_wait_s,
                    superseded=superseded, tracks=self.tracks,
                )
            except BaseException:
                await store.release(self.user, session_id, record.epoch)
                raise
            self.record = record
            server.attachments[session_id] = self
        self.clock = AudioClock.for_session(
            record.created_at_s, record.started_at_s, self.config.offline_grace_s,
            self.config.realtime_slack_s,
        )

    async def _recover(self, session_id: str, refusal: Refusal, now_s: float) -> SessionRecord:
        """The store does not know the session. If this server holds its files, the store
        lost it (Redis restarted without persistence, flushed, or evicted the key): the
        sidecar names its owner and whether it ended, the WAV holds its frames, so the
        session is written back and resumed. The resume token cannot be checked any more;
        the sidecar's user must be the authenticated one. Else ``refusal`` (4005) stands."""
        paths = self.server.storage.paths(session_id)
        stored = await asyncio.to_thread(read_sidecar, paths.sidecar)
        if stored is None or not await asyncio.to_thread(paths.wav.exists):
            raise refusal
        if stored.meta.user != self.user:
            raise refusal_for("forbidden", session_id)
        if stored.finished:
            raise refusal_for("session_ended", session_id)
        log.warning(
            "session %s of %s: the state store had lost it (Redis restarted without "
            "persistence, flushed, or evicted its key: see docs/server.md); recovered from "
            "its files", session_id, self.user,
        )
        lost = LostRecord(
            self._proved_hash, hash_token(self._token), stored.meta.created_at_s,
            stored.meta.started_at_s,
        )
        return await self.server.store.recover(self.user, session_id, lost, now_s)

    def lost_record(self) -> LostRecord:
        """What the store needs to write this attached session's record again."""
        assert self.record is not None
        return LostRecord(
            self._proved_hash, hash_token(self._token), self.record.created_at_s,
            self.record.started_at_s,
        )

    async def _record_lost(self) -> bool:
        assert self.record is not None
        current = await self.server.store.current_epochs([self.record.session_id])
        return current.get(self.record.session_id) is None

    async def reinstate_if_lost(self) -> bool:
        """The store has no record of this attached session: write it back. True when
        this connection still owns the session afterwards."""
        record = self.record
        assert record is not None
        epoch = await self.server.store.reinstate(record, self.lost_record(), time.time())
        if epoch == record.epoch:
            log.warning(
                "session %s of %s: the state store had lost it (Redis restarted without "
                "persistence, flushed, or evicted its key: see docs/server.md); written back",
                record.session_id, self.user,
            )
            return True
        return False

    # ------------------------------------------------------------------ acks

    async def _ack_loop(self) -> None:
        """Ack after every write round that advanced this session (the flusher's pace)."""
        writer, ws, conn = self.writer, self.ws, self.conn
        assert writer is not None
        while not self._closing:
            event = writer.changed()
            if writer.failed is not None:
                await self._refuse(*answer_for(writer.failed))
                return
            seq = writer.durable_frames - 1
            if seq > self._acked_sent:
                self._acked_sent = seq
                try:
                    await ws.send(conn.ack(seq))
                except ConnectionClosed:
                    return
            await event.wait()

    async def _send_ack(self, seq: int, force: bool = False) -> None:
        if seq < 0 or (seq <= self._acked_sent and not force):
            return
        self._acked_sent = max(self._acked_sent, seq)
        try:
            await self.ws.send(self.conn.ack(seq))
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ end

    async def _end(self) -> None:
        writer, record = self.writer, self.record
        assert writer is not None and record is not None
        self._closing = True
        try:
            await writer.wait_durable(writer.received_frames)
            done = await asyncio.to_thread(writer.finalise_sync)
        except ANSWERED as exc:
            if not self._taken_over:  # else take_over() already said so
                code, message, retry_after_ms = answer_for(exc)
                await self._refuse(code, f"cannot finish the session: {message}", retry_after_ms)
            return
        try:
            marked = await self.server.store.mark_ended(record.session_id, record.epoch)
            if not marked and await self._record_lost() and await self.reinstate_if_lost():
                # The store had lost the record (no newer resume): written back, end it.
                marked = await self.server.store.mark_ended(record.session_id, record.epoch)
        except ANSWERED as exc:  # the state could not be written: the client retries the end
            code, message, retry_after_ms = answer_for(exc)
            await self._refuse(code, f"cannot finish the session: {message}", retry_after_ms)
            return
        if not marked:
            await self._refuse(CloseCode.TAKEN_OVER, "a newer connection resumed this session")
            return
        self._ended = True
        await self._release_slot()  # before ended: the client may start another at once
        await asyncio.to_thread(self.server.storage.remove_speech_file, record.session_id)
        duration_ms = done.frames * FRAME_MS
        call_sink(
            self.server.sink, "session_ended",
            SessionSummary(
                self.user, record.session_id, done.frames, duration_ms, done.sha256,
                str(done.wav_path), str(done.sidecar_path),
            ),
        )
        await self._send_ack(done.frames - 1)
        if self._refused_after_end:  # answered 4000; a resume learns it ended (4012)
            return
        self._ended_sent = True
        try:
            await self.ws.send(
                self.conn.ended(Ended(record.session_id, done.frames, duration_ms, done.sha256))
            )
            if self.transcript is not None:  # the last finals come after the end
                transcription = self.config.transcription
                assert transcription is not None  # a feed only on a transcribing server
                await self.transcript.finish(transcription.tail_timeout_s)
            await self.ws.close(CloseCode.NORMAL, "session ended")
        except ConnectionClosed:
            pass

    # ------------------------------------------------------------------ closing

    async def take_over(self) -> None:
        """A newer epoch holds the session now: stop writing at once (pending frames are
        dropped, they were never acknowledged), then close this connection with 4008."""
        if self._taken_over:
            return
        self._taken_over = True
        self._closing = True
        if self.writer is not None:
            await self.writer.close(flush=False)
        # The old client may be slow or gone: do not make the new attach wait for it.
        asyncio.create_task(
            self._refuse(CloseCode.TAKEN_OVER, "a newer connection resumed this session")
        )

    async def go_away(self) -> None:
        """Graceful shutdown: store what was received, ack it, send going_away, close 1012."""
        if self._closing:
            return
        self._closing = True
        writer = self.writer
        if writer is not None and writer.failed is None:
            try:
                await writer.wait_durable(writer.received_frames)
                await self._send_ack(writer.durable_frames - 1)
            except StorageError:
                pass
        retry_after_ms = random.randint(0, self.config.going_away_max_ms)
        try:
            await self.ws.send(self.conn.going_away(retry_after_ms))
            await self.ws.close(CloseCode.SERVICE_RESTART, "server restart")
        except ConnectionClosed:
            pass

    async def _refuse(
        self, code: CloseCode, message: str, retry_after_ms: int | None = None,
        held: int | None = None,
    ) -> None:
        extra = {} if retry_after_ms is None else {"retry_after_ms": max(0, int(retry_after_ms))}
        if held is not None:
            extra["held"] = held
        violation = self.conn.refuse(code, message, **extra)
        await self._close_with(violation.error_text, int(code), message)

    async def _close_with(self, error_text: str, code: int, message: str) -> None:
        """Send the JSON error, then close with ``code`` (docs/protocol.md, "Errors")."""
        self._closing = True
        name = ERROR_NAMES.get(code, str(code))  # type: ignore[call-overload]
        log.info(
            "session %s of %s: closing with %s (%d): %s",
            self.session_id or "(none)", self.user, name, code, message,
        )
        try:
            await self.ws.send(error_text)
            reason = message.encode()[:_CLOSE_REASON_BYTES].decode(errors="ignore")
            await self.ws.close(code, reason)
        except ConnectionClosed:
            pass

    async def _close_too_big(self) -> None:
        """1009 without a JSON error, as the WebSocket layer closes beyond its max_size
        (docs/protocol.md 2: only a tracks audio message may exceed 3,216 bytes)."""
        self._closing = True
        log.info("session %s of %s: closing with 1009: message too big",
                 self.session_id or "(none)", self.user)
        try:
            await self.ws.close(CloseCode.MESSAGE_TOO_BIG, "message too big")
        except ConnectionClosed:
            pass

    async def _refuse_after_end(self, message: str | bytes) -> None:
        """A message after `end` (and before `ended`): bad_message (4000). The end goes on
        (the audio is stored either way); only the `ended` answer is not sent."""
        if self._refused_after_end:
            return
        if isinstance(message, bytes):
            events = self.conn.receive_binary(message)
        else:
            events = self.conn.receive_text(message)
        for event in events:
            if isinstance(event, ProtocolViolation):
                self._refused_after_end = True
                await self._close_with(event.error_text, event.close_code, str(event.error))
                return

    async def _release_slot(self) -> None:
        """Free this user's connected-session slot (once; a newer epoch keeps its own)."""
        record = self.record
        if record is None or self._slot_released:
            return
        self._slot_released = True
        try:
            await self.server.store.release(self.user, record.session_id, record.epoch)
        except StateUnavailable as exc:  # Redis down: its lease expires by itself
            log.warning("session %s: cannot release its slot: %s", record.session_id, exc)
        except Exception:
            log.exception("session %s: cannot release its slot", record.session_id)

    async def _detach(self) -> None:
        """The connection is over: free the slot, let go of the files, unregister."""
        self._closing = True
        record, writer = self.record, self.writer
        if self.transcript is not None and self.server.transcription is not None:
            self.server.transcription.detach(self.transcript)
        if record is None:
            return
        # The slot first: a client that reconnects at once must not meet its own ghost.
        await self._release_slot()
        if writer is not None:
            # A plain disconnect: store what arrived, so the resume has less to replay.
            # Still registered meanwhile, so a resume's takeover waits for this close.
            await writer.close(flush=not self._taken_over)
        if self.server.attachments.get(record.session_id) is self:
            del self.server.attachments[record.session_id]
        log.info("session %s of %s detached", record.session_id, self.user)
