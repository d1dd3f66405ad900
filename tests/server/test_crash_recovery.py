"""kill -9 of the server mid-stream, again and again: the stored audio is still exactly
the sent audio (embedded state: the state files and the WAV are the truth on restart)."""

from __future__ import annotations

import asyncio
import hashlib
import random

from tests.server.conftest import FAST
from tests.server.wire import Recording, Wire, run, wav_pcm

KILLS = 10
PER_CONNECTION = 40  # frames offered per connection before its kill
FRAMES = 500


async def open_when_up(rec: Recording, url: str, timeout_s: float = 15.0) -> Wire:
    """Resume (or create) as soon as the restarted server accepts connections."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            return await rec.open(url)
        except (OSError, ConnectionError, TimeoutError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def stream_until_killed(rec: Recording, wire: Wire, server, rng: random.Random) -> None:
    """Send the next PER_CONNECTION frames from the ack, 5 ms apart, and kill -9 the
    server at a random moment while they flow."""
    upto = wire.welcome.acked + 1 + PER_CONNECTION
    sender = asyncio.create_task(rec.send_from_ack(wire, upto=upto, pace_s=0.005))
    await asyncio.sleep(rng.uniform(0.03, PER_CONNECTION * 0.005 * 0.9))
    await asyncio.to_thread(server.kill)
    await asyncio.gather(sender, return_exceptions=True)  # sending fails once it is dead
    await wire.__aexit__()


def test_kill9_and_restart_ten_times_during_a_stream_loses_nothing(meetcap_server_factory):
    server = meetcap_server_factory(**FAST)
    rec = Recording(seed=10)
    rec.extend(FRAMES)
    rng = random.Random(10)
    welcomed_acks: list[int] = []

    async def scenario():
        for _ in range(KILLS):
            wire = await open_when_up(rec, server.url)
            welcomed_acks.append(wire.welcome.acked)
            await stream_until_killed(rec, wire, server, rng)
            await asyncio.to_thread(server.start)  # same port, same data dir
        wire = await open_when_up(rec, server.url)
        welcomed_acks.append(wire.welcome.acked)
        await rec.send_from_ack(wire)
        ended = await wire.end(FRAMES - 1)
        await wire.__aexit__()
        return ended

    ended = run(scenario(), timeout_s=90)
    assert rec.connections == KILLS + 1
    # Every kill hit a live stream: each restart found more stored, never all of it.
    assert all(a < b for a, b in zip(welcomed_acks, welcomed_acks[1:], strict=False)), welcomed_acks
    assert welcomed_acks[-1] < FRAMES - 1
    assert ended.frames == FRAMES and ended.sha256 == rec.sha256()
    pcm = wav_pcm(server.data_dir / f"{rec.session_id}.wav")
    assert hashlib.sha256(pcm).hexdigest() == rec.sha256()


def test_a_torn_frame_from_a_crash_is_cut_and_resent(meetcap_server_factory, tmp_path):
    """Whatever half-written tail a crash leaves, the next welcome reports whole frames
    only and the header is rewritten to match (a valid WAV at any moment)."""
    server = meetcap_server_factory(**FAST)
    rec = Recording(seed=11)
    rec.extend(20)

    async def first_part():
        wire = await rec.open(server.url)
        await rec.send_from_ack(wire, upto=10)
        await wire.wait_acked(9)
        await wire.__aexit__()

    run(first_part())
    server.kill()
    wav = server.data_dir / f"{rec.session_id}.wav"
    with open(wav, "ab") as f:
        f.write(b"\x55" * 1234)  # a torn eleventh frame
    server.start()

    async def second_part():
        wire = await rec.open(server.url)
        acked = wire.welcome.acked
        await rec.send_from_ack(wire)
        ended = await wire.end(19)
        await wire.__aexit__()
        return acked, ended

    acked, ended = run(second_part())
    assert acked == 9
    assert ended.sha256 == rec.sha256()
    assert wav_pcm(wav) == b"".join(rec.frames)
