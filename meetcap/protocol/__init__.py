"""The meetcap wire protocol, sans I/O: bytes and events in, bytes and events out.

Shared by the client (meetcap.client) and the server (meetcap.server); the spec is
docs/protocol.md. Binary messages carry audio frames (:mod:`.audio`); text messages are
JSON control messages (:mod:`.messages`); :mod:`.connection` holds the rules of each end.
"""

from meetcap.protocol.audio import (
    AUDIO_MESSAGE_BYTES,
    HEADER_BYTES,
    TRACKS_MESSAGE_BYTES,
    AudioMessage,
    decode_audio,
    encode_audio,
)
from meetcap.protocol.codes import CloseCode, is_retryable, is_retryable_http
from meetcap.protocol.connection import (
    ClientConnection,
    DuplicateReceived,
    EndReceived,
    FrameReceived,
    HelloReceived,
    MessageReceived,
    ProtocolViolation,
    ServerConnection,
)
from meetcap.protocol.messages import (
    PROTOCOL_VERSION,
    Ack,
    End,
    Ended,
    Error,
    GoingAway,
    Hello,
    Transcript,
    TranscriptStatus,
    Welcome,
    decode_message,
    encode_message,
)

# The URL path of the streaming endpoint; the version in it changes with PROTOCOL_VERSION.
STREAM_PATH = "/v1/stream"
# Largest message a server accepts: one audio frame; control messages are smaller. The
# one exception is the tracks extension's audio message (TRACKS_MESSAGE_BYTES, 3.5).
MAX_MESSAGE_BYTES = AUDIO_MESSAGE_BYTES

__all__ = [
    "AUDIO_MESSAGE_BYTES", "HEADER_BYTES", "MAX_MESSAGE_BYTES", "PROTOCOL_VERSION", "STREAM_PATH",
    "TRACKS_MESSAGE_BYTES", "Ack", "AudioMessage", "ClientConnection", "CloseCode",
    "DuplicateReceived", "End", "Ended",
    "EndReceived", "Error", "FrameReceived", "GoingAway", "Hello", "HelloReceived",
    "MessageReceived", "ProtocolViolation", "ServerConnection", "Transcript", "TranscriptStatus",
    "Welcome", "decode_audio",
    "decode_message", "encode_audio", "encode_message", "is_retryable", "is_retryable_http",
]
