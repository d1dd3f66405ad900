"""The speakers extension (who spoke in frame flag bits 1-2) against real meetcap-server
processes: this checkout's, and the version-1 server from before the extension existed
(its code taken from git history), so old/new peers are proven to work together."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from meetcap.frames import SPEAKER_BOTH, SPEAKER_NOBODY, SPEAKER_OTHERS, SPEAKER_YOU
from meetcap.protocol import Welcome
from meetcap.server.sidecar import speaker_in_turns
from tests.server.wire import Wire, make_pcm, run
from tests.support.server_proc import TOKENS_ENV

REPO = Path(__file__).resolve().parents[2]
# The last commit before issue 10's speakers extension: a plain version-1 server.
OLD_SERVER_COMMIT = "5328f66"
# 2 s of you, 1 s of nobody, 2 s of others, 1 s of both.
SPEAKERS = [SPEAKER_YOU] * 20 + [SPEAKER_NOBODY] * 10 + [SPEAKER_OTHERS] * 20 + [SPEAKER_BOTH] * 10


async def _hello(wire: Wire, speakers: int | None) -> Welcome:
    assert wire.ws is not None
    await wire.ws.send(wire.conn.hello(None, None, time.time(), speakers=speakers))
    wire._reader = asyncio.create_task(wire._read())
    deadline = time.monotonic() + 5
    while wire.welcome is None and not wire._reader.done():
        await wire._wait_progress(deadline)
    assert wire.welcome is not None, await wire.closed()
    return wire.welcome


async def _send_labelled(wire: Wire, speakers: int | None) -> str:
    welcome = await _hello(wire, speakers)
    for seq, speaker in enumerate(SPEAKERS):
        assert wire.ws is not None
        await wire.ws.send(wire.conn.frame(seq, make_pcm(seq), speaker != 0, speaker))
    await wire.end(len(SPEAKERS) - 1)
    return welcome.session_id


def test_a_new_client_and_server_store_who_spoke_as_speaker_turns(fast_server):
    async def go():
        async with Wire(fast_server.url) as wire:
            session = await _send_labelled(wire, speakers=1)
            assert wire.welcome.speakers == 1
            return session

    session = run(go())
    sidecar = json.loads((fast_server.data_dir / f"{session}.json").read_text())
    assert sidecar["speaker_turns"] == [
        {"speaker": "you", "start_ms": 0, "end_ms": 2000},
        {"speaker": "others", "start_ms": 3000, "end_ms": 5000},
        {"speaker": "both", "start_ms": 5000, "end_ms": 6000},
    ]
    assert sidecar["speech_segments"] == [
        {"start_ms": 0, "end_ms": 2000}, {"start_ms": 3000, "end_ms": 6000}
    ]
    # What a transcript segment's `speaker` field gets for its time span.
    turns = sidecar["speaker_turns"]
    assert speaker_in_turns(turns, 200, 1800) == "you"
    assert speaker_in_turns(turns, 3100, 4900) == "others"
    assert speaker_in_turns(turns, 2000, 3000) is None
    assert speaker_in_turns(turns, 4000, 6000) == "both"


def test_an_old_client_still_may_not_set_bits_1_to_7(fast_server):
    """A hello without the extension: bits 1-2 stay unknown flags, refused as in v1."""

    async def go():
        async with Wire(fast_server.url) as wire:
            welcome = await _hello(wire, speakers=None)
            assert welcome.speakers is None  # the server offers nothing unasked
            await wire.send_frame(0, make_pcm(0), True)
            await wire.wait_acked(0)
            from meetcap.protocol.audio import encode_audio

            await wire.send_raw(encode_audio(1, make_pcm(1), True, SPEAKER_YOU))
            return await wire.closed()

    closed = run(go())
    assert closed.code == 4000 and closed.error.code == "bad_message"
    assert "speakers extension" in closed.error.message


@pytest.fixture
def old_server(tmp_path):
    """meetcap-server as it was before the extension, from git history."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs this checkout's git history (the old server's code)")
    tree = tmp_path / "old"
    tree.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD_SERVER_COMMIT, "meetcap"],
        capture_output=True, check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD_SERVER_COMMIT} is not in this clone (shallow?)")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap.server", "--port", "0", "--data-dir", str(data),
         "--catchup-x", "1000", "--realtime-slack-s", "1000"],
        cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=str(tree), MEETCAP_TOKENS=TOKENS_ENV,
                 PYTHONUNBUFFERED="1"),
    )
    try:
        for line in proc.stdout:
            match = re.search(r"listening on (ws://\S+)", line)
            if match:
                break
        else:
            pytest.fail("the old server did not start")
        # Prove it is the old code: its sidecar writer knows no speaker turns.
        assert "speaker_turns" not in (tree / "meetcap/server/sidecar.py").read_text()
        yield match.group(1), data
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_new_client_streams_to_an_old_server_without_the_bits(old_server):
    url, data = old_server

    async def go():
        async with Wire(url) as wire:
            session = await _send_labelled(wire, speakers=1)  # offered, not accepted
            assert wire.welcome.speakers is None
            return session

    session = run(go())  # an old server would close with 4000 on any bit 1-2
    sidecar = json.loads((data / f"{session}.json").read_text())
    assert sidecar["frames"] == len(SPEAKERS) and sidecar["finished"]
    assert "speaker_turns" not in sidecar
