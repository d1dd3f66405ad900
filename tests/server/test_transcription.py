"""Live transcription through the whole server (issue 9): real meetcap-server processes
with --transcribe (worker processes, the packaged Whisper tiny.en), the real client
Streamer over real websockets, espeak-ng speech with the real Silero VAD's flags.

The reference is the same engine and segmentation run offline in this process on the
same frames: the live transcript must hold exactly those finals (text and times), each
once, in the stored files and at the client, whatever breaks in between.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meetcap.client.config import StreamerConfig
from meetcap.client.streamer import Streamer
from meetcap.frames import SPEAKER_OTHERS, SPEAKER_YOU
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment
from tests.client.fault_proxy import FaultProxy
from tests.support.server_proc import TOKEN, TOKENS_ENV
from tests.support.transcript_corpus import SENTENCES, have_espeak, make_corpus

# Real time is not needed to test correctness: audio may run ahead of the wall clock.
SERVER = {"transcribe": True, "realtime_slack_s": 1000}


@pytest.fixture(scope="module")
def speech():
    """Three sentences (about 14 s, the third a quick one) as frames with the Silero
    VAD's flags, and the finals the engine gives for them offline."""
    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    from meetcap.transcribe.engine import load_engine
    from meetcap.transcribe.offline import frames_with_speech, transcribe_frames
    from meetcap.transcribe.stream import StreamingTranscriber

    corpus = make_corpus((SENTENCES[0], SENTENCES[1], SENTENCES[4]), pause_s=0.9)
    frames = frames_with_speech(corpus.samples)
    finals = transcribe_frames(StreamingTranscriber(load_engine()), frames)
    assert len(finals) == 3, [s.text for s in finals]
    return corpus, frames, finals


class Heard:
    """What the client's on_transcript callback got, in order, with arrival times."""

    def __init__(self) -> None:
        self.segments: list[TranscriptSegment] = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)

    def __call__(self, segment: TranscriptSegment) -> None:
        with self.changed:
            self.segments.append(segment)
            self.changed.notify_all()

    @property
    def finals(self) -> list[TranscriptSegment]:
        with self.lock:
            return [s for s in self.segments if s.final]

    def wait_for(self, test, timeout_s: float = 60.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: test(self.segments), timeout_s), (
                f"not heard in {timeout_s} s: {self.segments}"
            )


def streamer(url: str, tmp_path: Path, heard: Heard) -> Streamer:
    config = StreamerConfig(
        url=url, token=TOKEN, spool_dir=tmp_path / "spool", transcript=True,
        backoff_base_s=0.05, backoff_cap_s=0.5,
    )
    s = Streamer(config, on_transcript=heard)
    s.start()
    return s


def submit(s: Streamer, frames, pace_s: float = 0.0) -> None:
    for frame in frames:
        s.submit(frame)
        if pace_s:
            time.sleep(pace_s)


def same_finals(got: list[TranscriptSegment], want: list[TranscriptSegment]) -> None:
    assert [s.id for s in got] == list(range(len(want)))
    assert [(s.text, s.minor) for s in got] == [(s.text, s.minor) for s in want]
    assert [(round(s.start_s, 3), round(s.end_s, 3)) for s in got] == [
        (round(s.start_s, 3), round(s.end_s, 3)) for s in want
    ]


def stored(data_dir: Path, session_id: str) -> tuple[dict, str, str]:
    doc = json.loads((data_dir / f"{session_id}.transcript.json").read_text())
    vtt = (data_dir / f"{session_id}.vtt").read_text()
    srt = (data_dir / f"{session_id}.srt").read_text()
    return doc, vtt, srt


def assert_stored_transcript_complete(data_dir: Path, session_id: str,
                                      want: list[TranscriptSegment]) -> None:
    """The stored transcript holds exactly the finals ``want`` and says it is complete."""
    doc = stored(data_dir, session_id)[0]
    same_finals(formats.from_json(doc), want)
    assert doc["complete"] is True


def submit_interrupted_mid_sentence(s: Streamer, frames, want: list[TranscriptSegment],
                                    heard: Heard, interrupt) -> None:
    """Submit up to the middle of the second sentence in real time x2 (so partials come),
    wait for the first final, call ``interrupt()`` (a cut link, a killed server), then
    submit the rest at x5."""
    middle = int((want[1].start_s + want[1].end_s) / 2 * 10)
    submit(s, frames[:middle], pace_s=0.04)
    heard.wait_for(lambda segs: any(x.final and x.id == 0 for x in segs))
    interrupt()
    submit(s, frames[middle:], pace_s=0.02)


def transcription_workers(server) -> list:
    """The server's transcription worker processes (its children), once started."""
    import psutil

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = psutil.Process(server.proc.pid).children(recursive=True)
        if children:
            return children
        time.sleep(0.05)
    raise AssertionError("the server started no transcription worker process")


