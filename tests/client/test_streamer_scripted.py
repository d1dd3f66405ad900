"""Client behaviours against the scripted stand-in server (misbehaviours the real one lacks)."""

from __future__ import annotations

import hashlib
import time

import pytest

from meetcap.client import Streamer
from meetcap.client.spool import RECORD_BYTES
from meetcap.errors import SpoolFullError, UsageError
from tests.client.conftest import fast_config, wait_until
from tests.client.frames import SubmitLog, synthetic_frames
from tests.support.net import closed_port_url


def test_frames_stream_and_finish_verifies_the_servers_hash(scripted_server, tmp_path):
    server = scripted_server()
    streamer = Streamer(fast_config(server.url, tmp_path))
    streamer.start()
    log = SubmitLog()
    for frame in synthetic_frames(50):
        streamer.submit(frame)
        log.record(frame)
    result = streamer.finish(10)
    assert result.ok and result.verified, result.message
    assert result.frames == 50 and result.sha256 == log.sha256
    (session,) = server.sessions.values()
    assert hashlib.sha256(b"".join(session.frames)).hexdigest() == log.sha256
    assert list(tmp_path.iterdir()) == []  # delivered: nothing left in the spool
    status = streamer.status()
    assert status.state == "finished"
    assert status.frames_acked == 50 and status.frames_spooled == 0
    assert status.ack_rtt_ms is not None and status.ack_rtt_ms >= 0


def test_an_ack_for_a_frame_never_sent_stops_with_a_protocol_error(scripted_server, tmp_path):
    server = scripted_server("ack_unsent")
    streamer = Streamer(fast_config(server.url, tmp_path))
    streamer.start()
    for frame in synthetic_frames(3):
        streamer.submit(frame)
    status = wait_until(lambda: (s := streamer.status()).state == "failed" and s)
    assert "broke the protocol" in status.reason and "ack for frame" in status.reason
    time.sleep(0.3)
    assert server.connections == 1  # fatal: no reconnect
    # The bogus ack deleted nothing: every frame is still waiting in the spool.
    assert streamer.status().frames_spooled == 3
    result = streamer.finish(1)
    assert not result.ok and result.frames_left == 3


def test_a_server_that_drops_every_connection_at_once_is_not_hammered(scripted_server, tmp_path):
    server = scripted_server("close_at_once")
    streamer = Streamer(fast_config(server.url, tmp_path, backoff_base_s=0.05, backoff_cap_s=0.4))
    streamer.start()
    try:
        status = wait_until(lambda: (s := streamer.status()).quick_failures >= 4 and s)
        assert status.state == "reconnecting"
        assert "right after opening" in status.reason
        assert status.next_retry_in_s is not None and status.next_retry_in_s <= 0.4 + 0.05
        started, before = time.monotonic(), server.connections
        time.sleep(2.0)
        rate = (server.connections - before) / (time.monotonic() - started)
        # Capped backoff: about 1 / (0.4 / 2) = 5 attempts/s; resetting to the base after
        # every successful handshake would give ~1 / 0.025 = 40/s.
        assert rate < 12, rate
    finally:
        streamer.close()


def test_a_connection_that_stops_acking_is_dropped_and_resumed(scripted_server, tmp_path):
    server = scripted_server("no_acks")
    reasons: list[str] = []
    streamer = Streamer(
        fast_config(server.url, tmp_path, ack_timeout_s=0.6),
        on_status=lambda s: reasons.append(s.reason or ""),
    )
    streamer.start()
    for frame in synthetic_frames(5):
        streamer.submit(frame)
    status = wait_until(lambda: (s := streamer.status()).reconnects >= 1 and s, timeout_s=5)
    assert any("no ack from the server for 0.6 s" in r for r in reasons), reasons
    # The server took the frames but never acked; its welcome on the new connection says
    # it holds them, so the spool lets them go and nothing is sent twice.
    assert status.frames_acked == 5 and status.frames_spooled == 0 and status.frames_sent == 5
    server.mode = "normal"
    result = streamer.finish(5)
    assert result.ok, result.message


def test_spool_cap_reached_raises_spool_full_from_submit(tmp_path):
    config = fast_config(closed_port_url(), tmp_path, spool_cap_bytes=20 * RECORD_BYTES)
    streamer = Streamer(config)
    streamer.start()
    frames = list(synthetic_frames(21))
    for frame in frames[:20]:
        streamer.submit(frame)
    with pytest.raises(SpoolFullError, match="capture stops"):
        streamer.submit(frames[20])
    assert streamer.status().frames_spooled == 20
    streamer.close()


def test_unreachable_server_reconnects_quickly_and_finish_reports_frames_left(tmp_path):
    streamer = Streamer(fast_config(closed_port_url(), tmp_path))
    streamer.start()
    for frame in synthetic_frames(7):
        streamer.submit(frame)
    status = wait_until(lambda: (s := streamer.status()).state == "reconnecting" and s)
    assert "cannot reach the server" in status.reason
    result = streamer.finish(0.5)
    assert not result.ok
    assert result.frames_left == 7 and "7 frames" in result.message
    assert "spool" in result.message
    assert streamer.status().state == "closed"


def test_submit_after_finish_is_refused(scripted_server, tmp_path):
    server = scripted_server()
    streamer = Streamer(fast_config(server.url, tmp_path))
    streamer.start()
    streamer.submit(next(synthetic_frames(1)))
    assert streamer.finish(5).ok
    with pytest.raises(UsageError, match="no more frames"):
        streamer.submit(next(synthetic_frames(1, start_seq=1)))


def test_state_changes_reach_the_callback_in_order(scripted_server, tmp_path):
    server = scripted_server()
    seen: list[str] = []
    streamer = Streamer(fast_config(server.url, tmp_path), on_status=lambda s: seen.append(s.state))
    streamer.start()
    wait_until(lambda: "connected" in seen)
    streamer.submit(next(synthetic_frames(1)))
    assert streamer.finish(5).ok
    changes = [state for i, state in enumerate(seen) if i == 0 or seen[i - 1] != state]
    assert changes == ["connected", "finished"]


def test_a_lost_ended_answer_still_finishes_once_the_server_says_it_ended(
    scripted_server, tmp_path
):
    server = scripted_server("lose_ended")
    streamer = Streamer(fast_config(server.url, tmp_path))
    streamer.start()
    for frame in synthetic_frames(8):
        streamer.submit(frame)
    result = streamer.finish(5)
    assert result.ok and not result.verified, result.message
    assert "final answer was lost" in result.message
    assert server.connections == 2  # the resume learnt that the session had ended
    assert list(tmp_path.iterdir()) == []


