"""The transcript extension's messages: round trips, validation, and old peers."""

from __future__ import annotations

import json

import pytest

from meetcap.errors import ProtocolError
from meetcap.protocol import ClientConnection, Hello, Transcript, TranscriptStatus
from meetcap.protocol.connection import MessageReceived
from meetcap.protocol.messages import decode_message, encode_message


def test_hello_carries_the_transcript_request_and_old_hellos_default_to_none():
    text = ClientConnection().hello(None, None, 1.0, transcript=True, transcript_from=7)
    hello = decode_message(text)
    assert isinstance(hello, Hello) and hello.transcript is True and hello.transcript_from == 7
    old = json.loads(text)
    del old["transcript"], old["transcript_from"]
    hello = decode_message(json.dumps(old))
    assert hello.transcript is False and hello.transcript_from == 0


@pytest.mark.parametrize("field,value", [
    ("transcript", 1), ("transcript", "yes"), ("transcript_from", -1), ("transcript_from", 1.5),
])
def test_bad_transcript_fields_in_hello_are_refused(field, value):
    body = json.loads(ClientConnection().hello(None, None, 1.0))
    body[field] = value
    with pytest.raises(ProtocolError) as info:
        decode_message(json.dumps(body))
    assert info.value.name == "bad_message" and field in str(info.value)


def test_transcript_messages_round_trip_and_are_checked():
    segment = Transcript(id=3, start=1.5, end=4.2, text="hello there", final=True, speaker=None)
    assert decode_message(encode_message(segment)) == segment
    status = TranscriptStatus(lag_s=2.5, next_id=4, complete=True)
    assert decode_message(encode_message(status)) == status
    body = {"type": "transcript", "id": 0, "start": -1, "end": 1, "text": "x", "final": True}
    with pytest.raises(ProtocolError):
        decode_message(json.dumps(body))
    body = {"type": "transcript_status", "lag_s": float("nan"), "next_id": 0}
    with pytest.raises(ProtocolError):
        decode_message(json.dumps(body).replace("NaN", "NaN"))


def test_a_client_accepts_transcript_messages_even_after_ended():
    client = ClientConnection()
    client.receive_text(json.dumps({
        "type": "ended", "session_id": "abc", "frames": 0, "duration_ms": 0, "sha256": "0" * 64,
    }))
    events = client.receive_text(json.dumps({
        "type": "transcript", "id": 0, "start": 0.0, "end": 1.0, "text": "hi", "final": True,
        "speaker": None, "minor": True,
    }))
    assert len(events) == 1 and isinstance(events[0], MessageReceived)
    assert events[0].message == Transcript(0, 0.0, 1.0, "hi", True, None, True)
