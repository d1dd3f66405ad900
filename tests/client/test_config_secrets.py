"""A StreamerConfig lands in logs, tracebacks and bug reports: its repr and its error
messages never show the token, a URL's password or a secret query parameter."""

from __future__ import annotations

import logging
import traceback

import pytest

from meetcap.client.config import StreamerConfig
from meetcap.errors import ConfigError

TOKEN = "s3cret-bearer-token-0123456789"


def test_repr_and_str_hide_the_token_and_url_secrets(tmp_path):
    config = StreamerConfig(
        url="wss://meet.example:8443/v1/stream?key=k3y-in-query", token=TOKEN,
        spool_dir=tmp_path,
    )
    for text in (repr(config), str(config), f"{config}", repr([config])):
        assert TOKEN not in text and "k3y-in-query" not in text
        assert "token='[redacted]'" in text and "meet.example:8443" in text
        assert str(tmp_path) in text  # the rest is shown as before


def test_a_config_in_a_logged_traceback_shows_no_token(tmp_path, caplog):
    config = StreamerConfig(url="ws://127.0.0.1:1/v1/stream", token=TOKEN, spool_dir=tmp_path)
    with caplog.at_level(logging.ERROR):
        try:
            raise RuntimeError(f"cannot start with {config!r}")
        except RuntimeError:
            logging.getLogger("test").exception("failed")
    assert caplog.text and TOKEN not in caplog.text
    assert TOKEN not in "".join(traceback.format_exc())


def test_a_url_with_a_password_is_refused_without_quoting_it():
    with pytest.raises(ConfigError) as info:
        StreamerConfig(url="ws://alice:pa55word@host:1/", token=TOKEN)
    assert "pa55word" not in str(info.value) and "user name or password" in str(info.value)
