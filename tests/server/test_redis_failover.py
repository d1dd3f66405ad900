"""Two server instances sharing one Redis and one data directory: a session moves from
one to the other (kill -9, or a takeover while the first is alive) and nothing is lost."""

from __future__ import annotations

import asyncio
import hashlib

from meetcap.protocol import CloseCode
from tests.server.conftest import FAST
from tests.server.wire import Recording, Wire, run, wav_pcm


def two_instances(factory, tmp_path, redis_url, **options):
    shared = tmp_path / "shared-data"
    first = factory(data_dir=shared, redis=redis_url, **FAST, **options)
    second = factory(data_dir=shared, redis=redis_url, **FAST, **options)
    return first, second


def test_kill_the_instance_and_resume_on_the_other_loses_nothing(
    meetcap_server_factory, tmp_path, redis_url
):
    first, second = two_instances(meetcap_server_factory, tmp_path, redis_url)
    rec = Recording(seed=20)
    rec.extend(200)

    async def scenario():
        wire = await rec.open(first.url)
        sender = asyncio.create_task(rec.send_from_ack(wire, pace_s=0.002))
        await wire.wait_acked(40)
        await asyncio.to_thread(first.kill)
        await asyncio.gather(sender, return_exceptions=True)
        await wire.__aexit__()
        wire = await rec.open(second.url)
        resumed_at = wire.welcome.acked
        await rec.send_from_ack(wire)
        ended = await wire.end(199)
        await wire.__aexit__()
        return resumed_at, ended

    resumed_at, ended = run(scenario())
    assert resumed_at >= 40
    assert ended.frames == 200 and ended.sha256 == rec.sha256()
    pcm = wav_pcm(tmp_path / "shared-data" / f"{rec.session_id}.wav")
    assert hashlib.sha256(pcm).hexdigest() == rec.sha256()


def test_a_resume_on_another_instance_takes_the_session_over(
    meetcap_server_factory, tmp_path, redis_url
):
    """The older connection (still alive on the first instance) is closed with 4008 and
    stops writing; the newer one continues from what is stored."""
    first, second = two_instances(meetcap_server_factory, tmp_path, redis_url)
    rec = Recording(seed=21)
    rec.extend(120)

    async def scenario():
        old = await rec.open(first.url)
        await rec.send_from_ack(old, upto=50)
        await old.wait_acked(49)
        new = await rec.open(second.url)
        old_closed = await old.closed(timeout_s=5)
        await old.__aexit__()
        await rec.send_from_ack(new)
        ended = await new.end(119)
        await new.__aexit__()
        return old_closed, new.welcome, ended

    old_closed, welcome, ended = run(scenario())
    assert old_closed.code == CloseCode.TAKEN_OVER
    assert welcome.acked == 49 and welcome.epoch == 1
    assert ended.sha256 == rec.sha256()


def test_user_caps_count_sessions_on_every_instance(meetcap_server_factory, tmp_path, redis_url):
    first, second = two_instances(
        meetcap_server_factory, tmp_path, redis_url, max_sessions_per_user=2
    )

    async def scenario():
        a, b, c = Wire(first.url), Wire(second.url), Wire(second.url)
        for wire in (a, b, c):
            await wire.__aenter__()
        await a.hello()
        await b.hello()
        refused = await c.hello()
        for wire in (a, b, c):
            await wire.__aexit__()
        return refused

    refused = run(scenario())
    assert refused.code == CloseCode.TOO_MANY_SESSIONS
    assert refused.error.retry_after_ms > 0
