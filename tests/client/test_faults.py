"""Delivery under faults, against the real meetcap-server (Jepsen style).

Each test streams seeded frames, breaks something (kill -9 the server, a proxy that
cuts, stalls and chops the TCP stream, a second instance behind Redis, kill -9 the
client), then checks the session's audio in the server's data directory against the
client's log of what it submitted: every frame once, in order, bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meetcap.client import Streamer
from meetcap.constants import FRAME_BYTES
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import FramePump, assert_delivered_exactly, stored_pcm
from tests.client.fault_proxy import FaultProxy
from tests.client.frames import synthetic_frames
from tests.support.server_proc import TOKEN

# The server's flood rule and catch-up pacing protect it from real clients; these tests
# submit far faster than real time on purpose, so both are opened wide.
FAST_SERVER = dict(realtime_slack_s=3600, catchup_x=1000)
RATE_HZ = 200  # frames a second submitted: 20x real time


def _config(url: str, tmp_path: Path, **overrides):
    return fast_config(url, tmp_path / "spool", token=TOKEN, **overrides)


def _progress(streamer: Streamer, frames: int, timeout_s: float = 30.0) -> None:
    """Wait until the server acked ``frames`` more frames on a live connection."""
    start = streamer.status().frames_acked
    wait_until(
        lambda: (s := streamer.status()).state == "connected" and s.frames_acked >= start + frames,
        timeout_s,
    )


@pytest.fixture
def proxy():
    proxies: list[FaultProxy] = []

    def start(target_port: int) -> FaultProxy:
        p = FaultProxy(target_port).start()
        proxies.append(p)
        return p

    yield start
    for p in proxies:
        p.stop()


def test_server_killed_and_restarted_ten_times_loses_and_doubles_nothing(
    meetcap_server_factory, tmp_path
):
    server = meetcap_server_factory(**FAST_SERVER)
    streamer = Streamer(_config(server.url, tmp_path))
    streamer.start()
    pump = FramePump(streamer, RATE_HZ).start()
    try:
        for _ in range(10):
            _progress(streamer, 20)
            server.restart(kill=True)  # SIGKILL: no going_away, no flush
        _progress(streamer, 20)
    finally:
        log = pump.stop()
    result = streamer.finish(60)
    assert streamer.status().reconnects >= 10
    assert_delivered_exactly(result, log, server.data_dir)


def test_proxy_cutting_mid_frame_stalling_and_chopping_loses_and_doubles_nothing(
    meetcap_server_factory, proxy, tmp_path
):
    server = meetcap_server_factory(**FAST_SERVER)
    path = proxy(server.port)
    reasons: list[str] = []
    streamer = Streamer(
        _config(path.url, tmp_path, ack_timeout_s=1.0, open_timeout_s=1.0),
        on_status=lambda s: reasons.append(s.reason or ""),
    )
    streamer.start()
    pump = FramePump(streamer, RATE_HZ).start()
    try:
        for cut in (1_000, 5_000, 17_777, 3_216 * 3 + 7, 40_001):
            _progress(streamer, 20)
            path.cut_after(cut)  # falls inside a WebSocket message: a torn frame
            wait_until(lambda: path.cuts >= 1)
        _progress(streamer, 20)
        assert path.cuts == 5

        path.stall()  # bytes held, sockets open: only the ack watchdog can tell
        wait_until(lambda: any("no ack from the server" in r for r in reasons), 10)
        path.resume()
        _progress(streamer, 20)

        path.chop = True  # 1-7 byte pieces: message boundaries mean nothing to TCP
        _progress(streamer, 100)
        path.chop = False
    finally:
        log = pump.stop()
    result = streamer.finish(60)
    assert_delivered_exactly(result, log, server.data_dir)


def test_instance_killed_client_resumes_on_the_other_through_redis(
    meetcap_server_factory, redis_url, proxy, tmp_path
):
    shared = tmp_path / "shared-data"
    first = meetcap_server_factory(data_dir=shared, redis=redis_url, **FAST_SERVER)
    second = meetcap_server_factory(data_dir=shared, redis=redis_url, **FAST_SERVER)
    path = proxy(first.port)
    streamer = Streamer(_config(path.url, tmp_path))
    streamer.start()
    pump = FramePump(streamer, RATE_HZ).start()
    try:
        _progress(streamer, 100)
        path.retarget(second.port)  # a load balancer noticing the dead instance
        first.kill()
        _progress(streamer, 100)
    finally:
        log = pump.stop()
    result = streamer.finish(60)
    assert streamer.status().reconnects >= 1
    assert_delivered_exactly(result, log, shared)
    assert "attached (epoch 1" in second.log_text()


def _child(*args: str) -> list[str]:
    return [sys.executable, "-m", "tests.client.streaming_child", *args]


def test_client_killed_mid_stream_delivers_its_spool_on_restart(meetcap_server, tmp_path):
    spool, log_path = tmp_path / "spool", tmp_path / "submitted.log"
    repo = Path(__file__).resolve().parents[2]
    child = subprocess.Popen(
        _child("stream", meetcap_server.url, TOKEN, str(spool), str(log_path), "--rate", "10"),
        cwd=repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: log_path.exists() and len(log_path.read_text().splitlines()) >= 25,
                   timeout_s=30)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    logged = [line.split() for line in log_path.read_text().splitlines() if line.strip()]
    assert [int(seq) for seq, _ in logged] == list(range(len(logged)))

    restarted = subprocess.run(
        _child("deliver", meetcap_server.url, TOKEN, str(spool)),
        cwd=repo, capture_output=True, text=True, timeout=90,
    )
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    result = json.loads(restarted.stdout)
    (session,) = result["earlier"]
    assert session["ok"], session["message"]
    pcm = stored_pcm(meetcap_server.data_dir, session["session_id"])
    stored = len(pcm) // FRAME_BYTES
    # Every frame whose submit() returned is stored; a frame submitted in the instant
    # before the kill (spooled, not yet logged) may be there too, never anything else.
    assert len(logged) <= stored <= len(logged) + 1
    expected = b"".join(f.pcm for f in synthetic_frames(stored, seed=1))
    assert pcm == expected
    assert session["sha256"] == hashlib.sha256(pcm).hexdigest()
    assert list(spool.iterdir()) == []  # delivered and ended: the spool is empty


def test_wrong_token_fails_with_a_readable_reason_and_no_retry_storm(
    meetcap_server, proxy, tmp_path
):
    path = proxy(meetcap_server.port)
    config = fast_config(path.url, tmp_path / "spool", token="not-a-valid-token")
    streamer = Streamer(config)
    streamer.start()
    streamer.submit(next(synthetic_frames(1)))
    status = wait_until(lambda: (s := streamer.status()).state == "failed" and s)
    assert "HTTP 401" in status.reason and "token" in status.reason
    time.sleep(1.0)
    assert path.connections == 1
    result = streamer.finish(1)
    assert not result.ok and result.frames_left == 1 and "HTTP 401" in result.message


def test_graceful_restart_is_waited_out_and_resumed(meetcap_server_factory, tmp_path):
    server = meetcap_server_factory(going_away_max_ms=300, **FAST_SERVER)
    reasons: list[str] = []
    streamer = Streamer(
        _config(server.url, tmp_path), on_status=lambda s: reasons.append(s.reason or "")
    )
    streamer.start()
    pump = FramePump(streamer, RATE_HZ).start()
    try:
        _progress(streamer, 50)
        server.restart(kill=False)  # SIGTERM: going_away, close 1012
        _progress(streamer, 50)
    finally:
        log = pump.stop()
    result = streamer.finish(30)
    assert any("restarting" in r for r in reasons), reasons
    assert_delivered_exactly(result, log, server.data_dir)


def test_a_session_left_in_the_spool_is_delivered_alongside_the_next_one(
    meetcap_server, tmp_path
):
    first = Streamer(_config(meetcap_server.url, tmp_path))
    first.start()
    old_frames = list(synthetic_frames(30, seed=1))
    for frame in old_frames:
        first.submit(frame)
    first.close()  # the app quit without ending: the spool keeps the session
    second = Streamer(_config(meetcap_server.url, tmp_path))
    second.start()
    new_frames = list(synthetic_frames(20, seed=2))
    for frame in new_frames:
        second.submit(frame)
    result = second.finish(20)
    assert result.ok and result.verified, result.message
    (earlier,) = result.earlier
    assert earlier.ok and earlier.frames == 30, earlier.message
    data = meetcap_server.data_dir
    assert stored_pcm(data, earlier.session_id) == b"".join(f.pcm for f in old_frames)
    assert stored_pcm(data, result.session_id) == b"".join(f.pcm for f in new_frames)
    assert list((tmp_path / "spool").iterdir()) == []


def test_audio_captured_offline_is_paced_after_one_rate_limit_not_refused_again(
    meetcap_server_factory, tmp_path
):
    # No offline grace: audio from before the session existed on the server stays "ahead
    # of its clock" for the rest of the meeting, as after an outage at its start.
    server = meetcap_server_factory(offline_grace_s=0, realtime_slack_s=0.5)
    reasons: list[str] = []
    streamer = Streamer(
        _config(server.url, tmp_path), on_status=lambda s: reasons.append(s.reason or "")
    )
    streamer.start()
    # 3 s captured before the server could be reached, then live capture for 4 s.
    pump = FramePump(streamer, rate_hz=10, burst_frames=30).start()
    try:
        wait_until(lambda: len(pump.log) >= 70, timeout_s=15)
    finally:
        log = pump.stop()
    result = streamer.finish(30)
    refusals = [r for r in reasons if "faster than real time" in r]
    assert len(refusals) == 1, reasons  # learnt once; without pacing: one per reconnect
    assert streamer.status().reconnects == 1
    assert_delivered_exactly(result, log, server.data_dir)
