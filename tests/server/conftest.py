"""Shared settings of the server tests."""

from __future__ import annotations

import pytest

# Tests stream much faster than real time: lift the flood rule and the catch-up pacing
# unless a test is about them. A short group-commit interval keeps acks quick.
FAST = dict(catchup_x=1000, realtime_slack_s=1000, flush_interval_ms=20, going_away_max_ms=300)


@pytest.fixture
def fast_server(meetcap_server_factory):
    """A meetcap-server subprocess (embedded state) that accepts audio at any speed."""
    return meetcap_server_factory(**FAST)
