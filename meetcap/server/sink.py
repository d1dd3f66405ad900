"""Where stored audio goes next (transcription plugs in here).

The server calls a :class:`Sink` only after audio is durably stored: once per stored
batch of frames (in sequence order, each frame exactly once per server process, even
across reconnects) and once when a session ends. Calls happen on the server's event
loop thread: a sink must return quickly and hand heavy work (a speech API call) to its
own thread or task. An exception in a sink is logged and never affects storage or acks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class StoredBatch:
    """Frames ``first_seq`` .. ``first_seq + len(speech) - 1`` of one session, now durable.

    ``pcm`` is their audio, 3,200 bytes a frame, int16 little-endian 16 kHz mono;
    ``speech`` holds each frame's speech flag.
    """

    user: str
    session_id: str
    first_seq: int
    pcm: bytes
    speech: tuple[bool, ...]

    @property
    def frames(self) -> int:
        return len(self.speech)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """A finished session: its files, length and the SHA-256 of its PCM."""

    user: str
    session_id: str
    frames: int
    duration_ms: int
    sha256: str
    wav_path: str
    sidecar_path: str


@runtime_checkable
class Sink(Protocol):
    """Receives stored audio. Both methods must return quickly (see module doc)."""

    def frames_stored(self, batch: StoredBatch) -> None: ...

    def session_ended(self, summary: SessionSummary) -> None: ...


class LoggingSink:
    """The default sink: logs each finished session; batches only at debug level."""

    def frames_stored(self, batch: StoredBatch) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "session %s: frames %d-%d stored",
                batch.session_id, batch.first_seq, batch.first_seq + batch.frames - 1,
            )

    def session_ended(self, summary: SessionSummary) -> None:
        log.info(
            "session %s of %s ended: %d frames (%.1f s), sha256 %s, %s",
            summary.session_id, summary.user, summary.frames, summary.duration_ms / 1000,
            summary.sha256, summary.wav_path,
        )


class TeeSink:
    """Hands every call to several sinks in turn (transcription beside the configured one)."""

    def __init__(self, *sinks: Sink) -> None:
        self.sinks = sinks

    def frames_stored(self, batch: StoredBatch) -> None:
        for sink in self.sinks:
            call_sink(sink, "frames_stored", batch)

    def session_ended(self, summary: SessionSummary) -> None:
        for sink in self.sinks:
            call_sink(sink, "session_ended", summary)


def call_sink(sink: Sink, method: str, arg: object) -> None:
    """Call ``sink.<method>(arg)``; a failing sink is logged, never raised (module doc)."""
    try:
        getattr(sink, method)(arg)
    except Exception:
        log.exception("the sink %r failed in %s", sink, method)
