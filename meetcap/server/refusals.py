"""Which close code answers which error: the one table the connection handler uses
(docs/protocol.md, section 7).

A client decides from the close code alone whether to reconnect, so a code must say
what the error means for *the client*: a session another instance still holds is worth
retrying (1011), a full disk on the server too (4011, the operator can free space while
the client keeps its spool), a session taken over by a newer connection is not (4008).
"""

from __future__ import annotations

from typing import NamedTuple

from meetcap.errors import StorageError
from meetcap.protocol import CloseCode
from meetcap.server.state import Refusal, StateUnavailable
from meetcap.server.storage import (
    AudioFileMissing,
    SessionFull,
    SessionLocked,
    SessionSuperseded,
)


class Answer(NamedTuple):
    """What the client is told: the close code, the words, and how long to wait."""

    code: CloseCode
    message: str
    retry_after_ms: int | None = None


# Error type -> (close code, what the client is told; None: the error's own sentence).
# Refusal is the one error that carries its code itself (the state store picks it).
CLOSE_CODES: dict[type[Exception], tuple[CloseCode, str | None]] = {
    SessionSuperseded: (CloseCode.TAKEN_OVER, "a newer connection resumed this session"),
    SessionLocked: (
        CloseCode.INTERNAL_ERROR,
        "another server instance still holds this session's files; retry shortly",
    ),
    AudioFileMissing: (
        CloseCode.UNKNOWN_SESSION,
        "this server has no audio for the session (another data directory?)",
    ),
    SessionFull: (CloseCode.BAD_MESSAGE, None),  # retrying cannot help: a fatal code
    StorageError: (CloseCode.STORAGE_FAILED, None),
    StateUnavailable: (CloseCode.INTERNAL_ERROR, None),  # retryable: Redis comes back
}

# The errors a connection is refused with, for ``except ANSWERED as exc``.
ANSWERED: tuple[type[Exception], ...] = (Refusal, *CLOSE_CODES)


def answer_for(error: Exception) -> Answer:
    """The answer to ``error``, one of :data:`ANSWERED` (its nearest class in the table)."""
    if isinstance(error, Refusal):
        return Answer(error.code, str(error), error.retry_after_ms)
    for cls in type(error).__mro__:
        entry = CLOSE_CODES.get(cls)
        if entry is not None:
            code, message = entry
            return Answer(code, str(error) if message is None else message)
    raise TypeError(f"no close code for {type(error).__name__}: add it to CLOSE_CODES")
