"""Sans-I/O state machines for the two ends of a meetcap connection.

Neither class touches a socket. The driver (asyncio server or client) feeds every
WebSocket message it receives to ``receive_text`` / ``receive_binary``, acts on the
events returned, and sends the text or bytes that the methods return. This keeps the
rules of docs/protocol.md in one place, shared by client and server, and testable
with bytes alone (the design of python-websockets' protocol.py).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meetcap.errors import ProtocolError
from meetcap.protocol.audio import AudioMessage, decode_audio, encode_audio
from meetcap.protocol.codes import ERROR_NAMES, CloseCode
from meetcap.protocol.messages import (
    Ack,
    End,
    Ended,
    Error,
    GoingAway,
    Hello,
    Message,
    Transcript,
    TranscriptStatus,
    Welcome,
    decode_message,
    encode_message,
)

# ---------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class HelloReceived:
    """The client asked to create (``hello.session_id`` None) or resume a session.

    The driver checks the user and the resume token, then calls ``accept`` or ``refuse``.
    """

    hello: Hello


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """The next frame in order: store it durably, then acknowledge it."""

    frame: AudioMessage


@dataclass(frozen=True, slots=True)
class DuplicateReceived:
    """A frame the server already has (a replay after a reconnect): drop it, ack again."""

    seq: int


@dataclass(frozen=True, slots=True)
class EndReceived:
    """The client ended the session after ``last_seq``; finalise once it is all stored."""

    last_seq: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """Client side: a control message from the server (Welcome, Ack, Ended, ...)."""

    message: Message


@dataclass(frozen=True, slots=True)
class ProtocolViolation:
    """The peer broke the protocol. Send ``error_text`` (server side), then close with
    ``close_code``. The connection accepts nothing more."""

    error: ProtocolError
    error_text: str

    @property
    def close_code(self) -> int:
        return self.error.code


Event = (
    HelloReceived
    | FrameReceived
    | DuplicateReceived
    | EndReceived
    | MessageReceived
    | ProtocolViolation
)


def error_message(code: CloseCode, message: str, **extra: int) -> Error:
    """The JSON error that goes before a close with ``code``."""
    return Error(code=ERROR_NAMES[code], message=message, **extra)


# ---------------------------------------------------------------------------- server


class ServerState(enum.Enum):
    AWAIT_HELLO = "await_hello"  # nothing may come before hello
    HELLO_PENDING = "hello_pending"  # the driver is checking the hello
    STREAMING = "streaming"  # frames flow
    ENDING = "ending"  # end received: no more frames
    CLOSED = "closed"


class ServerConnection:
    """The server's view of one connection: hello first, then frames strictly in order.

    Sequence rules (docs/protocol.md, "Acknowledgements and resume"): after ``accept``
    with ``acked = N`` the next frame must be ``N + 1``. A frame at or below the last
    frame received is a duplicate (dropped and acked again); one above the next expected
    number is a gap and closes the connection with the number the server expects.
    """

    def __init__(self) -> None:
        self.state = ServerState.AWAIT_HELLO
        self.next_seq = 0  # the next sequence number this connection must send
        self.speakers = False  # the welcome accepted the speakers extension (bits 1-2)
        self.tracks = False  # the welcome accepted the tracks extension (9,616-byte frames)

    # -- input

    def receive_text(self, text: str | bytes) -> list[Event]:
        """Feed one text message; returns what the driver must act on."""
        if self.state is ServerState.CLOSED:
            return []
        try:
            message = decode_message(text)
        except ProtocolError as exc:
            return [self._violate(exc)]
        if isinstance(message, Hello):
            if self.state is not ServerState.AWAIT_HELLO:
                return [self._violation(CloseCode.HELLO_REQUIRED, "hello may be sent only once")]
            self.state = ServerState.HELLO_PENDING
            return [HelloReceived(message)]
        if self.state is ServerState.ENDING:
            return [self._violation(CloseCode.BAD_MESSAGE, "nothing may follow end")]
        if self.state is not ServerState.STREAMING:
            return [self._violation(CloseCode.HELLO_REQUIRED, "the first message must be hello")]
        if isinstance(message, End):
            if message.last_seq != self.next_seq - 1:
                return [
                    self._violation(
                        CloseCode.GAP,
                        f"end says the last frame is {message.last_seq}, but the next frame "
                        f"expected is {self.next_seq}",
                        expected=self.next_seq,
                    )
                ]
            self.state = ServerState.ENDING
            return [EndReceived(message.last_seq)]
        return [
            self._violation(
                CloseCode.BAD_MESSAGE, f"a client may not send {type(message).__name__.lower()}"
            )
        ]

    def receive_binary(self, data: bytes) -> list[Event]:
        """Feed one binary message (an audio frame)."""
        if self.state is ServerState.CLOSED:
            return []
        if self.state is not ServerState.STREAMING:
            if self.state is ServerState.ENDING:
                return [self._violation(CloseCode.BAD_MESSAGE, "no frames may follow end")]
            return [self._violation(CloseCode.HELLO_REQUIRED, "the first message must be hello")]
        try:
            frame = decode_audio(data, speakers=self.speakers, tracks=self.tracks)
        except ProtocolError as exc:
            return [self._violate(exc)]
        if frame.seq < self.next_seq:
            return [DuplicateReceived(frame.seq)]
        if frame.seq > self.next_seq:
            return [
                self._violation(
                    CloseCode.GAP,
                    f"frame {frame.seq} skips ahead: the next frame expected is {self.next_seq}",
                    expected=self.next_seq,
                )
            ]
        self.next_seq += 1
        return [FrameReceived(frame)]

    # -- output

    def accept(self, welcome: Welcome) -> str:
        """Attach the session; returns the welcome text. Frames start at ``acked + 1``."""
        if self.state is not ServerState.HELLO_PENDING:
            raise RuntimeError(f"accept() needs a pending hello, state is {self.state.value}")
        self.state = ServerState.STREAMING
        self.next_seq = welcome.acked + 1
        self.speakers = bool(welcome.speakers)
        self.tracks = bool(welcome.tracks)
        return encode_message(welcome)

    def ack(self, seq: int) -> str:
        """Text of a cumulative ack: every frame up to ``seq`` is durably stored."""
        # The server's hottest message (one per frame under load): formatted directly,
        # byte for byte what encode_message(Ack(seq=seq)) gives.
        return f'{{"type":"ack","seq":{seq:d}}}'

    def ended(self, ended: Ended) -> str:
        self.state = ServerState.CLOSED
        return encode_message(ended)

    def going_away(self, retry_after_ms: int, reason: str = "server restart") -> str:
        """Text of going_away; close with 1012 (SERVICE_RESTART) after sending it."""
        self.state = ServerState.CLOSED
        return encode_message(GoingAway(retry_after_ms=retry_after_ms, reason=reason))

    def refuse(self, code: CloseCode, message: str, **extra: int) -> ProtocolViolation:
        """Refuse the connection for a reason the driver found (bad token, rate limit...)."""
        return self._violation(code, message, **extra)

    # -- helpers

    def _violation(self, code: CloseCode, message: str, **extra: int) -> ProtocolViolation:
        return self._violate(ProtocolError(int(code), ERROR_NAMES[code], message), **extra)

    def _violate(self, exc: ProtocolError, **extra: int) -> ProtocolViolation:
        self.state = ServerState.CLOSED
        text = encode_message(Error(code=exc.name, message=str(exc), **extra))
        return ProtocolViolation(error=exc, error_text=text)


# ---------------------------------------------------------------------------- client


class ClientState(enum.Enum):
    CONNECTING = "connecting"  # hello sent, waiting for welcome
    STREAMING = "streaming"
    ENDING = "ending"  # end sent, waiting for ended
    CLOSED = "closed"


class ClientConnection:
    """The client's view of one connection.

    Call :meth:`hello` first and send its text. After a ``Welcome`` event, send every
    spooled frame after ``welcome.acked`` with :meth:`frame`. Acks are cumulative and
    never go backwards; an ack for a frame never sent is a server bug and a violation.
    """

    def __init__(self) -> None:
        self.state = ClientState.CONNECTING
        self.acked = -1
        self.highest_sent = -1
        self.speakers = False  # the server accepted the who-spoke flags on this connection
        self.tracks = False  # the server accepted two-lane frames on this connection

    def hello(
        self,
        session_id: str | None,
        resume_token: str | None,
        started_at: float,
        client: str = "meetcap",
        *,
        transcript: bool = False,
        transcript_from: int = 0,
        speakers: int | None = None,
        tracks: int | None = None,
        create: bool = False,
    ) -> str:
        """The hello text; ``transcript`` asks for transcript messages from final id
        ``transcript_from`` on (an extension older servers ignore); ``create``: the
        session id and token are the client's own, create the session if it is new."""
        return encode_message(
            Hello(
                session_id=session_id,
                resume_token=resume_token,
                started_at=started_at,
                client=client,
                transcript=transcript,
                transcript_from=transcript_from,
                speakers=speakers,
                tracks=tracks,
                create=True if create else None,
            )
        )

    def frame(
        self, seq: int, pcm: bytes, speech: bool = False, speaker: int | None = None,
        tracks: bytes | None = None,
    ) -> bytes:
        """Bytes of frame ``seq``; valid only after the welcome. ``speaker`` goes into
        bits 1-2 only if the welcome accepted the speakers extension, ``tracks`` (the
        two lanes) only if it accepted the tracks extension: else the mono frame."""
        if self.state is not ClientState.STREAMING:
            raise RuntimeError(f"frames may be sent only while streaming, state is {self.state}")
        self.highest_sent = max(self.highest_sent, seq)
        return encode_audio(
            seq, pcm, speech, speaker if self.speakers else None,
            tracks if self.tracks else None,
        )

    def end(self, last_seq: int) -> str:
        self.state = ClientState.ENDING
        return encode_message(End(last_seq=last_seq))

    def receive_text(self, text: str | bytes) -> list[Event]:
        try:
            message = decode_message(text)
        except ProtocolError as exc:
            return [self._violate(exc)]
        if isinstance(message, Welcome):
            if self.state is not ClientState.CONNECTING:
                return [self._violate(_bad("welcome arrived twice"))]
            self.state = ClientState.STREAMING
            self.acked = message.acked
            self.highest_sent = message.acked
            self.speakers = bool(message.speakers)
            self.tracks = bool(message.tracks)
        elif isinstance(message, Ack):
            if message.seq > self.highest_sent:
                return [
                    self._violate(
                        _bad(f"ack for frame {message.seq}, but only {self.highest_sent} was sent")
                    )
                ]
            self.acked = max(self.acked, message.seq)
        elif isinstance(message, (Ended, Error, GoingAway)):
            self.state = ClientState.CLOSED
        elif isinstance(message, (Transcript, TranscriptStatus)):
            pass  # the transcript extension: may come in any state, even after ended
        else:
            return [self._violate(_bad(f"a server may not send {type(message).__name__.lower()}"))]
        return [MessageReceived(message)]

    def receive_binary(self, data: bytes) -> list[Event]:
        return [self._violate(_bad("a server never sends binary messages"))]

    def _violate(self, exc: ProtocolError) -> ProtocolViolation:
        self.state = ClientState.CLOSED
        return ProtocolViolation(error=exc, error_text="")


def _bad(message: str) -> ProtocolError:
    return ProtocolError(int(CloseCode.BAD_MESSAGE), ERROR_NAMES[CloseCode.BAD_MESSAGE], message)
