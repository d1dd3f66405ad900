"""Abuse is refused with its documented code, and a well-behaved session on the same
server (another user, streaming at the same time) loses nothing."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from meetcap.protocol import CloseCode, Hello, encode_audio, encode_message
from tests.server.conftest import FAST
from tests.server.wire import Closed, Recording, Wire, make_pcm, run
from tests.support.server_proc import OTHER_TOKEN, TOKEN, ServerProcess

PCM = make_pcm(0)
BYSTANDER_FRAMES = 40


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(
        tmp_path_factory.mktemp("security-data"),
        dict(FAST, max_sessions_per_user=50, new_sessions_per_minute=1000,
             allowed_origin="https://app.example"),
    ).start()
    yield proc
    proc.kill()


async def with_bystander(url: str, abuse: Callable[[], Awaitable[object]]) -> object:
    """Run ``abuse`` while bob streams a session; bob's stored audio must be exact."""
    rec = Recording(seed=77)
    rec.extend(BYSTANDER_FRAMES)
    wire = await rec.open(url, OTHER_TOKEN)
    sender = asyncio.create_task(rec.send_from_ack(wire, pace_s=0.01))
    try:
        result = await abuse()
    finally:
        await sender
    ended = await wire.end(BYSTANDER_FRAMES - 1)
    await wire.__aexit__()
    assert ended.frames == BYSTANDER_FRAMES and ended.sha256 == rec.sha256(), "bystander lost audio"
    return result


async def new_session(url: str, frames: int = 5) -> Recording:
    rec = Recording(seed=5)
    rec.extend(frames)
    wire = await rec.open(url)
    await rec.send_from_ack(wire)
    await wire.wait_acked(frames - 1)
    await wire.__aexit__()
    return rec


async def http_status(url: str, headers: dict[str, str]) -> int:
    try:
        async with connect(url, additional_headers=headers, open_timeout=5):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def raw_close(url: str, *messages: bytes | str, token: str = TOKEN) -> Closed:
    async with Wire(url, token) as wire:
        for message in messages:
            await wire.send_raw(message)
        return await wire.closed()


HELLO = encode_message(Hello(started_at=time.time()))


def hello_with(**fields: object) -> str:
    body = json.loads(HELLO)
    body.update(fields)
    return json.dumps(body)


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({"Authorization": "Bearer wrong-token-0000"}, "/v1/stream", 401),
        ({}, "/v1/stream", 401),
        ({"Authorization": f"Basic {TOKEN}"}, "/v1/stream", 401),
        ({"Authorization": f"Bearer {TOKEN}"}, "/v2/stream", 404),
        ({"Authorization": f"Bearer {TOKEN}", "Origin": "https://evil.example"}, "/v1/stream", 403),
    ],
    ids=["wrong token", "no token", "not bearer", "wrong path", "origin not allowed"],
)
def test_handshake_refusals(server, headers, path, status):
    url = server.url.replace("/v1/stream", path)
    assert run(with_bystander(server.url, lambda: http_status(url, headers))) == status


def test_an_allowed_origin_and_a_desktop_client_without_origin_connect(server):
    ok = {"Authorization": f"Bearer {TOKEN}", "Origin": "https://app.example"}
    assert run(http_status(server.url, ok)) == 101
    assert run(http_status(server.url, {"Authorization": f"Bearer {TOKEN}"})) == 101


def test_another_users_session_is_forbidden(server):
    async def abuse():
        rec = await new_session(server.url)
        async with Wire(server.url, OTHER_TOKEN) as wire:  # bob, with alice's id and token
            return await wire.hello(rec.session_id, rec.token)

    closed = run(with_bystander(server.url, abuse))
    assert closed.code == CloseCode.FORBIDDEN and closed.error.code == "forbidden"


def test_an_unknown_session_is_refused(server):
    async def abuse():
        async with Wire(server.url) as wire:
            return await wire.hello("NoSuchSession0000000000", "t" * 22)

    assert run(with_bystander(server.url, abuse)).code == CloseCode.UNKNOWN_SESSION


def test_a_token_whose_successor_was_used_is_dead(server):
    async def abuse():
        rec = await new_session(server.url)
        t0 = rec.token
        wire = await rec.open(server.url)  # resumes with t0, gets t1
        await wire.__aexit__()
        wire = await rec.open(server.url)  # resumes with t1: t0 is now dead
        await wire.__aexit__()
        async with Wire(server.url) as stale:
            return await stale.hello(rec.session_id, t0)

    closed = run(with_bystander(server.url, abuse))
    assert closed.code == CloseCode.BAD_RESUME_TOKEN and closed.error.code == "bad_resume_token"


def test_a_lost_welcome_does_not_lose_the_session(server):
    """The token rotated in a welcome the client never read: its old token still works."""
    async def scenario():
        rec = await new_session(server.url)
        held = rec.token
        async with Wire(server.url) as lost:
            welcome = await lost.hello(rec.session_id, held)  # the client "never reads" it
            assert welcome.resume_token != held
        async with Wire(server.url) as retry:
            return await retry.hello(rec.session_id, held)

    welcome = run(scenario())
    assert welcome.acked == 4  # accepted, with the server's ack


