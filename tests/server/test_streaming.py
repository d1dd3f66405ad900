"""A session from hello to ended against a real meetcap-server process: what is stored
is exactly what was sent, in one gapless WAV, however the connection came and went."""

from __future__ import annotations

import asyncio
import hashlib
import json

from meetcap.protocol import CloseCode
from tests.server.wire import Recording, Wire, make_pcm, run, wav_pcm


def stored(server, session_id: str) -> tuple[bytes, dict]:
    sidecar = json.loads((server.data_dir / f"{session_id}.json").read_text())
    return wav_pcm(server.data_dir / f"{session_id}.wav"), sidecar


def test_a_session_is_stored_as_one_wav_equal_to_the_sent_audio(fast_server):
    rec = Recording(seed=1)
    rec.extend(40)

    async def scenario():
        wire = await rec.open(fast_server.url)
        assert (wire.welcome.acked, wire.welcome.epoch) == (-1, 0)
        await rec.send_from_ack(wire)
        await wire.wait_acked(39)
        ended = await wire.end(39)
        closed = await wire.closed()
        await wire.__aexit__()
        return ended, closed

    ended, closed = run(scenario())
    # A graceful stop waits for every connection to detach: the sidecar must still say
    # finished afterwards (detaching must not overwrite the end's sidecar).
    assert fast_server.terminate() == 0
    assert closed.code == CloseCode.NORMAL
    assert (ended.session_id, ended.frames, ended.duration_ms) == (rec.session_id, 40, 4000)
    assert ended.sha256 == rec.sha256()
    pcm, sidecar = stored(fast_server, rec.session_id)
    assert hashlib.sha256(pcm).hexdigest() == rec.sha256()
    assert sidecar["finished"] is True and sidecar["sha256"] == rec.sha256()
    assert (sidecar["user"], sidecar["frames"], sidecar["duration_ms"]) == ("alice", 40, 4000)
    # send_from_ack flags frames 0-2 of every ten as speech
    assert sidecar["speech_segments"][:2] == [
        {"start_ms": 0, "end_ms": 300}, {"start_ms": 1000, "end_ms": 1300}
    ]
    assert len(sidecar["speech_segments"]) == 4
    assert not (fast_server.data_dir / f"{rec.session_id}.speech").exists()


def test_an_empty_session_ends_with_zero_frames(fast_server):
    async def scenario():
        async with Wire(fast_server.url) as wire:
            await wire.hello()
            return await wire.end(-1)

    ended = run(scenario())
    assert (ended.frames, ended.sha256) == (0, hashlib.sha256(b"").hexdigest())


def test_resume_after_a_dropped_connection_replays_from_the_ack(fast_server):
    rec = Recording(seed=2)
    rec.extend(60)

    async def scenario():
        first = await rec.open(fast_server.url)
        first_token = rec.token
        await rec.send_from_ack(first, upto=25)
        await first.wait_acked(24)
        await first.__aexit__()  # the TCP connection drops without a close frame
        second = await rec.open(fast_server.url)
        assert rec.token != first_token  # a fresh resume token at every welcome
        assert second.welcome.epoch == 1
        assert second.welcome.acked == 24  # everything before the drop is stored
        await rec.send_from_ack(second)
        ended = await second.end(59)
        await second.__aexit__()
        return ended

    ended = run(scenario())
    assert ended.frames == 60 and ended.sha256 == rec.sha256()
    pcm, _ = stored(fast_server, rec.session_id)
    assert pcm == b"".join(rec.frames)  # nothing lost, nothing doubled


def test_a_replayed_frame_is_dropped_and_acked_again(fast_server):
    rec = Recording(seed=3)
    rec.extend(10)

    async def scenario():
        wire = await rec.open(fast_server.url)
        await rec.send_from_ack(wire)
        await wire.wait_acked(9)
        acks_before = len(wire.ack_times)
        # Replays of stored frames with different content: dropped, not stored again.
        for seq in (3, 9, 0):
            await wire.send_frame(seq, make_pcm(seq, seed=99))
        await asyncio.sleep(0.3)
        still_open = wire.ws.close_code is None
        ended = await wire.end(9)
        await wire.__aexit__()
        return ended, still_open, acks_before

    ended, still_open, _ = run(scenario())
    assert still_open
    assert ended.frames == 10 and ended.sha256 == rec.sha256()


def test_duplicates_get_an_immediate_ack(fast_server):
    rec = Recording(seed=4)
    rec.extend(5)

    async def scenario():
        wire = await rec.open(fast_server.url)
        await rec.send_from_ack(wire)
        await wire.wait_acked(4)
        await wire.__aexit__()
        wire = await rec.open(fast_server.url)
        assert wire.welcome.acked == 4
        count = len(wire.ack_times)
        await wire.send_frame(2, rec.frames[2])
        deadline = asyncio.get_running_loop().time() + 2
        while len(wire.ack_times) == count and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        got = dict(wire.ack_times)
        await wire.__aexit__()
        return got

    assert 4 in run(scenario())


def test_a_gap_is_refused_with_the_next_expected_frame(fast_server):
    rec = Recording(seed=5)
    rec.extend(10)

    async def scenario():
        wire = await rec.open(fast_server.url)
        await rec.send_from_ack(wire, upto=3)
        await wire.send_frame(7, rec.frames[7])
        closed = await wire.closed()
        await wire.__aexit__()
        # Retry from the ack: the session continues with nothing lost.
        wire = await rec.open(fast_server.url)
        await rec.send_from_ack(wire)
        ended = await wire.end(9)
        await wire.__aexit__()
        return closed, ended

    closed, ended = run(scenario())
    assert closed.code == CloseCode.GAP
    assert (closed.error.code, closed.error.expected) == ("gap", 3)
    assert ended.sha256 == rec.sha256()


def test_an_ended_session_refuses_to_resume_with_session_ended(fast_server):
    rec = Recording(seed=6)
    rec.extend(3)

    async def scenario():
        wire = await rec.open(fast_server.url)
        await rec.send_from_ack(wire)
        await wire.end(2)
        await wire.__aexit__()
        async with Wire(fast_server.url) as again:
            return await again.hello(rec.session_id, rec.token)

    closed = run(scenario())
    assert closed.code == CloseCode.SESSION_ENDED and closed.error.code == "session_ended"


def test_acks_come_while_frames_flow_without_waiting_for_the_end(meetcap_server_factory):
    """Acks follow the durable write rounds (at least every 500 ms), not the end."""
    server = meetcap_server_factory(realtime_slack_s=1000, catchup_x=1000)  # default rounds
    rec = Recording(seed=7)
    rec.extend(15)

    async def scenario():
        wire = await rec.open(server.url)
        await rec.send_from_ack(wire, pace_s=0.02)
        await wire.wait_acked(14, timeout_s=1.0)
        acks = sorted(wire.ack_times)
        await wire.__aexit__()
        return acks

    acks = run(scenario())
    assert len(acks) >= 2 and acks[-1] == 14
