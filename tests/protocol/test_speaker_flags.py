"""The speakers extension in the codec and the state machines (docs/protocol.md 3.4)."""

from __future__ import annotations

import pytest

from meetcap.errors import ProtocolError
from meetcap.frames import SPEAKER_BOTH, SPEAKER_NOBODY, SPEAKER_OTHERS, SPEAKER_YOU
from meetcap.protocol import ClientConnection, Hello, Welcome, decode_audio, encode_message
from meetcap.protocol.audio import encode_audio
from meetcap.protocol.connection import FrameReceived, ProtocolViolation, ServerConnection

PCM = bytes(range(256)) * 12 + bytes(128)


@pytest.mark.parametrize("speaker", [SPEAKER_NOBODY, SPEAKER_YOU, SPEAKER_OTHERS, SPEAKER_BOTH])
def test_who_spoke_round_trips_in_bits_1_and_2(speaker):
    data = encode_audio(2, PCM, speaker != 0, speaker)
    assert data[3] == (speaker << 1) | (speaker != 0)
    message = decode_audio(data, speakers=True)
    assert (message.speaker, message.speech, message.flags) == (speaker, speaker != 0, data[3])


def test_the_documented_example_header():
    assert encode_audio(2, PCM, True, SPEAKER_YOU)[:12].hex(" ") == (
        "4d 43 01 03 00 00 00 00 00 00 00 02"
    )


def test_without_the_extension_the_bits_are_refused_and_not_decoded():
    with pytest.raises(ProtocolError) as refused:
        decode_audio(encode_audio(0, PCM, True, SPEAKER_OTHERS))
    assert refused.value.code == 4000 and "speakers extension" in str(refused.value)
    assert decode_audio(encode_audio(0, PCM, True)).speaker is None
    with pytest.raises(ProtocolError):  # bits 3-7 stay unknown even with it
        decode_audio(bytes([*encode_audio(0, PCM)[:3], 0x08]) + encode_audio(0, PCM)[4:],
                     speakers=True)


def _client_after(welcome: Welcome) -> ClientConnection:
    client = ClientConnection()
    client.hello(None, None, 1.0, speakers=1)
    client.receive_text(encode_message(welcome))
    return client


def test_the_client_sends_the_bits_only_when_the_welcome_accepted_them():
    accepted = _client_after(Welcome("s1", "t" * 22, acked=-1, epoch=0, speakers=1))
    declined = _client_after(Welcome("s1", "t" * 22, acked=-1, epoch=0))  # an old server
    assert accepted.frame(0, PCM, True, SPEAKER_YOU)[3] == 0x03
    assert declined.frame(0, PCM, True, SPEAKER_YOU)[3] == 0x01


def test_the_server_takes_the_bits_only_on_a_connection_that_accepted_them():
    for accept, expected in ((1, FrameReceived), (None, ProtocolViolation)):
        server = ServerConnection()
        server.receive_text(encode_message(Hello(speakers=1)))
        server.accept(Welcome("s1", "t" * 22, acked=-1, epoch=0, speakers=accept))
        (event,) = server.receive_binary(encode_audio(0, PCM, True, SPEAKER_BOTH))
        assert isinstance(event, expected)
        if accept:
            assert event.frame.speaker == SPEAKER_BOTH
