"""meetcap-server on the command line: its options, and clear errors for bad set-ups."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from meetcap.errors import ConfigError
from meetcap.server.config import load_tokens, parse_tokens_env, parse_tokens_file

REPO = Path(__file__).resolve().parents[2]


def server_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = dict(os.environ, PYTHONPATH=str(REPO))
    environ.pop("MEETCAP_TOKENS", None)
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "meetcap.server", *args], capture_output=True, text=True,
        timeout=30, env=environ,
    )


def test_help_lists_every_option():
    result = server_cli("--help")
    assert result.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--tokens-file", "--redis",
                   "--allowed-origin", "--realtime-slack-s", "--catchup-x",
                   "--max-sessions-per-user", "--new-sessions-per-minute", "--log-level",
                   "--flush-interval-ms", "--fsync-mode", "--offline-grace-s"):
        assert option in result.stdout
    assert "127.0.0.1" in result.stdout and "8765" in result.stdout


def test_without_tokens_it_refuses_to_start_and_says_how_to_fix_it(tmp_path):
    result = server_cli("--port", "0", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no tokens configured" in result.stderr and "--tokens-file" in result.stderr


def test_a_bad_tokens_file_line_is_named(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.write_text("# users\nalice alice-token-123\nbob\n")
    result = server_cli("--tokens-file", str(tokens), "--data-dir", str(tmp_path))
    assert result.returncode == 2 and "line 3" in result.stderr


def test_a_taken_port_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = server_cli("--port", str(port), "--data-dir", str(tmp_path),
                            env={"MEETCAP_TOKENS": "alice:alice-token-123"})
    assert result.returncode == 2 and "cannot listen" in result.stderr


def test_tokens_come_from_files_and_the_environment(tmp_path):
    path = tmp_path / "tokens"
    path.write_text("alice  alice-token-123\n\n# comment\nbob bob-token-4567\n")
    assert parse_tokens_file(path) == {"alice-token-123": "alice", "bob-token-4567": "bob"}
    assert parse_tokens_env("carol:carol-token-1, dave:dave-token-22") == {
        "carol-token-1": "carol", "dave-token-22": "dave"
    }
    merged = load_tokens([path], {"MEETCAP_TOKENS": "carol:carol-token-1"})
    assert merged == {"alice-token-123": "alice", "bob-token-4567": "bob", "carol-token-1": "carol"}


@pytest.mark.parametrize(
    "value",
    ["alice", "alice:short", "al ice:alice-token-123", "a:tok en-123456", ":no-user-token-1"],
)
def test_bad_token_settings_are_config_errors(value):
    with pytest.raises(ConfigError):
        parse_tokens_env(value)


def test_one_token_for_two_users_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="same token"):
        parse_tokens_env("alice:same-token-1,bob:same-token-1")


def test_the_stats_line_reports_load_and_write_rounds(meetcap_server_factory):
    import time

    server = meetcap_server_factory(stats_interval_s=0.5)
    deadline = time.monotonic() + 5
    while "stats:" not in server.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(x for x in server.log_text().splitlines() if "stats:" in x)
    assert "sessions attached" in line and "round p99" in line and "loop lag max" in line
