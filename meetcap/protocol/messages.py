"""JSON control messages (docs/protocol.md, "Control messages").

Each text message is one JSON object with a ``type``. :func:`encode_message` turns a
message object into text; :func:`decode_message` parses and validates text and raises
:class:`~meetcap.errors.ProtocolError` (``bad_message`` or ``unsupported_version``) for
anything malformed, so a receiver can answer with the documented close code.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

from meetcap.constants import FRAME_MS, SAMPLE_RATE_HZ
from meetcap.errors import ProtocolError
from meetcap.protocol.codes import CODES_BY_NAME, CloseCode

PROTOCOL_VERSION = 1
MAX_TEXT_BYTES = 4096  # every control message fits easily; anything longer is refused
AUDIO_FORMAT = {
    "encoding": "s16le", "sample_rate": SAMPLE_RATE_HZ, "channels": 1, "frame_ms": FRAME_MS,
}
# Session ids and tokens are URL-safe text; the limits stop a peer from making us store junk.
# Always full-matched: "$" would also accept a value that ends in a newline.
_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,128}")
# JSON integers are unbounded; no field means more than a 64-bit sequence number can.
_MAX_INT = 2**64 - 1
_SHOWN_CHARS = 40  # how much of a bad value an error message quotes


@dataclass(frozen=True, slots=True)
class Hello:
    """Client -> server, first message of every connection.

    ``session_id`` None asks for a new session; otherwise the client resumes it and must
    send the session's latest ``resume_token``. ``started_at`` is the wall-clock epoch of
    frame 0 (only read when creating a session).
    """

    session_id: str | None = None
    resume_token: str | None = None
    started_at: float = 0.0
    client: str = ""
    version: int = PROTOCOL_VERSION
    format: dict = None  # type: ignore[assignment]
    # Transcript extension (docs/protocol.md 3.3): ask for transcript messages, and the
    # id of the first final segment this client has not seen yet (older ones are skipped).
    transcript: bool = False
    transcript_from: int = 0
    # Speakers extension (docs/protocol.md 3.1): the version of the who-spoke frame flags
    # (bits 1-2) the client would send; None: none. An older server ignores it.
    speakers: int | None = None
    # Tracks extension (docs/protocol.md 3.5): the version of the two-lane audio message
    # the client would send (1); None: mono only. An older server ignores it.
    tracks: int | None = None
    # docs/protocol.md 4, "Creating under an id the client chose": True with a session_id
    # and resume_token the client made up: create that session if it does not exist, else
    # resume it (a retry after a lost welcome never leaves a second, empty session).
    # None: absent. An older server ignores it (and answers a resume: 4005).
    create: bool | None = None

    def __post_init__(self) -> None:
        if self.format is None:
            object.__setattr__(self, "format", dict(AUDIO_FORMAT))


@dataclass(frozen=True, slots=True)
class Welcome:
    """Server -> client: the session is attached to this connection.

    ``acked`` is the highest sequence number stored durably (-1 when none): the client
    sends from ``acked + 1``. ``resume_token`` replaces the previous one: store it before
    sending anything else. ``epoch`` counts resumes; a newer epoch takes the session over.
    """

    session_id: str
    resume_token: str
    acked: int
    epoch: int
    version: int = PROTOCOL_VERSION
    # Speakers extension: the version the server accepts for this connection (only in
    # answer to a hello that offered it); None: frames keep bits 1-2 at 0.
    speakers: int | None = None
    # Tracks extension: the version the server accepts for this connection (only in
    # answer to a hello that offered it); None: only the mono 3,216-byte message.
    tracks: int | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """Server -> client: every frame up to and including ``seq`` is stored durably."""

    seq: int


@dataclass(frozen=True, slots=True)
class End:
    """Client -> server: the session is over after frame ``last_seq`` (-1: no frames)."""

    last_seq: int


@dataclass(frozen=True, slots=True)
class Ended:
    """Server -> client: the session is finalised; ``sha256`` is of its stored PCM."""

    session_id: str
    frames: int
    duration_ms: int
    sha256: str


@dataclass(frozen=True, slots=True)
class GoingAway:
    """Server -> client: the server shuts down; reconnect after ``retry_after_ms``."""

    retry_after_ms: int
    reason: str = "server restart"


@dataclass(frozen=True, slots=True)
class Error:
    """Server -> client, just before closing: ``code`` is a name from codes.ERROR_NAMES.

    ``expected`` is set for ``gap`` (the next sequence number the server wants);
    ``retry_after_ms`` for ``rate_limited`` and ``too_many_sessions``. ``held`` for
    ``bad_resume_token`` when the server knows it: the session's stored frames are
    ``0..held-1`` (docs/protocol.md 4, "A stale token").
    """

    code: str
    message: str
    expected: int | None = None
    retry_after_ms: int | None = None
    held: int | None = None

    @property
    def close_code(self) -> int:
        """The numeric close code that goes with ``code`` (bad_message if unknown)."""
        return int(CODES_BY_NAME.get(self.code, CloseCode.BAD_MESSAGE))

@dataclass(frozen=True, slots=True)
class Transcript:
    """Server -> client (transcript extension): one segment of the session's transcript.

    ``start``/``end`` are seconds from the session's first frame; ``final`` False is a
    partial hypothesis carrying the id its final will take. Sent only to a client that
    asked for it in hello.
    """

    id: int
    start: float
    end: float
    text: str
    final: bool
    speaker: str | None = None
    minor: bool = False


@dataclass(frozen=True, slots=True)
class TranscriptStatus:
    """Server -> client (transcript extension): how far transcription is behind the
    stored audio (``lag_s``), the next final id, and ``complete`` once the ended
    session's transcript is whole. ``failed``: the server gave up transcribing the
    session, in a sentence for a person (None when it did not)."""

    lag_s: float
    next_id: int
    complete: bool = False
    failed: str | None = None


Message = (
    Hello | Welcome | Ack | End | Ended | GoingAway | Error | Transcript | TranscriptStatus
)

_TYPES: dict[str, type] = {
    "hello": Hello,
    "welcome": Welcome,
    "ack": Ack,
    "end": End,
    "ended": Ended,
    "going_away": GoingAway,
    "error": Error,
    "transcript": Transcript,
    "transcript_status": TranscriptStatus,
}
_NAMES: dict[type, str] = {cls: name for name, cls in _TYPES.items()}


def _bad(message: str) -> ProtocolError:
    return ProtocolError(int(CloseCode.BAD_MESSAGE), "bad_message", message)


def encode_message(message: Message) -> str:
    """Serialise a control message to the JSON text sent on the wire."""
    body: dict[str, Any] = {"type": _NAMES[type(message)]}
    body.update({k: v for k, v in asdict(message).items() if v is not None})
    return json.dumps(body, separators=(",", ":"))


def _shown(value: Any) -> str:
    """A bad value as an error message quotes it: the start of its repr only (a server
    message is at most MAX_TEXT_BYTES, and the peer's value may be most of that)."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[:_SHOWN_CHARS]}... ({len(text)} chars)"


def _check_int(name: str, value: Any, minimum: int) -> int:
    # bool is an int in Python; a JSON true is not a sequence number.
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= _MAX_INT:
        raise _bad(
            f"field {name!r} must be an integer from {minimum} to 2**64-1, got {_shown(value)}"
        )
    return value


def _check_str(
    name: str, value: Any, pattern: re.Pattern[str] | None = None, *, secret: bool = False
) -> str:
    """``value`` if it is a string (full-matching ``pattern``); a ``secret`` one is never
    quoted back (a malformed resume token may still be most of a real one)."""
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        shown = "" if secret else f": {_shown(value)}"
        raise _bad(f"field {name!r} is not a valid value{shown}")
    return value


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _bad(f"field {name!r} must be a number of seconds, got {_shown(value)}")
    try:
        seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds) or seconds < 0:
        raise _bad(f"field {name!r} must be a finite number >= 0, got {_shown(value)}")
    return seconds


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise _bad(f"field {name!r} must be true or false, got {_shown(value)}")


