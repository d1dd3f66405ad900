"""Bad settings fail up front with a message that says what to type instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from meetcap.client import StreamerConfig, validate_url
from meetcap.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://x", "use ws:// for the same server"),
        ("https://x/v1/stream", "use wss://"),
        ("ws//x", "must start with ws:// or wss://"),
        ("localhost:8765", "must start with ws:// or wss://"),
        ("", "empty"),
        ("ws://", "names no host"),
        ("ws://host:99999/v1/stream", "invalid port"),
        ("ws://user:pw@host/v1/stream", "--token"),
    ],
)
def test_bad_server_urls_are_refused_with_a_clear_message(url, words):
    with pytest.raises(ConfigError) as info:
        validate_url(url)
    assert words in str(info.value)


def test_a_url_without_a_path_gets_the_stream_path():
    assert validate_url("ws://h:8765") == "ws://h:8765/v1/stream"
    assert validate_url("wss://h/") == "wss://h/v1/stream"
    assert validate_url(" ws://h:1/custom/path?x=1 ") == "ws://h:1/custom/path?x=1"


@pytest.mark.parametrize("token", ["", "two words", "line\nbreak"])
def test_tokens_that_would_break_the_auth_header_are_refused(token):
    with pytest.raises(ConfigError, match="token"):
        StreamerConfig(url="ws://h:1", token=token)


def test_default_spool_lives_in_the_users_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("MEETCAP_DATA_DIR", raising=False)
    config = StreamerConfig(url="ws://h:1", token="t")
    assert config.resolved_spool_dir() == Path(tmp_path) / "meetcap" / "spool"
    chosen = StreamerConfig(url="ws://h:1", token="t", spool_dir=tmp_path / "s")
    assert chosen.resolved_spool_dir() == tmp_path / "s"


def test_backoff_settings_are_checked():
    with pytest.raises(ConfigError, match="backoff"):
        StreamerConfig(url="ws://h:1", token="t", backoff_base_s=2.0, backoff_cap_s=1.0)
