"""JSON control messages: every type round-trips; every malformed text is refused with
the code docs/protocol.md gives it."""

from __future__ import annotations

import json

import pytest

from meetcap.errors import ProtocolError
from meetcap.protocol import (
    PROTOCOL_VERSION,
    Ack,
    CloseCode,
    End,
    Ended,
    Error,
    GoingAway,
    Hello,
    Welcome,
    decode_message,
    encode_message,
)
from meetcap.protocol.messages import MAX_TEXT_BYTES

SID = "AbCdEfGhIjKlMnOpQrStUv"
TOKEN = "tOkEn_tOkEn-tOkEn-123"
SHA = "ab" * 32

MESSAGES = [
    Hello(),
    Hello(session_id=SID, resume_token=TOKEN, started_at=1.7e9, client="meetcap 0.1"),
    Welcome(SID, TOKEN, acked=-1, epoch=0),
    Welcome(SID, TOKEN, acked=41, epoch=3),
    Ack(seq=-1),
    Ack(seq=2**53),
    End(last_seq=-1),
    End(last_seq=99),
    Ended(SID, frames=100, duration_ms=10_000, sha256=SHA),
    GoingAway(retry_after_ms=1500),
    Error(code="gap", message="frame 9 skips ahead", expected=5),
    Error(code="rate_limited", message="too fast", retry_after_ms=250),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message):
    text = encode_message(message)
    assert json.loads(text)["type"] in {
        "hello", "welcome", "ack", "end", "ended", "going_away", "error"
    }
    assert decode_message(text) == message
    assert decode_message(text.encode()) == message  # bytes are accepted too


def test_encoding_omits_absent_optional_fields():
    body = json.loads(encode_message(Error(code="bad_message", message="x")))
    assert body == {"type": "error", "code": "bad_message", "message": "x"}


def test_unknown_fields_are_ignored_for_forward_compatibility():
    text = json.dumps({"type": "ack", "seq": 4, "future_field": {"a": 1}})
    assert decode_message(text) == Ack(seq=4)


def _refused(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_message(text)
    return info.value


def hello(**fields) -> str:
    body = {"type": "hello", "session_id": None, "resume_token": None, "started_at": 1.0,
            "client": "t", "version": PROTOCOL_VERSION,
            "format": {"encoding": "s16le", "sample_rate": 16000, "channels": 1, "frame_ms": 100}}
    body.update(fields)
    return json.dumps(body)


BAD = {
    "not json": "{nope",
    "not utf-8": b"\xff\xfe{",
    "json array": "[1, 2]",
    "json string": '"hello"',
    "no type": '{"seq": 1}',
    "unknown type": '{"type": "frame"}',
    "type not a string": '{"type": 7}',
    "missing field": '{"type": "ack"}',
    "missing end field": '{"type": "end"}',
    "seq is a string": '{"type": "ack", "seq": "7"}',
    "seq is a bool": '{"type": "ack", "seq": true}',
    "seq is a float": '{"type": "ack", "seq": 7.0}',
    "seq below -1": '{"type": "ack", "seq": -2}',
    "seq is infinite": '{"type": "ack", "seq": 1e400}',
    "last_seq is null": '{"type": "end", "last_seq": null}',
    "welcome epoch negative": json.dumps(
        {"type": "welcome", "session_id": SID, "resume_token": TOKEN, "acked": -1, "epoch": -1}
    ),
    "session id with a slash": hello(session_id="../etc/passwd", resume_token=TOKEN),
    "session id too long": hello(session_id="a" * 65, resume_token=TOKEN),
    "resume without token": hello(session_id=SID),
    "token too short": hello(session_id=SID, resume_token="short"),
    "token without session": hello(resume_token=TOKEN),
    "started_at a string": hello(started_at="now"),
    "started_at NaN": hello(started_at=float("nan")),
    "started_at negative": hello(started_at=-5),
    "client not a string": hello(client=3),
    "other audio format": hello(
        format={"encoding": "s16le", "sample_rate": 48000, "channels": 1, "frame_ms": 100}
    ),
    "deeply nested": "[" * 5000 + "]" * 5000,
    "over the size limit": json.dumps({"type": "ack", "seq": 1, "pad": "x" * MAX_TEXT_BYTES}),
    "error code not a string": '{"type": "error", "code": 4, "message": "m"}',
    "going_away negative": '{"type": "going_away", "retry_after_ms": -1}',
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_malformed_messages_are_bad_message(text):
    error = _refused(text)
    assert (error.code, error.name) == (CloseCode.BAD_MESSAGE, "bad_message")
    assert str(error)  # a sentence a person can read


@pytest.mark.parametrize("version", [0, 2, 99, 10**400])
def test_hello_with_another_version_is_unsupported_version(version):
    error = _refused(hello(version=version))
    assert (error.code, error.name) == (CloseCode.UNSUPPORTED_VERSION, "unsupported_version")


@pytest.mark.parametrize("version", ["1", 1.0, True, None, [1]])
def test_hello_version_that_is_not_a_json_integer_is_a_bad_message(version):
    error = _refused(hello(version=version))
    assert (error.code, error.name) == (CloseCode.BAD_MESSAGE, "bad_message")


def test_error_close_code_follows_its_name():
    assert Error(code="gap", message="").close_code == CloseCode.GAP
    assert Error(code="no_such_name", message="").close_code == CloseCode.BAD_MESSAGE
