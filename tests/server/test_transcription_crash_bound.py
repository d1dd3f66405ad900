"""A session whose audio crashes its transcription worker every time is given up after a
bounded number of crashes, reported to its client, not retried after a restart, and the
other session on the same worker is transcribed all the same.

The crash is injected deterministically with the worker's test-only fault-injection hook
(MEETCAP_FAULT_CRASH_SESSIONS_FILE: the worker exits abruptly, as a crash in the engine's
native code would, whenever it is about to work on a listed session). Everything else is
real: meetcap-server with --transcribe, its worker processes, websockets, espeak-ng speech.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

from websockets.asyncio.client import connect

from meetcap.protocol import encode_audio
from meetcap.server.transcription.worker import FAULT_CRASH_ENV
from meetcap.transcribe import formats
from tests.server import test_transcription
from tests.server.test_transcription import (
    SERVER,
    Heard,
    _worker_pids,
    same_finals,
    stored,
    streamer,
    submit,
)
from tests.support.server_proc import TOKEN

speech = test_transcription.speech  # the module-scoped fixture: three sentences

MAX_CRASHES = 3  # TranscriptionConfig.max_crashes


async def _until_failed(ws) -> str:
    """Read the connection's messages until a transcript_status says ``failed``."""
    async for text in ws:
        if isinstance(text, str):
            message = json.loads(text)
            if message["type"] == "transcript_status" and message.get("failed"):
                return message["failed"]
    raise AssertionError("the connection closed without a failed transcript_status")


async def doomed_client(url: str, frames, crash_file, resume=None):
    """A client asking for the transcript; on its first connection it names its new
    session in the crash file, then streams ``frames``. Returns (session id, resume
    token, the failed sentence it was sent)."""
    hello = {"type": "hello", "version": 1, "started_at": time.time(), "transcript": True}
    if resume is not None:
        hello.update(session_id=resume[0], resume_token=resume[1])
    async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                       compression=None) as ws:
        await ws.send(json.dumps(hello))
        welcome = json.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        if resume is None:
            crash_file.write_text(welcome["session_id"] + "\n")
            for f in frames:
                await ws.send(encode_audio(f.seq, f.pcm, f.speech))
        failed = await asyncio.wait_for(_until_failed(ws), 90)
        return welcome["session_id"], welcome["resume_token"], failed


def test_a_session_that_crashes_its_worker_is_given_up_and_the_other_one_transcribed(
    speech, meetcap_server_factory, tmp_path, monkeypatch
):
    _, frames, want = speech
    crash_file = tmp_path / "crash-sessions"
    crash_file.write_text("")
    monkeypatch.setenv(FAULT_CRASH_ENV, str(crash_file))
    server = meetcap_server_factory(**SERVER)  # one worker: both sessions share it

    heard = Heard()
    good = streamer(server.url, tmp_path, heard)
    feeding = threading.Thread(target=submit, args=(good, frames, 0.03))
    feeding.start()
    session_id, token, failed = asyncio.run(doomed_client(server.url, frames, crash_file))
    feeding.join()
    result = good.finish(120)
    assert result.ok, result.message
    same_finals(heard.finals, want)  # the other session, on the same worker, is whole
    same_finals(formats.from_json(stored(server.data_dir, result.session_id)[0]), want)

    assert f"crashed {MAX_CRASHES} times" in failed and "meetcap transcribe" in failed
    time.sleep(3)  # time for more restarts, were it still retried
    log = server.log_text()
    assert log.count(f"session {session_id}: fault injection") == MAX_CRASHES
    assert log.count(") died (status 70)") == MAX_CRASHES
    assert f"session {session_id}: transcription of this session stopped" in log
    doc = json.loads((server.data_dir / f"{session_id}.transcript.json").read_text())
    assert doc["failed"] == failed and not doc["complete"]
    assert not (server.data_dir / "transcribing" / f"{session_id}.lock").exists()

    # A restarted server does not retry it: the client that comes back is told again.
    server.restart(kill=True)
    again = asyncio.run(doomed_client(server.url, [], crash_file, resume=(session_id, token)))
    assert again[0] == session_id and again[2] == failed
    time.sleep(2)
    assert server.log_text().count(f"session {session_id}: fault injection") == MAX_CRASHES


def test_a_worker_killed_three_times_as_the_session_moves_on_does_not_give_it_up(
    speech, meetcap_server_factory, tmp_path
):
    """Crashes count only at one resume point: a worker killed during each of the three
    sentences (each time after the previous one's final was saved) is restarted every
    time and the transcript is whole."""
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    sent = 0
    for sentence in range(len(want)):
        # Real time into the sentence until its first partial: the worker is on it.
        while sent < len(frames):
            s.submit(frames[sent])
            sent += 1
            time.sleep(0.1)
            with heard.lock:
                if any(not x.final and x.id == sentence for x in heard.segments):
                    break
        (worker,) = _worker_pids(server.proc.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _worker_pids(server.proc.pid) in ([], [worker]):
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.1)
    submit(s, frames[sent:], pace_s=0.02)
    result = s.finish(120)
    assert result.ok, result.message
    same_finals(heard.finals, want)
    doc = stored(server.data_dir, result.session_id)[0]
    same_finals(formats.from_json(doc), want)
    assert doc["complete"] is True and "failed" not in doc
    log = server.log_text()
    assert log.count("restarting it") == len(want)
    assert "transcription of this session stopped" not in log
