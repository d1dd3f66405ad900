"""hello.create and error.held as a real meetcap-server answers them on the wire
(docs/protocol.md 4, "Creating under an id the client chose" and "A stale token"),
over a plain WebSocket client: the rules a client written from the spec relies on."""

from __future__ import annotations

import json
import secrets

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from meetcap.protocol.audio import encode_audio
from tests.client.frames import synthetic_frames
from tests.support.server_proc import OTHER_TOKEN, TOKEN


def _hello(session_id: str | None, token: str | None, **extra) -> str:
    return json.dumps({"type": "hello", "version": 1, "session_id": session_id,
                       "resume_token": token, **extra})


def _exchange(url: str, auth: str, hello: str, frames=()) -> tuple[dict, int | None]:
    """Send ``hello`` (and ``frames`` after a welcome, waiting for their ack); return the
    first answer and the close code (None if the connection was still open)."""
    with connect(url, additional_headers={"Authorization": f"Bearer {auth}"}) as ws:
        ws.send(hello)
        answer = json.loads(ws.recv(timeout=10))
        try:
            if answer["type"] == "welcome":
                first = answer["acked"] + 1
                for frame in frames:
                    ws.send(encode_audio(first + frame.seq, frame.pcm))
                while frames:
                    message = json.loads(ws.recv(timeout=10))
                    if message.get("seq") == first + len(frames) - 1:
                        break
                return answer, None
            ws.recv(timeout=10)  # the close that follows the error
        except ConnectionClosed as closed:
            return answer, closed.rcvd.code if closed.rcvd else None
        return answer, None


def test_create_makes_the_session_under_the_clients_id_and_a_retry_resumes_it(
    meetcap_server,
):
    url = meetcap_server.url
    session_id, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    create = _hello(session_id, token, create=True)

    welcome, _ = _exchange(url, TOKEN, create)
    assert welcome["type"] == "welcome", welcome
    assert (welcome["session_id"], welcome["resume_token"]) == (session_id, token)
    assert (welcome["acked"], welcome["epoch"]) == (-1, 0)

    # The same hello again (its welcome lost): the same session, resumed, not a second.
    again, _ = _exchange(url, TOKEN, create)
    assert again["type"] == "welcome" and again["session_id"] == session_id, again
    assert again["epoch"] == 1 and again["resume_token"] != token
    sessions = [p.stem for p in meetcap_server.data_dir.glob("*.wav")]
    assert sessions == [session_id]

    # The newest token used with three frames: the client's own token is dead now, and
    # the refusal says how many frames the session holds.
    frames = list(synthetic_frames(3, seed=31))
    _, _ = _exchange(url, TOKEN, _hello(session_id, again["resume_token"]), frames)
    refused, code = _exchange(url, TOKEN, create)
    assert code == 4006 and refused["code"] == "bad_resume_token", refused
    assert refused["held"] == 3


def test_create_under_another_users_session_id_is_forbidden_and_takes_nothing_over(
    meetcap_server,
):
    url = meetcap_server.url
    session_id, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    welcome, _ = _exchange(url, TOKEN, _hello(session_id, token, create=True))
    assert welcome["type"] == "welcome"
    refused, code = _exchange(url, OTHER_TOKEN, _hello(session_id, token, create=True))
    assert code == 4007 and refused["code"] == "forbidden", refused
    assert "held" not in refused


@pytest.mark.parametrize("hello", [
    _hello(None, None, create=True),
    _hello("abcdefgh", "0123456789abcdef", create=1),
])
def test_a_malformed_create_is_a_bad_message(meetcap_server, hello):
    refused, code = _exchange(meetcap_server.url, TOKEN, hello)
    assert code == 4000 and refused["code"] == "bad_message", refused
