"""Identifiers are checked whole (issue 11, finding 4): ``re.match`` with ``$`` lets a
value through that ends in a newline (``$`` also matches before a final ``\\n``).
Session ids, resume tokens, user names and server tokens are full-matched now."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

import meetcap
from meetcap.errors import ConfigError, ProtocolError
from meetcap.protocol import CloseCode, decode_message
from meetcap.server.config import ServerConfig, check_token_pair, parse_tokens_env
from tests.server.test_security import HELLO, new_session, raw_close, with_bystander
from tests.server.wire import run

PACKAGE = Path(meetcap.__file__).resolve().parent


def resume_hello(session_id: str, token: str) -> str:
    body = json.loads(HELLO)
    body.update(session_id=session_id, resume_token=token)
    return json.dumps(body)


def test_a_session_id_or_resume_token_ending_in_a_newline_is_a_bad_message(fast_server):
    url = fast_server.url

    async def scenario():
        rec = await new_session(url)  # a real session: only the newline is wrong
        return [
            await raw_close(url, resume_hello(rec.session_id + "\n", rec.token)),
            await raw_close(url, resume_hello(rec.session_id, rec.token + "\n")),
        ]

    for closed in run(with_bystander(url, scenario)):
        assert closed.code == CloseCode.BAD_MESSAGE and closed.error.code == "bad_message"
        # A malformed resume token may still be a real one: it is never echoed back.
        assert "\n'" not in closed.error.message


@pytest.mark.parametrize(
    "text",
    [
        '{"type":"welcome","session_id":"abc\\n","resume_token":"%s","acked":-1,"epoch":0}'
        % ("t" * 22),
        '{"type":"welcome","session_id":"abc","resume_token":"%s\\n","acked":-1,"epoch":0}'
        % ("t" * 22),
        '{"type":"ended","session_id":"abc\\n","frames":0,"duration_ms":0,"sha256":"x"}',
    ],
    ids=["welcome id", "welcome token", "ended id"],
)
def test_a_server_message_with_a_newline_ended_id_is_refused_by_the_codec(text):
    with pytest.raises(ProtocolError):
        decode_message(text)


@pytest.mark.parametrize(
    ("user", "token"),
    [("alice\n", "alice-token-123"), ("alice", "alice-token-123\n")],
    ids=["user", "token"],
)
def test_a_user_or_token_ending_in_a_newline_is_a_config_error(user, token):
    with pytest.raises(ConfigError):
        check_token_pair(user, token, "test")
    with pytest.raises(ConfigError):
        ServerConfig(tokens={token: user})


def test_the_environment_form_still_trims_spaces_around_pairs():
    assert parse_tokens_env(" alice:alice-token-123 ,\n") == {"alice-token-123": "alice"}


def anchored_patterns() -> list[str]:
    """Regex literals in the package that end in a bare ``$``, as ``path:line pattern``."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "re"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.search(r"(?<!\\)\$\Z", node.args[0].value)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.args[0].value}")
    return found


def test_no_pattern_in_the_package_ends_in_a_bare_dollar():
    """``$`` matches before a trailing newline: patterns end in ``\\Z`` or are
    full-matched without anchors."""
    assert anchored_patterns() == []
