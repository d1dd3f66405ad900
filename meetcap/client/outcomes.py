"""Why a connection ended, and whether reconnecting can help.

The wire protocol decides retryable versus fatal from the numeric close code or HTTP
status alone (meetcap.protocol.is_retryable / is_retryable_http). This module adds the
sentence a person reads in the app's status line: what happened and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meetcap.protocol import CloseCode, Ended, Error, GoingAway, is_retryable, is_retryable_http

OutcomeKind = Literal["retry", "fatal", "finished"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """The end of one connection: reconnect (``retry``), stop (``fatal``) or done.

    ``retry_after_s`` is a wait the server asked for (going_away, rate limits), 0 if none.
    ``ended`` is the server's ``ended`` message when the session is finished.
    ``http_status`` is the status of a refused handshake (no WebSocket was opened).
    """

    kind: OutcomeKind
    reason: str
    retry_after_s: float = 0.0
    close_code: int | None = None
    ended: Ended | None = None
    http_status: int | None = None

    @property
    def fatal(self) -> bool:
        return self.kind == "fatal"


_HTTP_FATAL_REASONS = {
    401: "the server refused the token (HTTP 401): check the token in the settings",
    403: "the server refused this client (HTTP 403: origin not allowed)",
    404: "there is no meetcap stream endpoint at {url} (HTTP 404): check the server URL",
}

_CLOSE_REASONS: dict[int, str] = {
    CloseCode.NORMAL: "the server closed the session",
    CloseCode.GOING_AWAY: "the server went away",
    CloseCode.MESSAGE_TOO_BIG: "the server refused a message as too big (a client bug)",
    CloseCode.INTERNAL_ERROR: "the server hit an internal error",
    CloseCode.SERVICE_RESTART: "the server is restarting",
    CloseCode.BAD_MESSAGE: "the server says this client sent a malformed message (a bug)",
    CloseCode.UNSUPPORTED_VERSION: (
        "the server does not speak this client's protocol version: update meetcap"
    ),
    CloseCode.BAD_CHECKSUM: "a frame arrived corrupted",
    CloseCode.GAP: "frames went missing in transit",
    CloseCode.HELLO_REQUIRED: "the server says this client skipped its hello (a bug)",
    CloseCode.UNKNOWN_SESSION: (
        "the server no longer knows session {session} (it holds no audio for it); its "
        "unsent audio stays in the spool: `meetcap spool deliver <id> --token TOKEN` sends "
        "it as a new session (`meetcap spool list` shows the id)"
    ),
    CloseCode.BAD_RESUME_TOKEN: (
        "the server refused the resume token of session {session}; its unsent audio stays "
        "in the spool: `meetcap spool deliver <id> --token TOKEN` sends it as a new session"
    ),
    CloseCode.FORBIDDEN: "session {session} belongs to another user",
    CloseCode.TAKEN_OVER: (
        "another connection took over session {session} (is meetcap running twice?)"
    ),
    CloseCode.RATE_LIMITED: "the server says audio arrived faster than real time",
    CloseCode.TOO_MANY_SESSIONS: "the server has too many sessions open for this user",
    CloseCode.STORAGE_FAILED: "the server could not store audio (its disk may be full)",
    CloseCode.SESSION_ENDED: "session {session} was already ended on the server",
    CloseCode.NOT_READING: "the server closed a connection this client stopped reading from",
}


def from_http_status(status: int, url: str) -> Outcome:
    """The handshake was refused with an HTTP status instead of opening the WebSocket."""
    if status in _HTTP_FATAL_REASONS:
        return Outcome("fatal", _HTTP_FATAL_REASONS[status].format(url=url), http_status=status)
    if is_retryable_http(status):
        return Outcome("retry", f"the server is unavailable (HTTP {status})", http_status=status)
    return Outcome(
        "fatal", f"the server at {url} answered HTTP {status} instead of opening a WebSocket",
        http_status=status,
    )


def from_close(
    code: int | None,
    *,
    error: Error | None = None,
    going_away: GoingAway | None = None,
    session_id: str | None = None,
) -> Outcome:
    """Classify a closed connection from its close code and the last error/going_away.

    ``code`` None or 1006 means the TCP connection broke without a close frame.
    """
    if code in (None, 1006):
        return Outcome("retry", "the connection to the server dropped", close_code=code)
    text = _CLOSE_REASONS.get(code, f"the server closed the connection (code {code})")
    text = text.format(session=session_id or "(new)")
    if error is not None and error.message:
        text = f"{text}: {error.message}"
    retry_after_s = 0.0
    if going_away is not None:
        retry_after_s = going_away.retry_after_ms / 1000
    elif error is not None and error.retry_after_ms is not None:
        retry_after_s = error.retry_after_ms / 1000
    kind: OutcomeKind = "retry" if is_retryable(code) else "fatal"
    return Outcome(kind, text, retry_after_s=retry_after_s, close_code=code)
