"""A real, private Redis (Debian's redis-server) for the test session.

It listens on a free loopback port with its files in a temporary directory and no
persistence. Tests get a clean database each time from the ``redis_url`` fixture.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.net import free_port


@dataclass
class RedisServer:
    """A running redis-server process; ``url`` points at database 0."""

    port: int
    dir: Path
    proc: subprocess.Popen

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def cli(self, *args: str) -> str:
        """Run a redis-cli command against this server; returns its output."""
        return subprocess.run(
            ["redis-cli", "-p", str(self.port), *args],
            check=True, capture_output=True, text=True, timeout=10,
        ).stdout.strip()

    def flush(self) -> None:
        self.cli("FLUSHALL")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_redis(directory: Path) -> RedisServer:
    """Start redis-server on a free port in ``directory``; wait until it answers PING."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    server = RedisServer(port, directory, proc)
    deadline = time.monotonic() + 10
    while True:
        try:
            if server.cli("PING") == "PONG":
                return server
        except subprocess.CalledProcessError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"redis-server did not start on port {port}")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One redis-server for the whole test session (stopped at the end)."""
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of an empty Redis database for this test."""
    redis_server.flush()
    return redis_server.url
