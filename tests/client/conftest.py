"""Fixtures of the client tests: fast timings, a spool per test, a scripted server."""

from __future__ import annotations

import time

import pytest

from meetcap.client import StreamerConfig
from tests.client.scripted_server import ScriptedServer

TOKEN = "test-token"


def fast_config(url: str, spool_dir, **overrides) -> StreamerConfig:
    """Timings shortened for tests (the defaults suit a real network)."""
    settings = dict(
        url=url, token=TOKEN, spool_dir=spool_dir, backoff_base_s=0.05, backoff_cap_s=0.5,
        healthy_after_s=2.0, quick_failure_s=0.5, ack_timeout_s=2.0, open_timeout_s=2.0,
    )
    settings.update(overrides)
    return StreamerConfig(**settings)


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.02):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture
def scripted_server():
    servers: list[ScriptedServer] = []

    def start(mode: str = "normal") -> ScriptedServer:
        server = ScriptedServer(token=TOKEN, mode=mode).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
