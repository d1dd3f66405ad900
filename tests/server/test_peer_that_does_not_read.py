"""A peer that makes the server owe it data and never reads it (issue 11, finding 1).

The attack: say hello, keep sending audio (so the keepalive never fires), flood pings
and never read. Every ping owes a pong; before the fix the server buffered them all
(+33.5 MB for 300,000 pings). Now every connection's unsent data is bounded and such a
peer is closed with ``not_reading`` (4013), while other sessions stream on untouched.
"""

from __future__ import annotations

import asyncio
import json
import time

import psutil

from meetcap.protocol import CloseCode, encode_audio
from tests.server.conftest import FAST
from tests.server.rawpeer import OP_BINARY, OP_PING, RawPeer, client_frame, parse_server_frames
from tests.server.test_security import with_bystander
from tests.server.wire import Wire, make_pcm, run
from tests.support.server_proc import TOKEN

PINGS = 300_000
PINGS_PER_WRITE = 1_000
RSS_GROWTH_LIMIT = 12 * 1024 * 1024  # unbounded: ~34 MB for 300,000 pings


async def flood(port: int, rss: psutil.Process) -> tuple[RawPeer, int, int, bool]:
    """Hello, then pings as fast as the server takes them, a frame every 100 ms, never
    reading. Returns the peer, pings sent, the server's RSS growth, and whether the
    server stopped taking data."""
    peer = await RawPeer.connect(port, TOKEN)
    await peer.hello()
    await asyncio.sleep(0.2)
    before = peak = rss.memory_info().rss
    burst = client_frame(OP_PING, b"p" * 125, mask=b"\x01\x02\x03\x04") * PINGS_PER_WRITE
    pcm = make_pcm(0)
    sent, seq, stalled = 0, 0, False
    started = next_frame = time.monotonic()
    while sent < PINGS and time.monotonic() - started < 30:
        if time.monotonic() >= next_frame:  # audio keeps flowing: no keepalive ping
            peer.writer.write(client_frame(OP_BINARY, encode_audio(seq, pcm)))
            seq, next_frame = seq + 1, next_frame + 0.1
        peer.writer.write(burst)
        try:
            await asyncio.wait_for(peer.writer.drain(), 1.0)
        except asyncio.TimeoutError:
            stalled = True  # the server stopped reading us
            break
        sent += PINGS_PER_WRITE
        peak = max(peak, rss.memory_info().rss)
    peak = max(peak, rss.memory_info().rss)
    return peer, sent, peak - before, stalled


def test_a_ping_flood_that_is_never_read_is_bounded_and_closed_with_not_reading(
    meetcap_server_factory,
):
    server = meetcap_server_factory(**FAST)
    rss = psutil.Process(server.proc.pid)

    async def abuse():
        peer, sent, growth, stalled = await flood(server.port, rss)
        # Only now does the peer read: everything the server still had for it, then
        # the error and the close frame (or nothing, if the server gave up on it).
        frames = parse_server_frames(await peer.read_all(timeout_s=10))
        peer.abort()
        return sent, growth, stalled, frames

    sent, growth, stalled, frames = run(with_bystander(server.url, abuse), timeout_s=120)
    assert growth < RSS_GROWTH_LIMIT, (
        f"server RSS grew by {growth / 1e6:.1f} MB for {sent:,} unread pings"
    )
    assert stalled and sent < PINGS, "the server kept reading a peer that does not read"
    assert frames.close_code == CloseCode.NOT_READING == 4013, frames.close_code
    error = json.loads(frames.texts[-1])
    assert error["type"] == "error" and error["code"] == "not_reading" and error["message"]
    assert "not_reading (4013)" in server.log_text()


def test_a_peer_that_never_reads_at_all_is_dropped_and_frees_its_slot(meetcap_server_factory):
    """The peer never reads even the close: the server drops the TCP connection after
    5 s, and the user's only session slot is free again."""
    server = meetcap_server_factory(**dict(FAST, max_sessions_per_user=1))
    rss = psutil.Process(server.proc.pid)

    async def scenario():
        peer, _sent, growth, stalled = await flood(server.port, rss)
        deadline = time.monotonic() + 15
        while True:  # the slot frees once the server has dropped the peer
            async with Wire(server.url) as wire:
                result = await wire.hello()
                if not hasattr(result, "code"):
                    await wire.end(-1)
                    break
                assert result.code == CloseCode.TOO_MANY_SESSIONS
            assert time.monotonic() < deadline, "the peer that never reads still holds its slot"
            await asyncio.sleep(0.5)
        peer.abort()
        return growth, stalled

    growth, stalled = run(scenario(), timeout_s=120)
    assert growth < RSS_GROWTH_LIMIT and stalled
