"""docs/protocol.md as served: one test per rule the spec decides, each driving a real
server over a real socket with a raw peer that writes the bytes the spec describes
(no meetcap client code chooses what is sent)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from meetcap.protocol import CloseCode
from tests.server.conformance_peer import FORMAT, exchange, frame, hello
from tests.server.inprocess import running
from tests.server.rawpeer import OP_TEXT
from tests.server.wire import run

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _serve(tmp_path, scenario, **overrides):
    async def main():
        async with running(tmp_path / "data", **overrides) as server:
            return await scenario(server.port)

    return run(main(), timeout_s=120)


def _code(answer) -> int | None:
    return answer.close_code


def test_hello_version_is_the_json_integer_1(tmp_path):
    async def scenario(port):
        return {
            repr(v): await exchange(port, [hello(version=v)], until_welcome=True)
            for v in (1, 1.0, True, "1", 2)
        }

    answers = _serve(tmp_path, scenario)
    assert "welcome" in answers["1"].types()
    for mistyped in ("1.0", "True", "'1'"):
        assert _code(answers[mistyped]) == CloseCode.BAD_MESSAGE, mistyped
        assert answers[mistyped].first("error")["code"] == "bad_message"
    assert _code(answers["2"]) == CloseCode.UNSUPPORTED_VERSION


def test_format_is_optional_and_when_present_exact_json(tmp_path):
    cases = {
        "absent": ...,
        "exact": FORMAT,
        "float rate": dict(FORMAT, sample_rate=16000.0),
        "bool channels": dict(FORMAT, channels=True),
        "extra key": dict(FORMAT, bits=16),
        "missing key": {k: v for k, v in FORMAT.items() if k != "frame_ms"},
    }

    async def scenario(port):
        return {
            name: await exchange(port, [hello(format=value)], until_welcome=True)
            for name, value in cases.items()
        }

    answers = _serve(tmp_path, scenario)
    assert "welcome" in answers["absent"].types() and "welcome" in answers["exact"].types()
    for name in ("float rate", "bool channels", "extra key", "missing key"):
        assert _code(answers[name]) == CloseCode.BAD_MESSAGE, name


def test_anything_after_end_is_bad_message_and_the_session_still_ends(tmp_path):
    async def scenario(port):
        # One write: hello, two frames, end, then one frame too many.
        first = await exchange(
            port, [hello(), frame(0), frame(1), b'{"type":"end","last_seq":1}', frame(2)]
        )
        return first

    answer = _serve(tmp_path, scenario)
    assert _code(answer) == CloseCode.BAD_MESSAGE, answer
    assert "ended" not in answer.types()
    assert "follow end" in answer.first("error")["message"]
    # The audio was stored and the session finalised all the same.
    (sidecar,) = [p for p in (tmp_path / "data").glob("*.json")]
    meta = json.loads(sidecar.read_text())
    assert meta["frames"] == 2 and meta["finished"] is True


def test_every_message_to_the_server_is_at_most_3216_bytes_text_included(tmp_path):
    def padded(size: int) -> bytes:
        text = hello(client="")
        return hello(client="x" * (size - len(text)))

    async def scenario(port):
        return (
            await exchange(port, [padded(3216)], until_welcome=True),
            await exchange(port, [padded(3217)]),
        )

    fits, too_big = _serve(tmp_path, scenario)
    assert "welcome" in fits.types()
    assert _code(too_big) == CloseCode.MESSAGE_TOO_BIG and too_big.texts == []


def test_the_first_message_is_decoded_before_its_place_is_judged(tmp_path):
    async def scenario(port):
        return {
            "not json": await exchange(port, [b"{nope"]),
            "bad hello": await exchange(port, [hello(started_at=-1)]),
            "end first": await exchange(port, [b'{"type":"end","last_seq":-1}']),
            "frame first": await exchange(port, [frame(0)]),
            "two hellos": await exchange(port, [hello(), hello()]),
        }

    answers = _serve(tmp_path, scenario)
    assert _code(answers["not json"]) == CloseCode.BAD_MESSAGE
    assert _code(answers["bad hello"]) == CloseCode.BAD_MESSAGE
    assert _code(answers["end first"]) == CloseCode.HELLO_REQUIRED
    assert _code(answers["frame first"]) == CloseCode.HELLO_REQUIRED
    assert _code(answers["two hellos"]) == CloseCode.HELLO_REQUIRED


def test_a_frame_is_checked_whole_before_its_seq_so_a_bad_duplicate_is_4002(tmp_path):
    async def scenario(port):
        return (
            await exchange(port, [hello(), frame(0), frame(1), frame(0, crc_delta=1)]),
            await exchange(port, [hello(), frame(0), frame(0, flags=0x80)]),
            await exchange(port, [hello(), frame(0), frame(0)], timeout_s=1.0),
        )

    bad_crc, bad_flags, good_duplicate = _serve(tmp_path, scenario)
    assert _code(bad_crc) == CloseCode.BAD_CHECKSUM
    assert _code(bad_flags) == CloseCode.BAD_MESSAGE
    assert good_duplicate.close_code is None  # dropped and acked, the connection goes on
    assert {"type": "ack", "seq": 0} in good_duplicate.texts


def test_a_hello_without_started_at_gets_the_whole_grace(tmp_path):
    """start = created - grace (30 s) when started_at is omitted: 30 s + the 2 s slack
    of audio may arrive at once. Frames beyond are rate_limited; the first refused one
    shows where the limit is (the clock runs while frames are sent: a margin of 5 s)."""
    limit = (30 + 2) * 10  # frames
    margin = 50

    async def scenario(port):
        frames = [frame(seq) for seq in range(limit + margin)]
        return await exchange(port, [hello(started_at=...), *frames], timeout_s=10)

    answer = _serve(tmp_path, scenario, realtime_slack_s=2, offline_grace_s=30)
    assert _code(answer) == CloseCode.RATE_LIMITED, answer.types()
    refused = int(answer.first("error")["message"].split()[1])
    # Every frame inside the grace passed; the grace is not larger than 30 s.
    assert limit <= refused < limit + margin, refused


def test_websocket_layer_closes_with_1002_and_1007(tmp_path):
    async def scenario(port):
        unmasked = bytes([0x81, 5]) + b"hello"  # a client frame MUST be masked
        return (
            await exchange(port, [], raw=unmasked),
            await exchange(port, [(OP_TEXT, b'{"type":"hello","client":"\xff\xfe"}')]),
        )

    protocol_error, bad_utf8 = _serve(tmp_path, scenario)
    assert _code(protocol_error) == 1002 and protocol_error.texts == []
    assert _code(bad_utf8) == 1007 and bad_utf8.texts == []


def test_the_sidecar_has_exactly_the_fields_server_md_lists(tmp_path):
    async def scenario(port):
        return await exchange(port, [hello(), frame(0), b'{"type":"end","last_seq":0}'])

    answer = _serve(tmp_path, scenario)
    assert "ended" in answer.types()
    (sidecar,) = list((tmp_path / "data").glob("*.json"))
    meta = json.loads(sidecar.read_text())
    text = (DOCS / "server.md").read_text()
    bullet = re.search(r"`<id>\.json` - the sidecar, every field:(.*?)\n\* ", text, re.S)
    assert bullet is not None
    documented = set(re.findall(r"`([a-z_0-9]+)`", bullet.group(1)))
    shown = set(meta) | set(meta["format"]) | {"start_ms", "end_ms"}
    assert set(meta) <= documented and set(meta["format"]) <= documented
    assert documented - shown <= {"null"}, documented - shown


def test_the_spec_states_one_size_for_messages_to_the_server():
    text = (DOCS / "protocol.md").read_text()
    assert "a control message | 4,096" not in text
    assert "every message to the server, binary or text, is at most 3,216 bytes" in text


def test_duplicates_answer_at_once_with_what_is_stored(tmp_path):
    """Section 6: a duplicate is acked at once with what is durably stored."""

    async def scenario(port):
        frames = [frame(seq) for seq in range(20)]
        return await exchange(port, [hello(), *frames, frame(3)], timeout_s=1.5)

    answer = _serve(tmp_path, scenario)
    assert answer.close_code is None
    assert max(t["seq"] for t in answer.texts if t.get("type") == "ack") == 19
