"""The recorder's live transcript (issue 9): the built-in server transcribes by default
and RecorderListener.on_transcript hears it; the setting switches it off.

Capture is the synthetic capture (tests/audio/helpers.py) delivering espeak-ng speech in
real time; the rest is real: the pipeline with the Silero VAD, the streamer, the
built-in server with its transcription worker (the packaged Whisper tiny.en).
"""

from __future__ import annotations

import functools
import threading

import pytest

from meetcap.audio.manager import CaptureSettings
from meetcap.session import Recorder, RecorderListener, SessionSettings
from meetcap.transcribe.segments import TranscriptSegment
from tests.audio.helpers import SYNTHETIC_MIC, SyntheticCapture, synthetic_devices
from tests.support.speech import make_speech
from tests.support.transcript_corpus import wer

SENTENCE = "The customer asked for a simpler way to export their reports."
FAST_STREAMER = dict(backoff_base_s=0.05, backoff_cap_s=0.5, open_timeout_s=5.0)


class Heard(RecorderListener):
    def __init__(self) -> None:
        self.segments: list[TranscriptSegment] = []
        self.problems: list[str] = []
        self.ended = threading.Event()

    def on_transcript(self, segment: TranscriptSegment) -> None:
        self.segments.append(segment)

    def on_problem(self, message: str) -> None:
        self.problems.append(message)

    def on_capture_ended(self, message: str | None) -> None:
        self.ended.set()


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    return make_speech(tmp_path_factory.mktemp("speech"), "export", SENTENCE,
                       voice="en-us", lead_s=0.5, tail_s=1.5)


def record(tmp_path, speech, **options) -> tuple[Recorder, Heard, object]:
    settings = SessionSettings(
        capture=CaptureSettings(mic_device_id=SYNTHETIC_MIC.id, normalize=False, vad=True),
        **options,
    ).validate()
    heard = Heard()
    recorder = Recorder(
        settings, listener=heard, data_root=tmp_path / "data",
        capture_factory=functools.partial(SyntheticCapture, signal=speech.samples),
        lister=synthetic_devices, streamer_options=FAST_STREAMER, finish_timeout_s=60.0,
    )
    try:
        recorder.start(max_frames=round(speech.duration_s * 10))
        assert heard.ended.wait(30)
        result = recorder.stop()
    finally:
        recorder.close()
    assert result.ok, result.message
    return recorder, heard, result


def test_the_built_in_server_transcribes_and_the_listener_hears_each_final_once(
    tmp_path, speech
):
    recorder, heard, result = record(tmp_path, speech)  # the default: transcription on
    finals = [s for s in heard.segments if s.final]
    assert finals and [s.id for s in finals] == list(range(len(finals))), (
        heard.segments, heard.problems)
    assert wer(SENTENCE, " ".join(s.text for s in finals)) <= 0.25, finals
    for partial in (s for s in heard.segments if not s.final):
        assert partial.id >= 0 and partial.text
    stored = tmp_path / "data" / "sessions" / f"{result.session_id}.transcript.json"
    assert stored.exists()
    assert heard.problems == [], heard.problems


def test_with_transcription_switched_off_nothing_is_transcribed(tmp_path, speech):
    recorder, heard, result = record(tmp_path, speech, transcribe=False)
    assert heard.segments == []
    sessions = tmp_path / "data" / "sessions"
    assert (sessions / f"{result.session_id}.wav").exists()
    assert not list(sessions.glob("*.transcript.json"))