def taken_up(log_text: str, session_id: str) -> list[tuple[int, int]]:
    """Where a worker took the session's transcript up, per the server log: (frame, next
    segment) each time."""
    return [(int(seq), int(nxt)) for seq, nxt in re.findall(
        rf"session {session_id}: transcribing from frame (\d+) \(next segment (\d+)\)",
        log_text,
    )]


def test_stored_speech_gets_transcript_files_that_match_the_offline_engine(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    # Who spoke rides in the frames' flags (the speakers extension): the first sentence
    # "you", the second "others", the third nobody said.
    first, second = (range(round(w.start_s * 10), round(w.end_s * 10)) for w in want[:2])
    frames = [
        dataclasses.replace(
            f, speaker=SPEAKER_YOU if f.seq in first else SPEAKER_OTHERS if f.seq in second
            else None)
        for f in frames
    ]
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    # A machine too busy to transcribe, forced: the workers are stopped (SIGSTOP) while
    # the audio is stored, so the lag must be reported whatever this machine's speed
    # (a fast one kept up with a burst and never showed it). Then they catch up from disk.
    workers = transcription_workers(server)
    for w in workers:
        w.suspend()
    try:
        submit(s, frames)
        lags = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (lags and max(lags) >= 1.0):
            lags.append(s.status().transcript_lag_s or 0.0)
            time.sleep(0.05)
    finally:
        for w in workers:
            w.resume()
    assert max(lags) >= 1.0, "the worker's lag behind the stored audio was never reported"
    result = s.finish(90)
    assert result.ok, result.message
    same_finals(heard.finals, want)  # the last final came after `ended`, before finish returned
    doc, vtt, srt = stored(server.data_dir, result.session_id)
    got = formats.from_json(doc)
    same_finals(got, want)
    assert doc["complete"] is True and doc["session_id"] == result.session_id
    assert vtt == formats.to_vtt(got) and srt == formats.to_srt(got)
    assert [x.speaker for x in got] == ["you", "others", None]
    assert [x.speaker for x in heard.finals] == ["you", "others", None]
    assert s.status().transcript_lag_s == 0.0
    assert not (server.data_dir / "transcribing" / f"{result.session_id}.lock").exists()


def test_a_client_gets_every_final_exactly_once_across_a_forced_reconnect(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    proxy = FaultProxy(server.port)
    proxy.start()
    try:
        heard = Heard()
        s = streamer(proxy.url, tmp_path, heard)
        # No close frames at the cut: the client must reconnect and resume.
        submit_interrupted_mid_sentence(s, frames, want, heard, proxy.cut_now)
        result = s.finish(90)
        assert result.ok, result.message
        assert s.status().reconnects >= 1
    finally:
        proxy.stop()
    same_finals(heard.finals, want)
    same_finals(formats.from_json(stored(server.data_dir, result.session_id)[0]), want)
    # Partials came too, each for an utterance whose final had not come yet.
    partials = [x for x in heard.segments if not x.final]
    assert partials
    for x in partials:
        assert x.id >= len([f for f in heard.segments[: heard.segments.index(x)] if f.final])


def test_server_killed_mid_session_and_restarted_every_utterance_once_stored_and_heard(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    # SIGKILL: the worker dies with the server (its pipe closes).
    submit_interrupted_mid_sentence(s, frames, want, heard,
                                    lambda: server.restart(kill=True))
    result = s.finish(120)
    assert result.ok, result.message
    same_finals(heard.finals, want)
    assert_stored_transcript_complete(server.data_dir, result.session_id, want)


def _worker_pids(server_pid: int) -> list[int]:
    """The transcription workers: the server's child processes started by spawn."""
    pids = []
    for task in Path(f"/proc/{server_pid}/task").iterdir():
        for pid in (task / "children").read_text().split():
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"multiprocessing" in cmdline and b"spawn_main" in cmdline:
                pids.append(int(pid))
    return pids


def test_a_worker_killed_mid_utterance_is_restarted_and_the_utterance_transcribed(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    start_of_second = int(want[1].start_s * 10)
    submit(s, frames[:start_of_second], pace_s=0.02)
    # Real time through the second sentence until its first partial: mid-utterance.
    rest = iter(frames[start_of_second:])
    for frame in rest:
        s.submit(frame)
        time.sleep(0.1)
        with heard.lock:
            if any(not x.final and x.id == 1 for x in heard.segments):
                break
    else:
        pytest.fail("no partial of the second sentence")
    (worker,) = _worker_pids(server.proc.pid)
    os.kill(worker, signal.SIGKILL)
    submit(s, list(rest), pace_s=0.02)
    result = s.finish(120)
    assert result.ok, result.message
    same_finals(heard.finals, want)
    same_finals(formats.from_json(stored(server.data_dir, result.session_id)[0]), want)
    log = server.log_text()
    assert f"pid {worker}) died" in log and "restarting it" in log
    assert _worker_pids(server.proc.pid) != [worker]


@pytest.mark.parametrize("model,words", [
    ("/nonexistent/model-dir", "does not exist"),
    ("BROKEN", "cannot be loaded"),
])
def test_a_missing_or_broken_model_is_a_clear_error_at_start(tmp_path, model, words):
    if model == "BROKEN":
        broken = tmp_path / "broken-model"
        broken.mkdir()
        for name in ("model.bin", "config.json", "tokenizer.json"):
            (broken / name).write_text("not a model")
        model = str(broken)
    env = dict(os.environ, MEETCAP_TOKENS=TOKENS_ENV)
    done = subprocess.run(
        [sys.executable, "-m", "meetcap.server", "--port", "0", "--data-dir",
         str(tmp_path / "data"), "--transcribe", "--model", model],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("meetcap-server: error: transcription cannot start") and words in last
    assert "listening" not in done.stdout


def test_a_client_that_does_not_ask_gets_no_transcript_messages(
    speech, meetcap_server_factory
):
    """An old client (hello without the extension's fields) sees only the messages of
    the base protocol, while the server transcribes the session all the same."""
    import asyncio

    from websockets.asyncio.client import connect

    from meetcap.protocol import encode_audio

    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)

    async def old_client() -> tuple[list[str], str]:
        async with connect(server.url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                           compression=None) as ws:
            await ws.send(json.dumps({"type": "hello", "version": 1, "started_at": time.time()}))
            welcome = json.loads(await ws.recv())
            for f in frames:
                await ws.send(encode_audio(f.seq, f.pcm, f.speech))
            await ws.send(json.dumps({"type": "end", "last_seq": frames[-1].seq}))
            kinds = [json.loads(m)["type"] async for m in ws]
            return kinds, welcome["session_id"]

    kinds, session_id = asyncio.run(asyncio.wait_for(old_client(), 60))
    assert set(kinds) == {"ack", "ended"} and kinds[-1] == "ended"
    path = server.data_dir / f"{session_id}.transcript.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text())["complete"]:
            break
        time.sleep(0.2)
    same_finals(formats.from_json(json.loads(path.read_text())), want)


def test_a_session_that_ended_before_its_transcript_was_done_is_finished_after_a_restart(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    config = StreamerConfig(url=server.url, token=TOKEN, spool_dir=tmp_path / "spool")
    s = Streamer(config)  # no transcript asked: `ended` comes as soon as the audio is stored
    s.start()
    submit(s, frames)
    result = s.finish(60)
    assert result.ok, result.message
    server.restart(kill=True)  # the worker is still seconds behind: its lock file stays
    path = server.data_dir / f"{result.session_id}.transcript.json"
    assert not (path.exists() and json.loads(path.read_text())["complete"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if path.exists() and json.loads(path.read_text())["complete"]:
            break
        time.sleep(0.2)
    same_finals(formats.from_json(json.loads(path.read_text())), want)
    assert not (server.data_dir / "transcribing" / f"{result.session_id}.lock").exists()


def test_a_resume_on_another_instance_gets_every_final_exactly_once(
    speech, meetcap_server_factory, tmp_path, redis_url
):
    """Two instances share Redis and the data directory: the session moves from the first
    (still alive: a takeover) to the second mid-sentence; the second's worker takes the
    transcript over from the files the first one's worker let go of."""
    _, frames, want = speech
    shared = tmp_path / "shared"
    first = meetcap_server_factory(data_dir=shared, redis=redis_url, **SERVER)
    second = meetcap_server_factory(data_dir=shared, redis=redis_url, **SERVER)
    proxy = FaultProxy(first.port)
    proxy.start()
    try:
        heard = Heard()
        s = streamer(proxy.url, tmp_path, heard)

        def move_to_the_second() -> None:
            proxy.retarget(second.port)
            proxy.cut_now()  # the client resumes through the proxy: on the second instance

        submit_interrupted_mid_sentence(s, frames, want, heard, move_to_the_second)
        result = s.finish(90)
        assert result.ok, result.message
    finally:
        proxy.stop()
    same_finals(heard.finals, want)
    same_finals(formats.from_json(stored(shared, result.session_id)[0]), want)
    # The second instance's worker carried on where the first one's left the files.
    took_up = taken_up(second.log_text(), result.session_id)
    assert took_up and took_up[0][0] > 0 and took_up[0][1] >= 1, took_up


def test_two_workers_share_the_sessions_and_each_transcript_is_whole(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(transcribe_workers=2, **SERVER)
    heard = [Heard(), Heard()]
    streamers = [streamer(server.url, tmp_path / f"c{i}", h) for i, h in enumerate(heard)]
    threads = [threading.Thread(target=submit, args=(s, frames, 0.01)) for s in streamers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [s.finish(120) for s in streamers]
    for result, h in zip(results, heard, strict=True):
        assert result.ok, result.message
        same_finals(h.finals, want)
        same_finals(formats.from_json(stored(server.data_dir, result.session_id)[0]), want)
    workers = {
        re.search(rf"\[worker (\d+)\]: session {r.session_id}: transcribing", server.log_text())
        .group(1) for r in results
    }
    assert len(workers) == 2, "each session went to its own worker"
