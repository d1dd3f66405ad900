"""The two state machines, fed bytes only: order rules, duplicates, gaps, end."""

from __future__ import annotations

import json

import pytest

from meetcap.protocol import (
    Ack,
    ClientConnection,
    CloseCode,
    DuplicateReceived,
    End,
    Ended,
    EndReceived,
    Error,
    FrameReceived,
    GoingAway,
    Hello,
    HelloReceived,
    MessageReceived,
    ProtocolViolation,
    ServerConnection,
    Welcome,
    encode_audio,
    encode_message,
)

PCM = b"\x01\x02" * 1600
SID = "AbCdEfGhIjKlMnOpQrStUv"
TOKEN = "tOkEn_tOkEn-tOkEn-123"
HELLO = encode_message(Hello(started_at=1.0))


def violation(events, code: CloseCode) -> ProtocolViolation:
    assert len(events) == 1 and isinstance(events[0], ProtocolViolation), events
    event = events[0]
    assert event.close_code == code
    body = json.loads(event.error_text)  # the JSON error the server sends before closing
    assert body["type"] == "error" and body["code"] == event.error.name and body["message"]
    return event


def streaming_server(acked: int = -1) -> ServerConnection:
    server = ServerConnection()
    (event,) = server.receive_text(HELLO)
    assert isinstance(event, HelloReceived) and event.hello.session_id is None
    welcome = json.loads(server.accept(Welcome(SID, TOKEN, acked=acked, epoch=0)))
    assert welcome["type"] == "welcome" and welcome["acked"] == acked
    return server


def test_frames_in_order_are_received():
    server = streaming_server()
    for seq in range(3):
        (event,) = server.receive_binary(encode_audio(seq, PCM, speech=seq == 1))
        assert isinstance(event, FrameReceived) and event.frame.seq == seq
        assert event.frame.speech == (seq == 1)


def test_resume_starts_after_the_ack():
    server = streaming_server(acked=41)
    (event,) = server.receive_binary(encode_audio(42, PCM))
    assert isinstance(event, FrameReceived)


def test_a_frame_already_received_is_a_duplicate():
    server = streaming_server(acked=9)
    (event,) = server.receive_binary(encode_audio(9, PCM))
    assert event == DuplicateReceived(9)
    (event,) = server.receive_binary(encode_audio(0, PCM))
    assert event == DuplicateReceived(0)
    assert isinstance(server.receive_binary(encode_audio(10, PCM))[0], FrameReceived)


def test_a_gap_is_refused_with_the_expected_seq():
    server = streaming_server(acked=4)
    event = violation(server.receive_binary(encode_audio(6, PCM)), CloseCode.GAP)
    assert json.loads(event.error_text)["expected"] == 5
    assert server.receive_binary(encode_audio(5, PCM)) == []  # closed: nothing more counts


def test_bad_checksum_is_refused():
    server = streaming_server()
    data = bytearray(encode_audio(0, PCM))
    data[100] ^= 1
    violation(server.receive_binary(bytes(data)), CloseCode.BAD_CHECKSUM)


def test_a_frame_before_hello_is_hello_required():
    violation(ServerConnection().receive_binary(encode_audio(0, PCM)), CloseCode.HELLO_REQUIRED)


@pytest.mark.parametrize("text", [encode_message(End(last_seq=-1)), encode_message(Ack(seq=1))])
def test_a_control_message_before_hello_is_hello_required(text):
    violation(ServerConnection().receive_text(text), CloseCode.HELLO_REQUIRED)


def test_a_frame_while_hello_is_checked_is_hello_required():
    server = ServerConnection()
    server.receive_text(HELLO)
    violation(server.receive_binary(encode_audio(0, PCM)), CloseCode.HELLO_REQUIRED)


def test_a_second_hello_is_hello_required():
    server = streaming_server()
    violation(server.receive_text(HELLO), CloseCode.HELLO_REQUIRED)


def test_malformed_first_message_is_bad_message():
    violation(ServerConnection().receive_text("{"), CloseCode.BAD_MESSAGE)


def test_hello_with_another_version_is_unsupported_version():
    text = encode_message(Hello()).replace('"version":1', '"version":9')
    violation(ServerConnection().receive_text(text), CloseCode.UNSUPPORTED_VERSION)


@pytest.mark.parametrize(
    "message", [Ack(seq=0), Welcome(SID, TOKEN, -1, 0), GoingAway(retry_after_ms=1)],
    ids=lambda m: type(m).__name__,
)
def test_server_messages_from_a_client_are_bad_message(message):
    server = streaming_server()
    violation(server.receive_text(encode_message(message)), CloseCode.BAD_MESSAGE)


