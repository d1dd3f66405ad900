"""Binary audio messages, byte by byte: layout, checksum coverage, every refusal."""

from __future__ import annotations

import struct
import zlib

import pytest

from meetcap.constants import FRAME_BYTES
from meetcap.errors import ProtocolError
from meetcap.protocol import (
    AUDIO_MESSAGE_BYTES,
    HEADER_BYTES,
    CloseCode,
    decode_audio,
    encode_audio,
)

PCM = bytes(range(256)) * 12 + bytes(range(128))  # 3,200 bytes, not all equal


def test_layout_is_magic_version_flags_seq_crc_then_pcm():
    data = encode_audio(0x0102030405060708, PCM, speech=True)
    assert len(data) == AUDIO_MESSAGE_BYTES == 3216 and HEADER_BYTES == 16
    assert data[:2] == b"MC" and data[2] == 1 and data[3] == 0x01
    assert struct.unpack("!Q", data[4:12])[0] == 0x0102030405060708
    assert struct.unpack("!I", data[12:16])[0] == zlib.crc32(data[:12] + PCM)
    assert data[16:] == PCM


@pytest.mark.parametrize("seq", [0, 1, 2**32, 2**64 - 1])
@pytest.mark.parametrize("speech", [False, True])
def test_frames_round_trip(seq, speech):
    message = decode_audio(encode_audio(seq, PCM, speech))
    assert (message.seq, message.pcm, message.speech) == (seq, PCM, speech)


def test_encoder_refuses_wrong_pcm_length_and_seq_range():
    with pytest.raises(ValueError, match="3200"):
        encode_audio(0, PCM[:-2])
    with pytest.raises(ValueError):
        encode_audio(-1, PCM)
    with pytest.raises(ValueError):
        encode_audio(2**64, PCM)


def _refusal(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_audio(data)
    return info.value


@pytest.mark.parametrize("size", [0, 16, AUDIO_MESSAGE_BYTES - 1, AUDIO_MESSAGE_BYTES + 1])
def test_wrong_size_is_bad_message(size):
    error = _refusal(encode_audio(0, PCM).ljust(size, b"\0")[:size])
    assert (error.code, error.name) == (CloseCode.BAD_MESSAGE, "bad_message")


def test_wrong_magic_is_bad_message():
    data = bytearray(encode_audio(3, PCM))
    data[0:2] = b"XX"
    assert _refusal(bytes(data)).code == CloseCode.BAD_MESSAGE


def test_other_version_is_unsupported_version():
    data = bytearray(encode_audio(3, PCM))
    data[2] = 2
    error = _refusal(bytes(data))
    assert (error.code, error.name) == (CloseCode.UNSUPPORTED_VERSION, "unsupported_version")


@pytest.mark.parametrize("flags", [0x02, 0x80, 0xFF])
def test_unknown_flag_bits_are_bad_message(flags):
    data = bytearray(encode_audio(3, PCM))
    data[3] = flags
    assert _refusal(bytes(data)).code == CloseCode.BAD_MESSAGE


@pytest.mark.parametrize("offset", [3, 4, 11, 12, 15, 16, 1000, AUDIO_MESSAGE_BYTES - 1])
def test_any_flipped_bit_after_the_version_is_bad_checksum_or_bad_flags(offset):
    """The CRC covers the flags, the sequence number and the PCM: a frame cannot be
    corrupted or replayed at another position unnoticed."""
    data = bytearray(encode_audio(7, PCM))
    data[offset] ^= 0x10
    error = _refusal(bytes(data))
    expected = CloseCode.BAD_MESSAGE if offset == 3 else CloseCode.BAD_CHECKSUM
    assert error.code == expected
    if expected == CloseCode.BAD_CHECKSUM:
        assert error.name == "bad_checksum"


def test_pcm_length_is_one_frame():
    assert len(decode_audio(encode_audio(0, PCM)).pcm) == FRAME_BYTES
