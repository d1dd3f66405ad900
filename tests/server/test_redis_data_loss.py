"""Redis that loses its data (FLUSHALL, a restart without persistence, an evicted key)
is no takeover: the server writes a live session's record back, recovers a resumed one
from its files, and the client carries on without losing a frame or hearing an untrue
reason (issue 11). Real redis-server, real meetcap-server, real client."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from meetcap.client import Streamer
from meetcap.protocol import CloseCode
from meetcap.server.state.redis import config_warnings
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import FramePump, assert_delivered_exactly
from tests.server.conftest import FAST
from tests.server.wire import Recording, run
from tests.support.redis_server import RedisServer, start_redis
from tests.support.server_proc import OTHER_TOKEN, TOKEN

RATE_HZ = 200  # frames a second submitted: 20x real time (the server's limits are opened)
UNTRUE = ("running twice", "no longer knows", "took over", "internal error")


@pytest.fixture
def private_redis(tmp_path):
    """A Redis of this test's own (it gets restarted), without persistence."""
    directory = tmp_path / "redis-files"
    directory.mkdir()
    server = start_redis(directory)
    yield server
    server.stop()


def restart_without_persistence(server: RedisServer) -> None:
    """Stop redis-server and start a fresh one on the same port: it comes back empty."""
    server.stop()
    server.proc = subprocess.Popen(
        ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--dir",
         str(server.dir), "--save", "", "--appendonly", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    wait_until(lambda: _pings(server), 10)


def _pings(server: RedisServer) -> bool:
    try:
        return server.cli("PING") == "PONG"
    except subprocess.CalledProcessError:
        return False


def _stream_through(server, tmp_path, break_redis, *, then=None):
    """A real client streams; ``break_redis()`` runs mid-session (and ``then()`` after
    it); returns the finish result, the submit log and every status reason shown."""
    reasons: list[str] = []
    streamer = Streamer(
        fast_config(server.url, tmp_path / "spool", token=TOKEN),
        on_status=lambda s: reasons.append(s.reason or ""),
    )
    streamer.start()
    pump = FramePump(streamer, RATE_HZ).start()
    try:
        wait_until(lambda: streamer.status().frames_acked >= 60, 30)
        break_redis()
        if then is not None:
            then()
        acked = streamer.status().frames_acked
        wait_until(lambda: streamer.status().frames_acked >= acked + 100, 30)
    finally:
        log = pump.stop()
    result = streamer.finish(60)
    return streamer, result, log, reasons


def _evict_session_keys(redis: RedisServer) -> None:
    """What an eviction does: the session keys vanish, the user keys stay."""
    script = "for _, k in ipairs(redis.call('KEYS', 'meetcap:s:*')) do redis.call('DEL', k) end"
    redis.cli("EVAL", script, "0")


@pytest.mark.parametrize("loss", ["flushall", "evicted key"])
def test_lost_keys_mid_session_keep_the_connection_and_every_frame(
    meetcap_server_factory, private_redis, tmp_path, loss
):
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    lose = private_redis.flush if loss == "flushall" else lambda: _evict_session_keys(private_redis)
    streamer, result, log, reasons = _stream_through(server, tmp_path, lose)
    assert_delivered_exactly(result, log, server.data_dir)
    assert streamer.status().reconnects == 0  # the healthy connection was never closed
    assert not [r for r in reasons if any(word in r for word in UNTRUE)], reasons
    text = server.log_text()
    assert "written back" in text and "taken_over" not in text


def test_redis_restarted_without_persistence_mid_session_loses_nothing(
    meetcap_server_factory, private_redis, tmp_path
):
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    streamer, result, log, reasons = _stream_through(
        server, tmp_path, lambda: restart_without_persistence(private_redis)
    )
    assert_delivered_exactly(result, log, server.data_dir)
    assert not [r for r in reasons if any(word in r for word in UNTRUE)], reasons
    text = server.log_text()
    assert "taken_over" not in text
    # The outage is said in one line, not a traceback every half second.
    assert "Traceback" not in text and text.count("the connection watch failed") <= 1


def test_flushall_then_a_server_kill_the_resume_is_recovered_from_the_files(
    meetcap_server_factory, private_redis, tmp_path
):
    """The client must resume a session Redis forgot: it used to get 4005 and its
    unsent frames stayed in the spool forever."""
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    streamer, result, log, reasons = _stream_through(
        server, tmp_path, private_redis.flush, then=lambda: server.restart(kill=True)
    )
    assert_delivered_exactly(result, log, server.data_dir)
    assert streamer.status().reconnects >= 1
    assert not [r for r in reasons if any(word in r for word in UNTRUE)], reasons
    assert "recovered from its files" in server.log_text()


def test_a_forgotten_session_is_recovered_only_for_its_owner_and_only_while_open(
    meetcap_server_factory, private_redis
):
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    open_rec, ended_rec, bob = Recording(seed=3), Recording(seed=4), Recording(seed=5)
    for rec in (open_rec, ended_rec, bob):
        rec.extend(30)

    async def scenario():
        outcomes = {}
        wire = await open_rec.open(server.url)
        await open_rec.send_from_ack(wire, upto=20)
        await wire.wait_acked(19)
        await wire.__aexit__()
        wire = await ended_rec.open(server.url)
        await ended_rec.send_from_ack(wire)
        await wire.end(29)
        await wire.__aexit__()
        await asyncio.to_thread(private_redis.flush)
        # Another user presenting the session's id and token: forbidden, as before the loss.
        bob.session_id, bob.token = open_rec.session_id, open_rec.token
        try:
            await bob.open(server.url, OTHER_TOKEN)
        except ConnectionError as exc:
            outcomes["bob"] = str(exc)
        # The ended session stays ended (the client takes 4012 as success).
        try:
            await ended_rec.open(server.url)
        except ConnectionError as exc:
            outcomes["ended"] = str(exc)
        # A session this server has no files for: still unknown.
        stranger = Recording(session_id="NoSuchSession0123456789", token="T" * 22)
        try:
            await stranger.open(server.url)
        except ConnectionError as exc:
            outcomes["stranger"] = str(exc)
        # The owner resumes where the files end and finishes it.
        wire = await open_rec.open(server.url)
        outcomes["acked"] = wire.welcome.acked
        await open_rec.send_from_ack(wire)
        outcomes["ended_open"] = await wire.end(29)
        await wire.__aexit__()
        return outcomes

    outcomes = run(scenario())
    assert f"code={int(CloseCode.FORBIDDEN)}," in outcomes["bob"]
    assert f"code={int(CloseCode.SESSION_ENDED)}," in outcomes["ended"]
    assert f"code={int(CloseCode.UNKNOWN_SESSION)}," in outcomes["stranger"]
    assert outcomes["acked"] == 19
    assert outcomes["ended_open"].frames == 30
    assert outcomes["ended_open"].sha256 == open_rec.sha256()


def test_the_server_warns_in_words_when_redis_keeps_nothing(
    meetcap_server_factory, private_redis
):
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    assert "Redis keeps nothing on disk (appendonly no" in server.log_text()


def test_redis_settings_that_can_lose_keys_are_named():
    safe = {"appendonly": "yes", "save": "", "maxmemory": "0", "maxmemory-policy": "noeviction"}
    assert config_warnings(safe) == []
    assert config_warnings(dict(safe, maxmemory="100mb")) == []
    snapshots = config_warnings(dict(safe, appendonly="no", save="3600 1"))
    assert len(snapshots) == 1 and "only saves snapshots" in snapshots[0]
    evicting = config_warnings(
        dict(safe, maxmemory="1048576", **{"maxmemory-policy": "volatile-lru"})
    )
    assert len(evicting) == 1 and "maxmemory-policy noeviction" in evicting[0]


def test_the_server_says_so_when_it_cannot_read_redis_settings(meetcap_server_factory, tmp_path):
    """Managed Redis often disables CONFIG: the server starts and says what to check."""
    directory = tmp_path / "no-config"
    directory.mkdir()
    server = start_redis(directory)
    server.stop()  # restart it on the same port without the CONFIG command
    server.proc = subprocess.Popen(
        ["redis-server", "--port", str(server.port), "--bind", "127.0.0.1", "--dir",
         str(directory), "--save", "", "--appendonly", "no", "--rename-command", "CONFIG", ""],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: _pings(server), 10)
        meetcap = meetcap_server_factory(redis=server.url, **FAST)
        text = meetcap.log_text()
        assert "cannot read Redis's configuration" in text
        assert "appendonly yes" in text and "maxmemory-policy noeviction" in text
    finally:
        server.stop()


def test_redis_down_is_said_in_words_and_the_client_retries_into_a_working_server(
    meetcap_server_factory, private_redis
):
    server = meetcap_server_factory(redis=private_redis.url, **FAST)
    rec = Recording(seed=8)
    rec.extend(20)

    async def scenario():
        await asyncio.to_thread(private_redis.stop)
        try:
            await rec.open(server.url)
        except ConnectionError as exc:
            refused = str(exc)
        else:
            raise AssertionError("a hello while Redis is down was welcomed")
        await asyncio.to_thread(restart_without_persistence, private_redis)
        wire = await rec.open(server.url)
        await rec.send_from_ack(wire)
        ended = await wire.end(19)
        await wire.__aexit__()
        return refused, ended

    refused, ended = run(scenario())
    assert f"code={int(CloseCode.INTERNAL_ERROR)}," in refused  # retryable
    assert "session store (Redis) is unreachable" in refused
    assert ended.sha256 == rec.sha256()
    assert "Traceback" not in server.log_text()


@pytest.mark.parametrize("wait_for_watch", [False, True])
def test_a_resume_on_another_instance_after_a_flush_takes_the_session_over(
    meetcap_server_factory, private_redis, tmp_path, wait_for_watch
):
    """Redis forgot the session while instance A holds it; the client (A's connection
    half-dead) resumes on B. Whether B recovers it from the files first (a new epoch A
    never had) or A's watch wrote it back first (then a plain resume), A's connection is
    taken over (4008), B waits for the files and carries on from what is stored."""
    shared = tmp_path / "shared-data"
    first = meetcap_server_factory(data_dir=shared, redis=private_redis.url, **FAST)
    second = meetcap_server_factory(data_dir=shared, redis=private_redis.url, **FAST)
    rec = Recording(seed=30)
    rec.extend(80)

    async def scenario():
        old = await rec.open(first.url)
        await rec.send_from_ack(old, upto=30)
        await old.wait_acked(29)
        await asyncio.to_thread(private_redis.flush)
        if wait_for_watch:
            await asyncio.sleep(1.2)  # A's watch writes the record back
        new = await rec.open(second.url)
        old_closed = await old.closed(timeout_s=5)
        await old.__aexit__()
        await rec.send_from_ack(new)
        ended = await new.end(79)
        await new.__aexit__()
        return old_closed, new.welcome, ended

    old_closed, welcome, ended = run(scenario())
    assert old_closed.code == CloseCode.TAKEN_OVER
    assert welcome.acked == 29
    assert ended.frames == 80 and ended.sha256 == rec.sha256()
    if wait_for_watch:
        assert "written back" in first.log_text()
    else:  # B is almost always first; A's half-second watch may win the race
        assert "recovered from its files" in second.log_text() or "written back" in (
            first.log_text()
        )
