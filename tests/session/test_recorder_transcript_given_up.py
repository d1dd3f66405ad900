"""When the server gives up transcribing the session (its worker crashed on the same audio
again and again), the recorder says so once through RecorderListener.on_problem, in the
server's words (which name `meetcap transcribe <id>.wav`), and the recording is kept whole.

The crash is the transcription worker's test-only fault-injection hook
(MEETCAP_FAULT_CRASH_SESSIONS_FILE); capture is the synthetic capture (tests/audio/
helpers.py, a sine in real time). The rest is real: the pipeline, the streamer, the
built-in server with its worker processes and the packaged Whisper model.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from meetcap.audio.manager import CaptureSettings
from meetcap.client.status import StreamStatus
from meetcap.server.transcription.worker import FAULT_CRASH_ENV
from meetcap.session import Recorder, RecorderListener, SessionSettings
from tests.audio.helpers import SYNTHETIC_MIC, SyntheticCapture, synthetic_devices

pytestmark = pytest.mark.timeout(240)

FAST_STREAMER = dict(backoff_base_s=0.05, backoff_cap_s=0.5, open_timeout_s=5.0)


class Doomed(RecorderListener):
    """Names the session in the crash file as soon as the server welcomes it."""

    def __init__(self, crash_file: Path) -> None:
        self.crash_file = crash_file
        self.session_id: str | None = None
        self.problems: list[str] = []
        self.ended = threading.Event()

    def on_stream_status(self, status: StreamStatus) -> None:
        if self.session_id is None and status.session_id is not None:
            self.session_id = status.session_id
            self.crash_file.write_text(status.session_id + "\n")

    def on_problem(self, message: str) -> None:
        self.problems.append(message)

    def on_capture_ended(self, message: str | None) -> None:
        self.ended.set()


def test_a_transcript_the_server_gives_up_is_one_problem_in_words_and_the_audio_is_kept(
    tmp_path, monkeypatch
):
    crash_file = tmp_path / "crash-sessions"
    crash_file.write_text("")
    monkeypatch.setenv(FAULT_CRASH_ENV, str(crash_file))  # the built-in server's workers
    settings = SessionSettings(
        capture=CaptureSettings(mic_device_id=SYNTHETIC_MIC.id, normalize=False, vad=False),
    ).validate()  # transcribe: on by default
    listener = Doomed(crash_file)
    recorder = Recorder(
        settings, listener=listener, data_root=tmp_path / "data",
        capture_factory=SyntheticCapture, lister=synthetic_devices,
        streamer_options=FAST_STREAMER, finish_timeout_s=60.0,
    )
    try:
        recorder.start(max_frames=50)
        assert listener.ended.wait(30)
        result = recorder.stop()
    finally:
        recorder.close()
    assert result.ok, result.message  # the audio reached the server whole
    session_id = listener.session_id
    assert session_id is not None and result.session_id == session_id
    told = [p for p in listener.problems if "crashed" in p]
    assert len(told) == 1, listener.problems  # once, although every later status repeats it
    assert f"meetcap transcribe {session_id}.wav" in told[0], told
    assert told[0][0].isupper() and told[0].endswith("."), told  # a sentence
    assert recorder.last_status is not None
    assert recorder.last_status.transcript_failed is not None
    assert (tmp_path / "data" / "sessions" / f"{session_id}.wav").exists()