def test_two_resumes_at_once_leave_exactly_one_attached(server):
    async def abuse():
        rec = await new_session(server.url)
        a, b = Wire(server.url), Wire(server.url)
        await a.__aenter__()
        await b.__aenter__()
        results = await asyncio.gather(
            a.hello(rec.session_id, rec.token), b.hello(rec.session_id, rec.token)
        )
        await asyncio.sleep(0.5)  # let a takeover close the loser
        alive = [w for w in (a, b) if w.ws.close_code is None and w.welcome is not None]
        losers = [w for w in (a, b) if w not in alive]
        codes = [(await w.closed()).code for w in losers]
        # The survivor really owns the session: it can finish it.
        if len(alive) == 1:
            survivor = alive[0]
            rec.session_id, rec.token = survivor.welcome.session_id, survivor.welcome.resume_token
            await rec.send_from_ack(survivor)
            ended = await survivor.end(4)
        else:
            ended = None
        for w in (a, b):
            await w.__aexit__()
        return results, len(alive), codes, ended, rec

    results, alive, codes, ended, rec = run(with_bystander(server.url, abuse))
    assert alive == 1, results
    assert codes and codes[0] in (CloseCode.TAKEN_OVER, CloseCode.BAD_RESUME_TOKEN)
    assert ended is not None and ended.sha256 == rec.sha256()


ABUSE = {
    "oversize binary": ((encode_audio(0, PCM) + b"x",), CloseCode.MESSAGE_TOO_BIG, None),
    "oversize text": (("x" * 5000,), CloseCode.MESSAGE_TOO_BIG, None),
    "bad json": (("{nope",), CloseCode.BAD_MESSAGE, "bad_message"),
    "unknown type": (('{"type":"frame"}',), CloseCode.BAD_MESSAGE, "bad_message"),
    "missing field": (('{"type":"end"}',), CloseCode.BAD_MESSAGE, "bad_message"),
    "wrong field type": ((hello_with(client=5),), CloseCode.BAD_MESSAGE, "bad_message"),
    "bad version": ((hello_with(version=7),), CloseCode.UNSUPPORTED_VERSION,
                    "unsupported_version"),
    "frame before hello": ((encode_audio(0, PCM),), CloseCode.HELLO_REQUIRED, "hello_required"),
    "end before hello": (('{"type":"end","last_seq":-1}',), CloseCode.HELLO_REQUIRED,
                         "hello_required"),
    "second hello": ((HELLO, HELLO), CloseCode.HELLO_REQUIRED, "hello_required"),
    "bad checksum": ((HELLO, encode_audio(0, PCM)[:-1] + b"\x00"), CloseCode.BAD_CHECKSUM,
                     "bad_checksum"),
    "bad magic": ((HELLO, b"XX" + encode_audio(0, PCM)[2:]), CloseCode.BAD_MESSAGE, "bad_message"),
    "gap": ((HELLO, encode_audio(5, PCM)), CloseCode.GAP, "gap"),
    "server message from client": ((HELLO, '{"type":"ack","seq":0}'), CloseCode.BAD_MESSAGE,
                                   "bad_message"),
}


@pytest.mark.parametrize(("messages", "code", "name"), ABUSE.values(), ids=ABUSE.keys())
def test_malformed_input_is_closed_with_its_code(server, messages, code, name):
    closed = run(with_bystander(server.url, lambda: raw_close(server.url, *messages)))
    assert closed.code == code
    if name is not None:  # 1009 comes from the WebSocket layer, without a JSON error
        assert closed.error is not None and closed.error.code == name and closed.error.message


def test_a_flood_faster_than_real_time_is_rate_limited(meetcap_server_factory):
    server = meetcap_server_factory(realtime_slack_s=1.0, catchup_x=1000)

    async def bystander_at_real_time():
        rec = Recording(seed=78)
        rec.extend(20)
        wire = await rec.open(server.url, OTHER_TOKEN)
        await rec.send_from_ack(wire, pace_s=0.1)  # exactly real time
        ended = await wire.end(19)
        await wire.__aexit__()
        return ended.sha256 == rec.sha256()

    async def flood():
        rec = Recording(seed=79)
        rec.extend(200)  # 20 s of audio, sent at once
        wire = await rec.open(server.url)
        try:
            await rec.send_from_ack(wire)
        except Exception:
            pass  # the server may close while we still send
        closed = await wire.closed()
        await wire.__aexit__()
        return closed

    async def scenario():
        return await asyncio.gather(bystander_at_real_time(), flood())

    bystander_ok, closed = run(scenario())
    assert bystander_ok
    assert closed.code == CloseCode.RATE_LIMITED and closed.error.code == "rate_limited"
    assert closed.error.retry_after_ms > 0
    assert "ahead of real time" in closed.error.message


def test_the_server_survives_garbage_and_keeps_serving(server):
    async def garbage_then_session():
        for data in (b"\x00" * 10, "null", "[]", '{"type":null}'):
            await raw_close(server.url, data)
        rec = await new_session(server.url, frames=3)
        return rec

    assert run(garbage_then_session()).session_id is not None
