"""Binary audio messages: a 16-byte header and 3,200 bytes of PCM (docs/protocol.md).

Layout, network byte order for the header (the PCM itself is int16 little-endian)::

    offset size field
    0      2    magic     b"MC"
    2      1    version   1
    3      1    flags     bit 0: speech; bits 1-2: who spoke (only with the speakers
                          extension, negotiated in hello; else 0); bits 3-7 must be 0
    4      8    seq       unsigned, 0 for the first frame of a session
    12     4    crc32     zlib.crc32 of bytes 0-11 followed by the PCM
    16     3200 pcm       1,600 samples, int16 little-endian, 16 kHz mono
    3216   6400 tracks    only with the tracks extension (hello.tracks): 1,600 stereo
                          samples, mic lane then system lane, interleaved; the CRC
                          covers them after the PCM

The checksum covers the sequence number too, so a frame cannot be replayed at another
position undetected, and it catches corruption in the client's spool and in storage
(the AWS event-stream idea, see shared design notes).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from meetcap.constants import FRAME_BYTES
from meetcap.errors import ProtocolError
from meetcap.protocol.codes import ERROR_NAMES, CloseCode

MAGIC = b"MC"
AUDIO_VERSION = 1
FLAG_SPEECH = 0x01
# The speakers extension (docs/protocol.md 3.1, hello.speakers = 1): bit 1 "you" (the mic
# lane speaks), bit 2 "others" (the system lane speaks); both: double talk; none: nobody.
# meetcap.frames.SPEAKER_* are the same two bits, shifted down by one.
SPEAKER_SHIFT = 1
FLAG_YOU = 0x02
FLAG_OTHERS = 0x04
SPEAKERS_VERSION = 1
_KNOWN_FLAGS = FLAG_SPEECH
_KNOWN_FLAGS_WITH_SPEAKERS = FLAG_SPEECH | FLAG_YOU | FLAG_OTHERS

_PREFIX = struct.Struct("!2sBBQ")  # the part the checksum covers before the PCM
_CRC = struct.Struct("!I")
HEADER_BYTES = _PREFIX.size + _CRC.size  # 16
AUDIO_MESSAGE_BYTES = HEADER_BYTES + FRAME_BYTES  # 3,216
# The tracks extension (docs/protocol.md 3.5, hello.tracks = 1): the same header and mono
# PCM, then the mic and system lanes as 1,600 stereo samples. Told apart by its size.
TRACKS_BYTES = 2 * FRAME_BYTES  # 6,400
TRACKS_MESSAGE_BYTES = AUDIO_MESSAGE_BYTES + TRACKS_BYTES  # 9,616
TRACKS_VERSION = 1
MAX_SEQ = 2**64 - 1


@dataclass(frozen=True, slots=True)
class AudioMessage:
    """One decoded audio frame as it travels: its number, speech flag and PCM, and who
    spoke (meetcap.frames.SPEAKER_*) when the speakers extension is on, else None."""

    seq: int
    pcm: bytes
    speech: bool = False
    speaker: int | None = None
    tracks: bytes | None = None  # the two lanes (tracks extension), else None

    @property
    def flags(self) -> int:
        """The header's flags byte as stored (bit 0 speech, bits 1-2 who spoke)."""
        return int(self.speech) | ((self.speaker or 0) << SPEAKER_SHIFT)


def _refuse(code: CloseCode, message: str) -> ProtocolError:
    return ProtocolError(int(code), ERROR_NAMES[code], message)


