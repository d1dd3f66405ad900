"""A session whose transcription the server gives up (its worker crashed on the same audio
again and again) reaches the Streamer's user as a sentence: StreamStatus.transcript_failed,
through on_status at once, while the audio is delivered and verified all the same.

The crash is the worker's test-only fault-injection hook (MEETCAP_FAULT_CRASH_SESSIONS_FILE,
see tests/server/test_transcription_crash_bound.py); everything else is real: the
meetcap-server subprocess with --transcribe and its worker processes, websockets over
loopback, the Streamer with its spool.
"""

from __future__ import annotations

import threading
import time

import pytest

from meetcap.client import Streamer, StreamerConfig
from meetcap.client.status import StreamStatus
from meetcap.protocol.messages import TranscriptStatus, decode_message
from meetcap.server.transcription.worker import FAULT_CRASH_ENV
from tests.client.frames import synthetic_frames
from tests.support.server_proc import TOKEN

pytestmark = pytest.mark.timeout(240)

SERVER = {"transcribe": True, "realtime_slack_s": 1000}  # one worker


class Statuses:
    """Every StreamStatus on_status handed over, in order."""

    def __init__(self) -> None:
        self.seen: list[StreamStatus] = []
        self.changed = threading.Condition()

    def __call__(self, status: StreamStatus) -> None:
        with self.changed:
            self.seen.append(status)
            self.changed.notify_all()

    def wait_for(self, test, timeout_s: float) -> StreamStatus:
        with self.changed:
            found = self.changed.wait_for(
                lambda: next((s for s in self.seen if test(s)), None), timeout_s)
        assert found, f"no such status within {timeout_s} s; got {self.seen[-3:]}"
        return found


def test_the_failed_sentence_is_decoded_and_a_non_string_is_refused():
    status = decode_message('{"type":"transcript_status","lag_s":2,"next_id":0,'
                            '"complete":false,"failed":"it crashed"}')
    assert isinstance(status, TranscriptStatus) and status.failed == "it crashed"
    plain = decode_message('{"type":"transcript_status","lag_s":0,"next_id":3}')
    assert isinstance(plain, TranscriptStatus) and plain.failed is None
    with pytest.raises(Exception, match="failed"):
        decode_message('{"type":"transcript_status","lag_s":0,"next_id":3,"failed":7}')


def test_a_transcript_the_server_gives_up_is_told_through_on_status_and_the_audio_is_whole(
    meetcap_server_factory, tmp_path, monkeypatch
):
    crash_file = tmp_path / "crash-sessions"
    crash_file.write_text("")
    monkeypatch.setenv(FAULT_CRASH_ENV, str(crash_file))
    server = meetcap_server_factory(**SERVER)
    statuses = Statuses()
    config = StreamerConfig(url=server.url, token=TOKEN, spool_dir=tmp_path / "spool",
                            transcript=True, backoff_base_s=0.05, backoff_cap_s=0.5)
    streamer = Streamer(config, on_status=statuses)
    streamer.start()
    try:
        welcomed = statuses.wait_for(lambda s: s.session_id is not None, 30)
        session_id = welcomed.session_id
        crash_file.write_text(session_id + "\n")  # before any audio: every step crashes
        frames = list(synthetic_frames(40))  # 4 s of noise: the worker steps on it
        for frame in frames:
            streamer.submit(frame)
            time.sleep(0.02)
        assert streamer.status().transcript_failed is None  # nothing said before it fails

        told = statuses.wait_for(lambda s: s.transcript_failed is not None, 120)
        sentence = told.transcript_failed
        assert sentence is not None
        assert "crashed 3 times" in sentence, sentence
        assert f"meetcap transcribe {session_id}.wav" in sentence, sentence
        assert streamer.status().transcript_failed == sentence  # it stays said

        result = streamer.finish(60)
    finally:
        streamer.close()
    assert result.ok and result.verified, result.message  # the audio is stored whole
    assert result.frames == len(frames)
    # Said once: later statuses repeat the same sentence, none says another.
    assert {s.transcript_failed for s in statuses.seen} == {None, sentence}
    assert server.log_text().count(f"session {session_id}: fault injection") == 3