def test_end_after_the_last_frame_is_received():
    server = streaming_server()
    server.receive_binary(encode_audio(0, PCM))
    server.receive_binary(encode_audio(1, PCM))
    assert server.receive_text(encode_message(End(last_seq=1))) == [EndReceived(1)]


def test_end_of_an_empty_session():
    server = streaming_server()
    assert server.receive_text(encode_message(End(last_seq=-1))) == [EndReceived(-1)]


def test_end_claiming_frames_not_received_is_a_gap():
    server = streaming_server()
    server.receive_binary(encode_audio(0, PCM))
    event = violation(server.receive_text(encode_message(End(last_seq=5))), CloseCode.GAP)
    assert json.loads(event.error_text)["expected"] == 1


def test_frames_after_end_are_bad_message():
    server = streaming_server()
    server.receive_text(encode_message(End(last_seq=-1)))
    violation(server.receive_binary(encode_audio(0, PCM)), CloseCode.BAD_MESSAGE)


def test_a_second_end_is_bad_message():
    server = streaming_server()
    server.receive_text(encode_message(End(last_seq=-1)))
    violation(server.receive_text(encode_message(End(last_seq=-1))), CloseCode.BAD_MESSAGE)


def test_refuse_builds_the_error_with_extras():
    server = ServerConnection()
    server.receive_text(HELLO)
    event = server.refuse(CloseCode.TOO_MANY_SESSIONS, "cap", retry_after_ms=900)
    assert event.close_code == 4010
    assert json.loads(event.error_text) == {
        "type": "error", "code": "too_many_sessions", "message": "cap", "retry_after_ms": 900,
    }


def test_accept_needs_a_pending_hello():
    with pytest.raises(RuntimeError):
        ServerConnection().accept(Welcome(SID, TOKEN, -1, 0))


def test_going_away_and_ended_texts():
    server = streaming_server()
    assert json.loads(server.going_away(700)) == {
        "type": "going_away", "retry_after_ms": 700, "reason": "server restart"
    }
    ended = Ended(SID, 0, 0, "00" * 32)
    assert json.loads(streaming_server().ended(ended))["type"] == "ended"


# ----------------------------------------------------------------------- client side


def welcomed_client(acked: int = -1) -> ClientConnection:
    client = ClientConnection()
    assert json.loads(client.hello(None, None, 5.0))["type"] == "hello"
    (event,) = client.receive_text(encode_message(Welcome(SID, TOKEN, acked, 1)))
    assert isinstance(event, MessageReceived)
    return client


def test_client_frames_only_after_welcome():
    client = ClientConnection()
    with pytest.raises(RuntimeError):
        client.frame(0, PCM)
    client = welcomed_client()
    assert len(client.frame(0, PCM)) == 3216


def test_client_acks_are_cumulative_and_never_go_back():
    client = welcomed_client()
    for seq in range(5):
        client.frame(seq, PCM)
    client.receive_text(encode_message(Ack(seq=3)))
    client.receive_text(encode_message(Ack(seq=1)))
    assert client.acked == 3


def test_client_refuses_an_ack_for_a_frame_never_sent():
    client = welcomed_client(acked=2)
    client.frame(3, PCM)
    (event,) = client.receive_text(encode_message(Ack(seq=4)))
    assert isinstance(event, ProtocolViolation) and event.close_code == CloseCode.BAD_MESSAGE


def test_client_refuses_a_second_welcome_and_binary_messages():
    client = welcomed_client()
    (event,) = client.receive_text(encode_message(Welcome(SID, TOKEN, -1, 2)))
    assert isinstance(event, ProtocolViolation)
    (event,) = welcomed_client().receive_binary(b"\0")
    assert isinstance(event, ProtocolViolation)


@pytest.mark.parametrize(
    "message",
    [Ended(SID, 0, 0, "00" * 32), Error(code="gap", message="m", expected=0),
     GoingAway(retry_after_ms=0)],
    ids=lambda m: type(m).__name__,
)
def test_client_final_messages_close_it(message):
    client = welcomed_client()
    (event,) = client.receive_text(encode_message(message))
    assert event == MessageReceived(message)
    assert client.state.value == "closed"


def test_client_refuses_a_client_message_from_the_server():
    (event,) = welcomed_client().receive_text(encode_message(End(last_seq=0)))
    assert isinstance(event, ProtocolViolation)