def encode_audio(
    seq: int, pcm: bytes, speech: bool = False, speaker: int | None = None,
    tracks: bytes | None = None,
) -> bytes:
    """Build the binary message for frame ``seq``. ``pcm`` must be exactly 3,200 bytes.

    ``speaker`` (0-3, meetcap.frames.SPEAKER_*) sets bits 1-2: only on a connection whose
    welcome accepted the speakers extension (and in the client's own spool); None leaves
    them 0, as every version-1 peer expects. ``tracks`` (6,400 bytes) makes it a tracks
    message (9,616 bytes): only on a connection whose welcome accepted the tracks
    extension (and in the client's own spool).
    """
    if len(pcm) != FRAME_BYTES:
        raise ValueError(f"an audio frame carries exactly {FRAME_BYTES} bytes, got {len(pcm)}")
    if tracks is not None and len(tracks) != TRACKS_BYTES:
        raise ValueError(f"a frame's tracks are exactly {TRACKS_BYTES} bytes, got {len(tracks)}")
    if not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence number out of range: {seq}")
    flags = FLAG_SPEECH if speech else 0
    if speaker is not None:
        if not 0 <= speaker <= 3:
            raise ValueError(f"speaker is 0-3 (two bits), got {speaker}")
        flags |= speaker << SPEAKER_SHIFT
    prefix = _PREFIX.pack(MAGIC, AUDIO_VERSION, flags, seq)
    crc = zlib.crc32(pcm, zlib.crc32(prefix))
    if tracks is None:
        return b"".join((prefix, _CRC.pack(crc), pcm))
    crc = zlib.crc32(tracks, crc)
    return b"".join((prefix, _CRC.pack(crc), pcm, tracks))


def decode_audio(data: bytes, *, speakers: bool = False, tracks: bool = False) -> AudioMessage:
    """Parse and verify one binary message.

    ``speakers``: the speakers extension is on for this connection (bits 1-2 allowed and
    decoded into ``speaker``); without it they are unknown flags, as in version 1.
    ``tracks``: the tracks extension is on (a 9,616-byte message is allowed and its two
    lanes decoded into ``tracks``); without it only the 3,216-byte message is.

    Raises :class:`~meetcap.errors.ProtocolError` with the close code the receiver must
    answer with: ``bad_message`` for a wrong size, magic or flags,
    ``unsupported_version`` for another version, ``bad_checksum`` for corrupted bytes.
    """
    size = len(data)
    if size == TRACKS_MESSAGE_BYTES and not tracks:
        raise _refuse(
            CloseCode.BAD_MESSAGE,
            f"a {TRACKS_MESSAGE_BYTES}-byte audio message carries two tracks: it needs the "
            "tracks extension in hello (and welcome.tracks)",
        )
    if size != AUDIO_MESSAGE_BYTES and size != TRACKS_MESSAGE_BYTES:
        raise _refuse(
            CloseCode.BAD_MESSAGE,
            f"an audio message is {AUDIO_MESSAGE_BYTES} bytes (16 header + {FRAME_BYTES} PCM)"
            + (f" or {TRACKS_MESSAGE_BYTES} with tracks" if tracks else "")
            + f", got {size}",
        )
    view = memoryview(data)
    magic, version, flags, seq = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise _refuse(CloseCode.BAD_MESSAGE, f"audio message must start with {MAGIC!r}")
    if version != AUDIO_VERSION:
        raise _refuse(
            CloseCode.UNSUPPORTED_VERSION,
            f"audio frame version {version} is not supported (this server speaks {AUDIO_VERSION})",
        )
    if flags & ~(_KNOWN_FLAGS_WITH_SPEAKERS if speakers else _KNOWN_FLAGS):
        hint = "" if speakers or flags & ~_KNOWN_FLAGS_WITH_SPEAKERS else (
            " (who-spoke bits without the speakers extension in hello)"
        )
        raise _refuse(CloseCode.BAD_MESSAGE, f"unknown audio flags 0x{flags:02x}{hint}")
    (crc,) = _CRC.unpack_from(view, _PREFIX.size)
    if zlib.crc32(view[HEADER_BYTES:], zlib.crc32(view[: _PREFIX.size])) != crc:
        raise _refuse(CloseCode.BAD_CHECKSUM, f"frame {seq} failed its CRC32 check")
    pcm = bytes(view[HEADER_BYTES:AUDIO_MESSAGE_BYTES])
    return AudioMessage(
        seq=seq, pcm=pcm, speech=bool(flags & FLAG_SPEECH),
        speaker=(flags >> SPEAKER_SHIFT) & 3 if speakers else None,
        tracks=bytes(view[AUDIO_MESSAGE_BYTES:]) if size == TRACKS_MESSAGE_BYTES else None,
    )