def _same_json(value: Any, expected: dict[str, Any]) -> bool:
    """``value`` is ``expected`` exactly as JSON: the same keys, and each value of the same
    JSON type (16000.0 == 16000 and true == 1 in Python, not in the spec)."""
    return (
        type(value) is dict
        and value.keys() == expected.keys()
        and all(type(value[k]) is type(v) and value[k] == v for k, v in expected.items())
    )


def _validate(message: Message) -> None:
    """Field checks beyond JSON types: ranges, id and token shapes, the audio format."""
    if isinstance(message, Hello):
        # A JSON true or 1.0 equals 1 in Python, but is not the integer 1: a mistyped
        # field (4000), while another integer is another version (4001).
        if type(message.version) is not int:
            raise _bad(f"field 'version' must be the integer 1, got {_shown(message.version)}")
        if message.version != PROTOCOL_VERSION:
            raise ProtocolError(
                int(CloseCode.UNSUPPORTED_VERSION),
                "unsupported_version",
                f"protocol version {_shown(message.version)} is not supported; this server speaks "
                f"version {PROTOCOL_VERSION}",
            )
        if message.session_id is not None:
            _check_str("session_id", message.session_id, _ID_PATTERN)
            _check_str("resume_token", message.resume_token, _TOKEN_PATTERN, secret=True)
        elif message.resume_token is not None:
            raise _bad("a resume_token needs the session_id it belongs to")
        if message.create is not None:
            _check_bool("create", message.create)
            if message.create and message.session_id is None:
                raise _bad("'create' needs the session_id and resume_token to create under")
        started_at = message.started_at
        try:  # a JSON integer can be too large for a float (400 digits: OverflowError)
            seconds = (
                None if isinstance(started_at, bool) or not isinstance(started_at, (int, float))
                else float(started_at)
            )
        except OverflowError:
            seconds = None
        # json.loads accepts NaN and Infinity, which no clock reads.
        if seconds is None or not math.isfinite(seconds) or seconds < 0:
            raise _bad("field 'started_at' must be a number >= 0 (seconds since the epoch)")
        object.__setattr__(message, "started_at", seconds)  # a float from here on
        _check_str("client", message.client)
        if not _same_json(message.format, AUDIO_FORMAT):
            raise _bad(f"audio format must be {AUDIO_FORMAT}, got {_shown(message.format)}")
        _check_bool("transcript", message.transcript)
        _check_int("transcript_from", message.transcript_from, 0)
        if message.speakers is not None:
            _check_int("speakers", message.speakers, 0)
        if message.tracks is not None:
            _check_int("tracks", message.tracks, 0)
    elif isinstance(message, Transcript):
        _check_int("id", message.id, 0)
        object.__setattr__(message, "start", _check_seconds("start", message.start))
        object.__setattr__(message, "end", _check_seconds("end", message.end))
        _check_str("text", message.text)
        _check_bool("final", message.final)
        if message.speaker is not None:
            _check_str("speaker", message.speaker)
        _check_bool("minor", message.minor)
    elif isinstance(message, TranscriptStatus):
        object.__setattr__(message, "lag_s", _check_seconds("lag_s", message.lag_s))
        _check_int("next_id", message.next_id, 0)
        _check_bool("complete", message.complete)
        if message.failed is not None:
            _check_str("failed", message.failed)
    elif isinstance(message, Welcome):
        _check_str("session_id", message.session_id, _ID_PATTERN)
        _check_str("resume_token", message.resume_token, _TOKEN_PATTERN, secret=True)
        _check_int("acked", message.acked, -1)
        _check_int("epoch", message.epoch, 0)
        if message.speakers is not None:
            _check_int("speakers", message.speakers, 0)
        if message.tracks is not None:
            _check_int("tracks", message.tracks, 0)
    elif isinstance(message, Ack):
        _check_int("seq", message.seq, -1)
    elif isinstance(message, End):
        _check_int("last_seq", message.last_seq, -1)
    elif isinstance(message, Ended):
        _check_str("session_id", message.session_id, _ID_PATTERN)
        _check_int("frames", message.frames, 0)
        _check_int("duration_ms", message.duration_ms, 0)
        _check_str("sha256", message.sha256)
    elif isinstance(message, GoingAway):
        _check_int("retry_after_ms", message.retry_after_ms, 0)
        _check_str("reason", message.reason)
    elif isinstance(message, Error):
        _check_str("code", message.code)
        _check_str("message", message.message)
        if message.expected is not None:
            _check_int("expected", message.expected, 0)
        if message.retry_after_ms is not None:
            _check_int("retry_after_ms", message.retry_after_ms, 0)
        if message.held is not None:
            _check_int("held", message.held, 0)


def decode_message(text: str | bytes) -> Message:
    """Parse one control message; raise ProtocolError for anything malformed."""
    if len(text) > MAX_TEXT_BYTES:
        raise _bad(f"control messages are at most {MAX_TEXT_BYTES} bytes, got {len(text)}")
    try:
        body = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"control message is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # "[[[[..." nested deeper than the parser's stack
        raise _bad("control message is nested too deeply") from exc
    if not isinstance(body, dict):
        raise _bad("a control message must be a JSON object")
    kind = body.pop("type", None)
    cls = _TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise _bad(f"unknown message type {_shown(kind)}; expected one of {sorted(_TYPES)}")
    # Fields this version does not know are ignored, so that a newer peer can add
    # optional fields without breaking an older one (docs/protocol.md, "Versioning").
    names = {f.name for f in fields(cls)}
    try:
        message = cls(**{k: v for k, v in body.items() if k in names})
    except TypeError as exc:  # a required field is missing
        raise _bad(f"{kind!r} is missing a required field: {exc}") from exc
    _validate(message)
    return message
