"""Per-IP limits (issue 11): one address may hold only so many connections and make only
so many upgrade requests a second (HTTP 429 with Retry-After beyond), other addresses are
not affected, loopback is exempt by default, and nothing is kept for closed connections.
Real server, real sockets; Linux routes all of 127.0.0.0/8 to lo, so 127.0.0.2 is a
second client address."""

from __future__ import annotations

import asyncio

import pytest

from meetcap.errors import ConfigError
from meetcap.protocol import is_retryable_http
from meetcap.server import ServerConfig
from tests.server.inprocess import running
from tests.server.rawpeer import upgrade_request
from tests.server.wire import run
from tests.support.server_proc import TOKEN


async def upgrade(port: int, source: str = "127.0.0.1", token: str = TOKEN):
    """Send an upgrade from ``source``; returns (status, head, writer) - the caller keeps
    the connection open as long as it holds the writer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(upgrade_request(port, token))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    status = int(head.split(b" ", 2)[1])
    if status != 101:  # the body says why, in words
        length = next(
            int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        head += await asyncio.wait_for(reader.readexactly(length), 5)
    return status, head, writer


def _retry_after(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"retry-after:"):
            return int(line.split(b":", 1)[1])
    raise AssertionError(f"no Retry-After in {head!r}")


def test_one_address_holds_at_most_max_connections(tmp_path):
    async def scenario():
        async with running(
            tmp_path, max_connections_per_ip=3, handshakes_per_ip_per_s=0, ip_limits_exempt=()
        ) as server:
            held = [await upgrade(server.port) for _ in range(3)]
            over = await upgrade(server.port)
            other = await upgrade(server.port, source="127.0.0.2")
            held[0][2].transport.abort()
            over[2].transport.abort()
            await asyncio.sleep(0.3)  # the server sees the closes
            again = await upgrade(server.port)
            for _, _, writer in [*held[1:], other, again]:
                writer.transport.abort()
            await asyncio.sleep(0.3)
            return [h[0] for h in held], over, other[0], again[0], dict(server.ip_limits.open)

    held, over, other, again, left = run(scenario())
    assert held == [101, 101, 101]
    status, head, _ = over
    assert status == 429 and is_retryable_http(status)
    assert _retry_after(head) == 5 and b"too many connections from" in head
    assert other == 101  # another address is not affected
    assert again == 101  # a slot frees when a connection closes
    assert left == {}  # nothing kept for closed connections


def test_handshakes_per_address_are_rate_limited_refused_ones_included(tmp_path):
    async def scenario():
        async with running(
            tmp_path, max_connections_per_ip=0, handshakes_per_ip_per_s=1,
            handshake_burst_per_ip=5, ip_limits_exempt=(),
        ) as server:
            statuses, heads = [], []
            for _ in range(7):  # a token guesser: every attempt counts
                status, head, writer = await upgrade(server.port, token="wrong-token-0000")
                statuses.append(status)
                heads.append(head)
                writer.transport.abort()
            other, _, writer = await upgrade(server.port, source="127.0.0.2")
            writer.transport.abort()
            await asyncio.sleep(1.1)  # one token refilled
            later, _, writer = await upgrade(server.port)
            writer.transport.abort()
            return statuses, heads, other, later

    statuses, heads, other, later = run(scenario())
    assert statuses == [401] * 5 + [429, 429]
    assert _retry_after(heads[5]) == 1 and b"too many connection attempts" in heads[5]
    assert other == 101 and later == 101


def test_loopback_is_exempt_by_default(tmp_path):
    async def scenario():
        async with running(tmp_path, max_connections_per_ip=2, handshake_burst_per_ip=2) as server:
            results = [await upgrade(server.port) for _ in range(20)]
            for _, _, writer in results:
                writer.transport.abort()
            return [status for status, _, _ in results]

    assert run(scenario()) == [101] * 20


def test_limits_are_checked_when_configured():
    with pytest.raises(ConfigError, match="max_connections_per_ip"):
        ServerConfig(max_connections_per_ip=-1)
    with pytest.raises(ConfigError, match="not a network"):
        ServerConfig(ip_limits_exempt=("localhost",))


def test_half_sent_requests_beyond_the_limit_are_refused_at_accept(tmp_path):
    """A slowloris address: its sockets with half-sent requests count; those beyond the
    limit get 429 at once instead of holding a socket until the 10 s open timeout."""

    async def scenario():
        async with running(
            tmp_path, max_connections_per_ip=3, handshakes_per_ip_per_s=0, ip_limits_exempt=()
        ) as server:
            peers = []
            for _ in range(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(b"GET /v1/stream HTTP/1.1\r\nHost: x\r\n")  # never finished
                await writer.drain()
                peers.append((reader, writer))
            answers = []
            for reader, _ in peers:
                try:
                    answers.append(await asyncio.wait_for(reader.read(200), 0.5))
                except asyncio.TimeoutError:
                    answers.append(None)  # still held, waiting for the rest
            for _, writer in peers:
                writer.transport.abort()
            return answers

    answers = run(scenario())
    assert answers[:3] == [None, None, None]
    for answer in answers[3:]:
        assert answer is not None and answer.startswith(b"HTTP/1.1 429 ")
        assert b"Retry-After: 5" in answer
