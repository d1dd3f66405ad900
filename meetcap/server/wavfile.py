"""The WAV container of a stored session: a 44-byte header, then the PCM.

The header's two size fields are rewritten on every durable flush, in the same write
round and before the same fsync as the audio they describe. After a crash the header
can only lag behind the data, never claim more: the file is a valid WAV at any moment,
and the server recomputes the sizes from the file length when it reopens the session.
"""

from __future__ import annotations

import struct

from meetcap.constants import FRAME_BYTES, SAMPLE_BYTES, SAMPLE_RATE_HZ
from meetcap.oscalls import pwrite_all

HEADER_BYTES = 44
# RIFF sizes are 32-bit: a session holds at most this many frames (about 37 hours).
MAX_FRAMES = (2**32 - 1 - (HEADER_BYTES - 8)) // FRAME_BYTES


def header(data_bytes: int, channels: int = 1) -> bytes:
    """A canonical PCM WAV header (16 kHz, 16-bit, mono unless ``channels`` says more;
    the tracks file uses two) for ``data_bytes`` of audio."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF", HEADER_BYTES - 8 + data_bytes, b"WAVE",
        b"fmt ", 16, 1, channels, SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * SAMPLE_BYTES * channels,
        SAMPLE_BYTES * channels, SAMPLE_BYTES * 8,
        b"data", data_bytes,
    )


def write_sizes(fd: int, data_bytes: int) -> None:
    """Rewrite the header for ``data_bytes`` of audio in place (one 44-byte pwrite: the
    two size fields, and the constant fields between them unchanged)."""
    pwrite_all(fd, header(data_bytes), 0)


def frames_in(file_bytes: int) -> int:
    """Whole frames held by a WAV file of ``file_bytes`` (a torn last frame does not count)."""
    return max(0, file_bytes - HEADER_BYTES) // FRAME_BYTES


def pcm_offset(seq: int) -> int:
    """Byte offset of frame ``seq`` in the file."""
    return HEADER_BYTES + seq * FRAME_BYTES
