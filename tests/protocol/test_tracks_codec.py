"""The tracks extension's codec (docs/protocol.md 3.5): the 9,616-byte message, and the
client connection sending the lanes only where the welcome accepted them."""

from __future__ import annotations

import zlib

import pytest

from meetcap.errors import ProtocolError
from meetcap.protocol import (
    AUDIO_MESSAGE_BYTES,
    TRACKS_MESSAGE_BYTES,
    ClientConnection,
    decode_audio,
    encode_audio,
)

PCM = bytes(range(256)) * 12 + bytes(128)  # 3,200 bytes
LANES = bytes(reversed(range(256))) * 25  # 6,400 bytes


def test_the_tracks_message_is_the_mono_message_followed_by_the_lanes():
    mono = encode_audio(2, PCM, True)
    both = encode_audio(2, PCM, True, tracks=LANES)
    assert len(both) == TRACKS_MESSAGE_BYTES == AUDIO_MESSAGE_BYTES + len(LANES)
    assert both[:12] == mono[:12] and both[16:AUDIO_MESSAGE_BYTES] == PCM
    assert both[AUDIO_MESSAGE_BYTES:] == LANES
    crc = int.from_bytes(both[12:16], "big")
    assert crc == zlib.crc32(both[16:], zlib.crc32(both[:12]))
    decoded = decode_audio(both, tracks=True)
    assert (decoded.seq, decoded.pcm, decoded.tracks, decoded.speech) == (2, PCM, LANES, True)
    assert decode_audio(mono, tracks=True).tracks is None  # mono frames stay allowed


def test_the_tracks_message_without_the_extension_is_bad_message():
    with pytest.raises(ProtocolError) as caught:
        decode_audio(encode_audio(0, PCM, tracks=LANES))
    assert caught.value.code == 4000 and "tracks extension" in str(caught.value)
    with pytest.raises(ProtocolError) as caught:
        decode_audio(encode_audio(0, PCM, tracks=LANES)[:-1], tracks=True)
    assert caught.value.code == 4000
    with pytest.raises(ValueError):
        encode_audio(0, PCM, tracks=LANES[:-2])


@pytest.mark.parametrize(
    ("accepted", "size"), [(1, TRACKS_MESSAGE_BYTES), (None, AUDIO_MESSAGE_BYTES)]
)
def test_the_client_sends_the_lanes_only_if_the_welcome_accepted_them(accepted, size):
    conn = ClientConnection()
    hello = conn.hello(None, None, 1.7e9, tracks=1)
    assert '"tracks":1' in hello
    welcome = '{"type":"welcome","session_id":"abc","resume_token":"' + "t" * 22
    welcome += '","acked":-1,"epoch":0' + (',"tracks":1}' if accepted else "}")
    conn.receive_text(welcome)
    assert len(conn.frame(0, PCM, False, None, LANES)) == size
