"""No log level writes a secret (issue 11, finding 5). Before the fix, at
``--log-level debug`` the websockets logger wrote the ``Authorization`` header, query
strings and every frame, resume tokens included. Secrets here: bearer tokens (good and
bad), tokens in a query string, cookies, and the resume tokens of hello and welcome."""

from __future__ import annotations

import time

import pytest
from websockets.exceptions import InvalidStatus

from tests.server.conftest import FAST
from tests.server.rawpeer import http_exchange, upgrade_request
from tests.server.test_security import HELLO, raw_close
from tests.server.wire import Recording, Wire, run
from tests.support.server_proc import TOKEN

WRONG_TOKEN = "wrong-secret-token-4821"
QUERY_SECRET = "query-secret-5937"
COOKIE_SECRET = "cookie-secret-7719"
PROXY_SECRET = "proxy-secret-3302"


@pytest.mark.parametrize("level", ["debug", "info"])
def test_no_secret_reaches_the_log(meetcap_server_factory, level):
    server = meetcap_server_factory(**dict(FAST, log_level=level))
    resume_tokens: list[str] = []

    async def scenario():
        rec = Recording(seed=95)
        rec.extend(3)
        wire = await rec.open(server.url)  # welcome: resume token 1
        resume_tokens.append(rec.token)
        await rec.send_from_ack(wire)
        await wire.wait_acked(2)
        await wire.__aexit__()
        wire = await rec.open(server.url)  # hello with token 1, welcome with token 2
        resume_tokens.append(rec.token)
        await wire.__aexit__()
        # A malformed copy of the live token (a trailing newline) is refused unechoed.
        body = HELLO[:-1] + f',"session_id":"{rec.session_id}","resume_token":"{rec.token}\\n"}}'
        await raw_close(server.url, body)
        with pytest.raises(InvalidStatus):  # 401 for someone's mistyped token
            async with Wire(server.url, WRONG_TOKEN):
                pass

    async def odd_requests():
        for request in (
            upgrade_request(server.port, TOKEN, path=f"/v1/stream?token={QUERY_SECRET}&x=1"),
            upgrade_request(server.port, TOKEN, path=f"/nowhere?access_token={QUERY_SECRET}"),
            upgrade_request(
                server.port, WRONG_TOKEN,
                f"Cookie: session={COOKIE_SECRET}\r\nProxy-Authorization: Basic {PROXY_SECRET}\r\n",
            ),
        ):
            await http_exchange(server.port, request)

    run(scenario())
    run(odd_requests())
    time.sleep(0.3)  # the log pump
    log = server.log_text()
    if level == "debug":  # the debug log did run: requests and frames are in it
        assert "< GET /v1/stream" in log and "TEXT" in log, log[-2000:]
    assert len(resume_tokens) == 2
    for secret in (TOKEN, WRONG_TOKEN, QUERY_SECRET, COOKIE_SECRET, PROXY_SECRET, *resume_tokens):
        assert secret not in log, f"{secret!r} is in the {level} log"


@pytest.mark.parametrize(
    "url",
    ["redis://:redis-pass-8812@127.0.0.1:1/0", "redis://meetcap:redis-pass-8812@127.0.0.1:1/0",
     "bogus://meetcap:redis-pass-8812@127.0.0.1:1/0"],
    ids=["password", "user and password", "bad scheme"],
)
def test_a_redis_password_is_not_in_the_error(tmp_path, url):
    from tests.server.test_cli import server_cli

    result = server_cli("--redis", url, "--data-dir", str(tmp_path),
                        env={"MEETCAP_TOKENS": f"alice:{TOKEN}"})
    assert result.returncode == 2 and "Redis" in result.stderr, result.stderr
    assert "redis-pass-8812" not in result.stderr + result.stdout, result.stderr


CLIENT_SCRIPT = """
import asyncio, logging, sys
logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
import meetcap.client  # the streaming client: its websockets logger is filtered
from websockets.asyncio.client import connect

async def main(url, token):
    async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}):
        pass

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_the_client_side_debug_log_has_no_token(fast_server):
    """The websockets client logs its request headers at debug level too."""
    import os
    import subprocess
    import sys

    from tests.server.test_cli import REPO

    result = subprocess.run(
        [sys.executable, "-c", CLIENT_SCRIPT, fast_server.url + f"?token={QUERY_SECRET}", TOKEN],
        capture_output=True, text=True, timeout=30,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    assert "> GET /v1/stream" in result.stderr and "Authorization" in result.stderr
    assert TOKEN not in result.stderr and QUERY_SECRET not in result.stderr, result.stderr


def test_the_server_settings_do_not_show_their_tokens():
    """A settings object in a log line or a traceback names no token."""
    from meetcap.server import ServerConfig

    assert TOKEN not in repr(ServerConfig(tokens={TOKEN: "alice"}))
