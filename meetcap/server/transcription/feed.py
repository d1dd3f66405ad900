"""One connection's transcript messages (docs/protocol.md, the transcript extension).

A :class:`TranscriptFeed` is a task beside the connection's ack loop. It sends, in this
order of priority: every final segment from the id the client asked for (replayed from
the stored transcript after a reconnect, then live), the lag when it changed, and the
newest partial - only while less than :data:`PARTIAL_MAX_UNSENT` bytes wait unsent on
the socket, so partials are dropped first and never hold up a final or an ack. Every
``send()`` waits while the socket's buffer is over its write limit, so the feed never
makes the server hold more unsent data than the send limit allows (sendlimit.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection as WebSocket
from websockets.exceptions import ConnectionClosed

from meetcap.protocol.messages import MAX_TEXT_BYTES
from meetcap.transcribe.segments import TranscriptSegment

if TYPE_CHECKING:
    from meetcap.server.transcription.service import SessionTranscript

log = logging.getLogger(__name__)

PARTIAL_MAX_UNSENT = 4096  # bytes waiting on the socket beyond which partials are dropped
LAG_STEP_S = 0.5  # a lag change smaller than this is not worth a message


def transcript_text(seg: TranscriptSegment) -> str:
    """The ``transcript`` message of ``seg``; text shortened (never seen in practice: an
    utterance is at most ~20 s) so the message stays within MAX_TEXT_BYTES."""
    body: dict[str, Any] = {
        "type": "transcript", "id": seg.id, "start": round(seg.start_s, 3),
        "end": round(seg.end_s, 3), "text": seg.text, "final": seg.final,
        "speaker": seg.speaker, "minor": seg.minor,
    }
    text = json.dumps(body, separators=(",", ":"))
    while len(text) > MAX_TEXT_BYTES:
        body["text"] = body["text"][: len(body["text"]) * 3 // 4] + "..."
        text = json.dumps(body, separators=(",", ":"))
    return text


def status_text(lag_s: float, next_id: int, complete: bool, failed: str | None = None) -> str:
    body: dict = {"type": "transcript_status", "lag_s": round(lag_s, 1), "next_id": next_id,
                  "complete": complete}
    if failed:
        body["failed"] = failed[:1024]  # a sentence (service.py); bounded all the same
    return json.dumps(body, separators=(",", ":"))


class TranscriptFeed:
    """Sends ``session``'s transcript to ``ws`` from final id ``next_id`` on."""

    def __init__(
        self, ws: WebSocket, session: SessionTranscript, next_id: int, *, wanted: bool = True
    ) -> None:
        self.ws = ws
        self.session = session
        self.next_id = next_id
        self.wanted = wanted  # False: the client did not ask; nothing is sent
        self._sent_partial: TranscriptSegment | None = None
        self._sent_lag: float | None = None
        self._sent_complete = False
        self._sent_failed: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._complete = asyncio.Event()
        self.partials_dropped = 0

    def start(self) -> None:
        if not self.wanted:
            return
        self._task = asyncio.create_task(self._run(), name=f"transcript-{self.session.session_id}")

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def finish(self, timeout_s: float) -> None:
        """After the session's end: wait (at most ``timeout_s``) until every final went out."""
        if not self.wanted:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._complete.wait(), timeout_s)

    async def _run(self) -> None:
        session = self.session
        try:
            while True:
                event = session.changed()
                await self._send_finals()
                await self._send_status()
                if (session.complete or session.failed) and self.next_id >= len(session.finals):
                    # A failed transcript (files unreadable: logged) gets no more finals:
                    # do not hold the end of the session for them.
                    self._complete.set()
                    return
                await self._send_partial()
                await event.wait()
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not touch the audio connection
            log.exception("session %s: the transcript feed failed", session.session_id)

    async def _send_finals(self) -> None:
        finals = self.session.finals
        while self.next_id < len(finals):
            await self.ws.send(transcript_text(finals[self.next_id]))
            self.next_id += 1

    async def _send_status(self) -> None:
        session = self.session
        lag = session.lag_s
        complete = session.complete and self.next_id >= len(session.finals)
        if (
            self._sent_lag is None
            or abs(lag - self._sent_lag) >= LAG_STEP_S
            or (lag == 0 and self._sent_lag != 0)
            or complete != self._sent_complete
            or session.failed != self._sent_failed
        ):
            self._sent_lag, self._sent_complete = lag, complete
            self._sent_failed = session.failed
            await self.ws.send(status_text(lag, self.next_id, complete, session.failed))

    async def _send_partial(self) -> None:
        partial = self.session.partial
        if partial is None or partial is self._sent_partial or partial.id < self.next_id:
            return
        self._sent_partial = partial
        transport = self.ws.transport
        if transport is None or transport.get_write_buffer_size() > PARTIAL_MAX_UNSENT:
            self.partials_dropped += 1
            return
        # The buffer is nearly empty: this send does not wait.
        await self.ws.send(transcript_text(partial))
