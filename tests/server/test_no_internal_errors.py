"""Odd input and a failing disk get their documented answer, never an internal error
(issue 11, finding 3). Before the fix: two Authorization (or Origin) headers gave HTTP
500 and a traceback, with no token needed; a 400-digit started_at gave 1011 instead of
4000; a state file that could not be written gave 1011 instead of 4011."""

from __future__ import annotations

import errno
import json
import os

import pytest

from meetcap.protocol import CloseCode
from meetcap.server.state import embedded as embedded_state
from tests.server.conftest import FAST
from tests.server.inprocess import running
from tests.server.rawpeer import http_exchange, upgrade_request
from tests.server.test_security import HELLO, hello_with, raw_close, with_bystander
from tests.server.wire import Recording, Wire, run
from tests.support.server_proc import TOKEN, ServerProcess

INTERNAL = ("Traceback", "process_request failed", "opening handshake failed",
            "connection handler failed", "failed", " 500 ")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc = ServerProcess(
        tmp_path_factory.mktemp("odd-input-data"),
        dict(FAST, allowed_origin="https://app.example"),
    ).start()
    yield proc
    proc.kill()


def assert_no_internal_error(server: ServerProcess, since: int) -> None:
    log = "\n".join(server.output[since:])
    assert not any(word in log for word in INTERNAL), log


# Each header twice, once with a valid value: the first three are ours, the rest
# belong to the WebSocket handshake (websockets checks them).
DUPLICATES = {
    "Authorization": f"Authorization: Bearer {TOKEN}\r\n",
    "Authorization, no token": "Authorization: Bearer nobody-token-000\r\n",
    "Origin": "Origin: https://app.example\r\nOrigin: https://app.example\r\n",
    "Host": "Host: 127.0.0.1\r\n",
    "Upgrade": "Upgrade: websocket\r\n",
    "Connection": "Connection: Upgrade\r\n",
    "Sec-WebSocket-Key": "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "Sec-WebSocket-Version": "Sec-WebSocket-Version: 13\r\n",
    "Sec-WebSocket-Extensions": "Sec-WebSocket-Extensions: x\r\nSec-WebSocket-Extensions: y\r\n",
    "Sec-WebSocket-Protocol": "Sec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n",
}


@pytest.mark.parametrize("extra", DUPLICATES.values(), ids=DUPLICATES.keys())
def test_a_repeated_header_is_a_client_error_without_a_traceback(server, extra):
    since = len(server.output)
    request = upgrade_request(server.port, TOKEN, extra)
    status, head = run(with_bystander(server.url, lambda: http_exchange(server.port, request)))
    assert 400 <= status < 500 or status == 101, head
    if extra.startswith(("Authorization", "Origin")):
        assert status in (400, 401), head  # never let through: which one is meant?
    assert_no_internal_error(server, since)


@pytest.mark.parametrize(
    "fields",
    [dict(started_at=10**400), dict(started_at=-(10**400)), dict(started_at=10**308 * 10),
     dict(started_at=1e308, version=10**400)],
    ids=["400 digits", "minus 400 digits", "309 digits", "huge version"],
)
def test_a_huge_number_in_hello_is_a_bad_message(server, fields):
    since = len(server.output)
    closed = run(with_bystander(server.url, lambda: raw_close(server.url, hello_with(**fields))))
    if "version" in fields:
        assert closed.code == CloseCode.UNSUPPORTED_VERSION
    else:
        assert closed.code == CloseCode.BAD_MESSAGE and closed.error.code == "bad_message"
    assert_no_internal_error(server, since)


def test_a_huge_number_after_hello_is_answered(server):
    since = len(server.output)
    end = json.dumps({"type": "end", "last_seq": 10**400})
    closed = run(raw_close(server.url, HELLO, end))
    assert closed.code == CloseCode.BAD_MESSAGE and "last_seq" in closed.error.message
    assert_no_internal_error(server, since)


class ReadOnlyState:
    """Patch for the embedded store's state-file write: fails like a read-only or full disk."""

    def __init__(self, monkeypatch, error: int) -> None:
        self.on = False
        self.error = error
        original = embedded_state.atomic_write_json

        def write(path, obj):
            if self.on:
                raise OSError(self.error, os.strerror(self.error), str(path))
            return original(path, obj)

        monkeypatch.setattr(embedded_state, "atomic_write_json", write)


@pytest.mark.parametrize("error", [errno.EROFS, errno.ENOSPC], ids=["read-only", "full"])
def test_a_state_file_that_cannot_be_written_is_storage_failed(tmp_path, monkeypatch, error):
    disk = ReadOnlyState(monkeypatch, error)
    rec = Recording(seed=92)
    rec.extend(3)

    async def scenario():
        async with running(tmp_path) as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire)
            await wire.wait_acked(2)
            await wire.__aexit__()
            disk.on = True
            async with Wire(server.url) as wire:  # create: the new session's state
                created = await wire.hello()
            async with Wire(server.url) as wire:  # resume: the rotated token
                resumed = await wire.hello(rec.session_id, rec.token)
            disk.on = False
            wire = await rec.open(server.url)
            disk.on = True
            try:  # end: the session marked ended
                await wire.end(2)
                ended = None
            except ConnectionError:
                ended = await wire.closed()
            await wire.__aexit__()
            disk.on = False
            wire = await rec.open(server.url)  # the disk is back: the retry works
            done = await wire.end(2)
            await wire.__aexit__()
            return created, resumed, ended, done

    created, resumed, ended, done = run(scenario())
    for closed in (created, resumed, ended):
        assert closed.code == CloseCode.STORAGE_FAILED, closed
        assert closed.error.code == "storage_failed" and os.strerror(error) in closed.error.message
    assert done.frames == 3 and done.sha256 == rec.sha256()



# 1,400 NEL characters: 2,800 bytes of UTF-8 (within the 3,216-byte message limit), but
# 4 characters each in a Python repr and 6 bytes each once escaped in JSON.
LONG = "\x85" * 1400


def raw_json(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False)


def hello_raw(**fields: object) -> str:
    body = json.loads(HELLO)
    body.update(fields)
    return raw_json(body)


@pytest.mark.parametrize(
    "messages",
    [(hello_raw(format=LONG),), (hello_raw(client=[LONG]),), (hello_raw(session_id=LONG),),
     (HELLO, raw_json({"type": "end", "last_seq": LONG}))],
    ids=["format", "client", "session_id", "last_seq"],
)
def test_an_error_about_a_long_bad_value_stays_a_valid_server_message(server, messages):
    """The error quotes at most the start of a bad value: server messages are at most
    4,096 bytes (protocol.md section 2), and the client's codec refuses longer ones."""
    assert all(len(m.encode()) <= 3216 for m in messages)
    closed = run(raw_close(server.url, *messages))
    assert closed.code == CloseCode.BAD_MESSAGE and closed.error.code == "bad_message"
    assert len(closed.error.message) < 300
