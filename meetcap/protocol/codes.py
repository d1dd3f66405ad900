"""Close codes and error names of the meetcap wire protocol (docs/protocol.md, "Errors").

Every refusal the server makes is a JSON ``error`` message carrying ``code`` (the name
below), followed by a WebSocket close with the numeric code. Clients decide from the
numeric code alone whether to reconnect: :func:`is_retryable`.
"""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    """WebSocket close codes. 1000-1015 are RFC 6455 section 7.4.1; 4000-4999 are ours."""

    NORMAL = 1000  # session ended cleanly after ``ended``
    GOING_AWAY = 1001  # the peer is going away (browser tab closed, client quit)
    POLICY_VIOLATION = 1008  # no valid token, yet past the handshake (which answers 401)
    MESSAGE_TOO_BIG = 1009  # a message over the size limit (RFC 6455 7.4.1)
    INTERNAL_ERROR = 1011  # the server hit an unexpected condition
    SERVICE_RESTART = 1012  # the server restarts: reconnect after a random moment

    BAD_MESSAGE = 4000  # malformed JSON, unknown type, bad field, bad binary header
    UNSUPPORTED_VERSION = 4001  # protocol version the server does not speak
    BAD_CHECKSUM = 4002  # a frame's CRC32 does not match its bytes
    GAP = 4003  # a frame skipped ahead of the next expected sequence number
    HELLO_REQUIRED = 4004  # the first message was not ``hello``, or a second ``hello``
    UNKNOWN_SESSION = 4005  # no such session (expired, or never existed)
    BAD_RESUME_TOKEN = 4006  # the resume token is wrong or has been replaced
    FORBIDDEN = 4007  # the session belongs to another user
    TAKEN_OVER = 4008  # a newer connection resumed this session
    RATE_LIMITED = 4009  # audio ran ahead of the wall clock: a flooding client
    TOO_MANY_SESSIONS = 4010  # the user's concurrent or per-minute session cap is reached
    STORAGE_FAILED = 4011  # the server could not store audio durably (disk full)
    SESSION_ENDED = 4012  # the session was already ended; it accepts no more audio
    NOT_READING = 4013  # the client left too much of what the server sent unread


# The short names carried in ``error.code`` messages, one per close code.
ERROR_NAMES: dict[CloseCode, str] = {
    CloseCode.POLICY_VIOLATION: "policy_violation",
    CloseCode.MESSAGE_TOO_BIG: "message_too_big",
    CloseCode.INTERNAL_ERROR: "internal_error",
    CloseCode.SERVICE_RESTART: "service_restart",
    CloseCode.BAD_MESSAGE: "bad_message",
    CloseCode.UNSUPPORTED_VERSION: "unsupported_version",
    CloseCode.BAD_CHECKSUM: "bad_checksum",
    CloseCode.GAP: "gap",
    CloseCode.HELLO_REQUIRED: "hello_required",
    CloseCode.UNKNOWN_SESSION: "unknown_session",
    CloseCode.BAD_RESUME_TOKEN: "bad_resume_token",
    CloseCode.FORBIDDEN: "forbidden",
    CloseCode.TAKEN_OVER: "taken_over",
    CloseCode.RATE_LIMITED: "rate_limited",
    CloseCode.TOO_MANY_SESSIONS: "too_many_sessions",
    CloseCode.STORAGE_FAILED: "storage_failed",
    CloseCode.SESSION_ENDED: "session_ended",
    CloseCode.NOT_READING: "not_reading",
}
CODES_BY_NAME: dict[str, CloseCode] = {name: code for code, name in ERROR_NAMES.items()}

# Reconnecting helps only when the cause can go away by itself. A connection closed with
# any other code needs a person (or a fixed client) first: the client stops and says why.
RETRYABLE_CLOSE_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.SERVICE_RESTART,
        CloseCode.BAD_CHECKSUM,  # corrupted in transit: resend from the ack
        CloseCode.GAP,  # lost frames in transit: resend from the ack
        CloseCode.RATE_LIMITED,
        CloseCode.TOO_MANY_SESSIONS,
        CloseCode.STORAGE_FAILED,
        CloseCode.NOT_READING,  # a stalled reader: nothing acked is lost, resume from the ack
        1006,  # abnormal closure: the TCP connection dropped without a close frame
    }
)

# HTTP statuses the server answers the WebSocket handshake with, before it opens.
HTTP_UNAUTHORIZED = 401  # missing or unknown bearer token: fatal
HTTP_FORBIDDEN = 403  # Origin not allowed: fatal
HTTP_NOT_FOUND = 404  # wrong path: fatal
HTTP_TOO_MANY_REQUESTS = 429  # too many connection attempts: retry later
HTTP_SERVICE_UNAVAILABLE = 503  # shutting down: retry later
RETRYABLE_HTTP_STATUSES = frozenset({HTTP_TOO_MANY_REQUESTS, HTTP_SERVICE_UNAVAILABLE, 502, 504})


def is_retryable(close_code: int | None) -> bool:
    """True when a connection closed with ``close_code`` is worth reconnecting.

    ``None`` (no close frame at all: the TCP connection broke) is retryable.
    """
    return close_code is None or close_code in RETRYABLE_CLOSE_CODES


def is_retryable_http(status: int) -> bool:
    """True when a refused handshake with this HTTP status is worth retrying."""
    return status in RETRYABLE_HTTP_STATUSES or status >= 500
