"""Reconnect timing and the retry/stop verdicts a person reads in the status line."""

from __future__ import annotations

import random

import pytest

from meetcap.client.backoff import Backoff, ConnectionSpan
from meetcap.client.outcomes import from_close, from_http_status
from meetcap.protocol import CloseCode, Error, GoingAway

REFUSED = ConnectionSpan(opened=False, welcomed=False, lifetime_s=0.0)
INSTANT_CLOSE = ConnectionSpan(opened=True, welcomed=True, lifetime_s=0.05)
HEALTHY = ConnectionSpan(opened=True, welcomed=True, lifetime_s=30.0)


def test_first_retry_comes_within_a_second_and_delays_are_capped():
    backoff = Backoff(base_s=0.25, cap_s=5.0, rng=random.Random(7))
    firsts = []
    for _ in range(200):
        backoff.reset()
        backoff.record(REFUSED)
        firsts.append(backoff.next_delay_s())
    assert max(firsts) <= 0.25
    ceilings = []
    for _ in range(40):
        backoff.record(REFUSED)
        ceilings.append(backoff.ceiling_s())
        assert 0.0 <= backoff.next_delay_s() <= 5.0
    assert ceilings[:4] == [0.5, 1.0, 2.0, 4.0]
    assert ceilings[-1] == 5.0


def test_full_jitter_spreads_delays_over_the_whole_window():
    backoff = Backoff(base_s=1.0, cap_s=8.0, rng=random.Random(3))
    for _ in range(4):
        backoff.record(REFUSED)  # window is now [0, 8]
    delays = [backoff.next_delay_s() for _ in range(2000)]
    assert min(delays) < 0.5 and max(delays) > 7.5  # not "exponential plus a little noise"
    assert 3.5 < sum(delays) / len(delays) < 4.5


def test_connections_that_close_at_once_keep_backing_off_and_are_counted():
    backoff = Backoff(base_s=0.25, cap_s=5.0, quick_failure_s=2.0, rng=random.Random(1))
    for _ in range(6):
        backoff.record(INSTANT_CLOSE)
    assert backoff.quick_failures == 6
    assert backoff.ceiling_s() == 5.0  # a naive "connected, reset" would be back at 0.25
    backoff.record(HEALTHY)
    assert (backoff.attempt, backoff.quick_failures, backoff.ceiling_s()) == (0, 0, 0.25)


def test_a_connection_that_lasted_a_while_is_not_a_quick_failure_but_not_healthy_either():
    backoff = Backoff(healthy_after_s=10.0, quick_failure_s=2.0)
    backoff.record(INSTANT_CLOSE)
    backoff.record(ConnectionSpan(opened=True, welcomed=True, lifetime_s=5.0))
    assert backoff.quick_failures == 0
    assert backoff.attempt == 2


def test_a_server_requested_wait_is_honoured_with_jitter():
    backoff = Backoff(base_s=0.25, rng=random.Random(5))
    delays = [backoff.next_delay_s(at_least_s=1.5) for _ in range(100)]
    assert all(1.5 <= d <= 1.75 for d in delays)
    assert len(set(delays)) > 90


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_origin_and_path_refusals_stop_with_a_readable_reason(status):
    outcome = from_http_status(status, "ws://h:1/v1/stream")
    assert outcome.fatal
    assert f"HTTP {status}" in outcome.reason


@pytest.mark.parametrize("status", [429, 502, 503])
def test_busy_server_statuses_are_retried(status):
    assert from_http_status(status, "ws://h:1/v1/stream").kind == "retry"


@pytest.mark.parametrize(
    ("code", "name", "words"),
    [
        (CloseCode.BAD_RESUME_TOKEN, "bad_resume_token", "resume token"),
        (CloseCode.FORBIDDEN, "forbidden", "another user"),
        (CloseCode.UNSUPPORTED_VERSION, "unsupported_version", "update meetcap"),
        (CloseCode.TAKEN_OVER, "taken_over", "running twice"),
        (CloseCode.UNKNOWN_SESSION, "unknown_session", "no longer knows"),
    ],
)
def test_fatal_close_codes_stop_and_say_why(code, name, words):
    error = Error(code=name, message="details from the server")
    outcome = from_close(int(code), error=error, session_id="abc")
    assert outcome.fatal
    assert words in outcome.reason and "details from the server" in outcome.reason


def test_going_away_and_rate_limits_carry_the_servers_wait():
    restart = from_close(1012, going_away=GoingAway(retry_after_ms=1500))
    assert (restart.kind, restart.retry_after_s) == ("retry", 1.5)
    limited = from_close(
        int(CloseCode.TOO_MANY_SESSIONS),
        error=Error(code="too_many_sessions", message="cap", retry_after_ms=2500),
    )
    assert (limited.kind, limited.retry_after_s) == ("retry", 2.5)


def test_a_dropped_tcp_connection_is_retried():
    for code in (None, 1006):
        assert from_close(code).kind == "retry"
