"""The two-channel WAV of a tracks session (docs/protocol.md 3.5): ``<id>.tracks.wav``.

Channel 1 the mic lane, channel 2 the system lane, 16 kHz int16: 6,400 bytes per 100 ms
frame, frame ``seq`` at the same place in time as frame ``seq`` of the mono WAV. Like
the mono file (wavfile) its header's sizes are rewritten with the audio, so it is a valid
WAV at any moment and can only lag the data after a crash.
"""

from __future__ import annotations

from meetcap.oscalls import pwrite_all
from meetcap.protocol.audio import TRACKS_BYTES
from meetcap.server import wavfile

HEADER_BYTES = wavfile.HEADER_BYTES
CHANNELS = 2
FRAME_BYTES = TRACKS_BYTES  # 6,400
SILENCE = bytes(FRAME_BYTES)  # a frame that came without its tracks (a mono connection)
# RIFF sizes are 32-bit: a tracks session holds at most this many frames (about 18.6 h).
MAX_FRAMES = (2**32 - 1 - (HEADER_BYTES - 8)) // FRAME_BYTES
SUFFIX = ".tracks.wav"


def header(data_bytes: int) -> bytes:
    """A canonical PCM WAV header (16 kHz, two channels, 16-bit) for ``data_bytes``."""
    return wavfile.header(data_bytes, CHANNELS)


def write_sizes(fd: int, frames: int) -> None:
    pwrite_all(fd, header(frames * FRAME_BYTES), 0)


def frames_in(file_bytes: int) -> int:
    """Whole frames held by a tracks file of ``file_bytes`` (a torn last one does not count)."""
    return max(0, file_bytes - HEADER_BYTES) // FRAME_BYTES


def pcm_offset(seq: int) -> int:
    return HEADER_BYTES + seq * FRAME_BYTES
