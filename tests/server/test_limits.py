"""Per-user caps, catch-up pacing and the hello deadline."""

from __future__ import annotations

import asyncio
import time

from meetcap.protocol import CloseCode
from tests.server.conftest import FAST
from tests.server.wire import Recording, Wire, run
from tests.support.server_proc import OTHER_TOKEN


def test_connected_sessions_per_user_are_capped(meetcap_server_factory):
    server = meetcap_server_factory(**dict(FAST, max_sessions_per_user=2))

    async def scenario():
        a, b, c, bob = (Wire(server.url), Wire(server.url), Wire(server.url),
                        Wire(server.url, OTHER_TOKEN))
        for wire in (a, b, c, bob):
            await wire.__aenter__()
        await a.hello()
        await b.hello()
        refused = await c.hello()
        bob_welcome = await bob.hello()  # another user is not affected
        await a.end(-1)  # a slot frees when a session's connection goes
        await c.__aexit__()
        async with Wire(server.url) as d:
            after = await d.hello()
        for wire in (a, b, bob):
            await wire.__aexit__()
        return refused, bob_welcome, after

    refused, bob_welcome, after = run(scenario())
    assert refused.code == CloseCode.TOO_MANY_SESSIONS
    assert refused.error.code == "too_many_sessions" and refused.error.retry_after_ms > 0
    assert bob_welcome.session_id and after.session_id


def test_new_sessions_per_minute_are_capped(meetcap_server_factory):
    server = meetcap_server_factory(**dict(FAST, new_sessions_per_minute=3))

    async def scenario():
        for _ in range(3):
            async with Wire(server.url) as wire:
                await wire.hello()
                await wire.end(-1)
        async with Wire(server.url) as wire:
            return await wire.hello()

    refused = run(scenario())
    assert refused.code == CloseCode.TOO_MANY_SESSIONS
    assert 0 < refused.error.retry_after_ms <= 60_000


def test_catch_up_is_read_no_faster_than_the_configured_multiple(meetcap_server_factory):
    """A backlog is paced by slow reads (TCP backpressure), not refused."""
    server = meetcap_server_factory(catchup_x=4, realtime_slack_s=1000, flush_interval_ms=20)
    rec = Recording(seed=30)
    rec.extend(80)

    async def scenario():
        wire = await rec.open(server.url)
        started = time.monotonic()
        await rec.send_from_ack(wire)
        await wire.wait_acked(79, timeout_s=20)
        elapsed = time.monotonic() - started
        closed_early = wire.ws.close_code
        await wire.__aexit__()
        return elapsed, closed_early

    elapsed, closed_early = run(scenario())
    assert closed_early is None
    # 80 frames at 4x real time is 2 s; the pacer lets 1 s of budget (10 frames) pass at once.
    assert elapsed >= (80 - 10) * 0.1 / 4 * 0.9


def test_a_connection_that_never_says_hello_is_closed(meetcap_server_factory):
    server = meetcap_server_factory(hello_timeout_s=0.3)

    async def scenario():
        async with Wire(server.url) as wire:
            return await wire.closed(timeout_s=5)

    closed = run(scenario())
    assert closed.code == CloseCode.HELLO_REQUIRED and closed.error.code == "hello_required"


def test_quiet_connections_are_kept_alive_by_pings(meetcap_server_factory):
    """A client that sends nothing for a while but answers pings stays connected."""
    server = meetcap_server_factory(**dict(FAST, idle_timeout_s=0.3))

    async def scenario():
        async with Wire(server.url) as wire:
            await wire.hello()
            await asyncio.sleep(1.6)  # several idle periods: pings, answered by websockets
            return wire.ws.close_code, await wire.end(-1)

    close_code, ended = run(scenario())
    assert close_code is None and ended.frames == 0


def test_audio_captured_offline_before_the_session_existed_is_accepted(meetcap_server_factory):
    """hello.started_at may place frame 0 before the server created the session (the
    client captured while the server was unreachable), within --offline-grace-s."""
    server = meetcap_server_factory(realtime_slack_s=1, catchup_x=1000, offline_grace_s=30)
    rec = Recording(seed=31)
    rec.extend(150)  # 15 s of backlog, sent at once

    async def scenario():
        async with Wire(server.url) as wire:
            welcome = await wire.hello(started_at=time.time() - 20)
            for seq in range(150):
                await wire.send_frame(seq, rec.frames[seq])
            return welcome, await wire.end(149)

    _, ended = run(scenario())
    assert ended.frames == 150 and ended.sha256 == rec.sha256()


def test_a_claimed_start_beyond_the_grace_does_not_buy_more_audio(meetcap_server_factory):
    server = meetcap_server_factory(realtime_slack_s=1, catchup_x=1000, offline_grace_s=5)
    rec = Recording(seed=32)
    rec.extend(150)

    async def scenario():
        async with Wire(server.url) as wire:
            await wire.hello(started_at=time.time() - 3600)  # "an hour ago"
            try:
                for seq in range(150):
                    await wire.send_frame(seq, rec.frames[seq])
            except Exception:
                pass  # closed while sending
            return await wire.closed()

    closed = run(scenario())
    assert closed.code == CloseCode.RATE_LIMITED


async def _silent_peer(port: int, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that upgrades, says hello, then never reads or answers anything (a
    vanished laptop behind a NAT that keeps the TCP connection open)."""
    import base64
    import json
    import os
    import struct

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    hello = json.dumps({"type": "hello", "started_at": time.time()}).encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(hello))
    writer.write(struct.pack("!BB", 0x81, 0x80 | len(hello)) + mask + masked)
    await writer.drain()
    return reader, writer


def test_a_peer_that_stops_answering_is_dropped_and_frees_its_slot(meetcap_server_factory):
    from tests.support.server_proc import TOKEN

    server = meetcap_server_factory(**dict(FAST, idle_timeout_s=0.3, max_sessions_per_user=1))

    async def scenario():
        reader, writer = await _silent_peer(server.port, TOKEN)
        async with Wire(server.url) as wire:  # the silent peer holds the user's only slot
            refused = await wire.hello()
        # Ping after 0.3 s of silence, no pong within 0.3 s more: dropped, slot freed.
        await asyncio.sleep(1.5)
        async with Wire(server.url) as wire:
            welcome = await wire.hello()
            await wire.end(-1)
        writer.close()
        return refused, welcome

    refused, welcome = run(scenario())
    assert refused.code == CloseCode.TOO_MANY_SESSIONS
    assert welcome.acked == -1
