"""Which messages to the server are too big (docs/protocol.md 2 and 8.4).

Every message to the server is at most 3,216 bytes (one mono audio frame), except the
tracks extension's audio message of exactly 9,616 bytes (3.5). The WebSocket layer
refuses anything over 9,616 (its max_size); this refuses the rest with the same 1009, so
a peer that never offered tracks sees the limit it always saw. A 9,616-byte binary goes
on to the codec, which refuses it (4000) on a connection without the extension.
"""

from __future__ import annotations

from meetcap.protocol import MAX_MESSAGE_BYTES, TRACKS_MESSAGE_BYTES

# A str of n characters is at least n and at most 4n bytes of UTF-8.
_ALWAYS_FITS_CHARS = MAX_MESSAGE_BYTES // 4


def too_big(message: str | bytes) -> bool:
    """True when ``message`` (as received) must be closed with 1009."""
    if isinstance(message, bytes):
        return len(message) > MAX_MESSAGE_BYTES and len(message) != TRACKS_MESSAGE_BYTES
    if len(message) <= _ALWAYS_FITS_CHARS:  # the usual control message: no encoding cost
        return False
    return len(message) > MAX_MESSAGE_BYTES or len(message.encode()) > MAX_MESSAGE_BYTES
