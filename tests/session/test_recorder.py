"""The Recorder's session rules, with no Qt and no sound server.

Capture is the synthetic capture of tests/audio/helpers.py (a 440 Hz sine delivered in
real time, behind the same Capture interface) on a fixed device list; everything above
it is real: the audio manager and pipeline, the streamer with its disk spool, the
built-in server (a real meetcap-server on loopback) and the WAV files. Failures are
injected by making the spool or the local copy raise, as a full disk or a bug would.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from meetcap.audio.manager import CaptureSettings
from meetcap.client.streamer import Streamer
from meetcap.errors import DeviceError, StorageError, UsageError
from meetcap.session import Phase, Recorder, RecorderListener, SessionSettings
from meetcap.session.local_server import LocalServer
from tests.audio.helpers import SYNTHETIC_MIC, SyntheticCapture, synthetic_devices

FAST_STREAMER = dict(backoff_base_s=0.05, backoff_cap_s=0.5, healthy_after_s=2.0,
                     quick_failure_s=0.5, open_timeout_s=2.0)


class Heard(RecorderListener):
    """Everything the recorder told its front end."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.ended: list[str | None] = []
        self.ended_event = threading.Event()

    def on_problem(self, message: str) -> None:
        self.problems.append(message)

    def on_capture_ended(self, message: str | None) -> None:
        self.ended.append(message)
        self.ended_event.set()


def make_recorder(tmp_path: Path, *, copy: str = "", builtin: bool = True,
                  device_id: str = SYNTHETIC_MIC.id) -> tuple[Recorder, Heard]:
    settings = SessionSettings(capture=CaptureSettings(mic_device_id=device_id,
                                                       normalize=False),
                               local_copy=copy).validate()
    heard = Heard()
    recorder = Recorder(settings, listener=heard, builtin_server=builtin,
                        data_root=tmp_path / "data", capture_factory=SyntheticCapture,
                        lister=synthetic_devices, streamer_options=FAST_STREAMER,
                        finish_timeout_s=15.0)
    return recorder, heard


def pcm_of(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == 16_000
    return data


def wait_frames(recorder: Recorder, frames: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while recorder.frames_recorded < frames and time.monotonic() < deadline:
        time.sleep(0.02)
    assert recorder.frames_recorded >= frames


def test_a_file_only_session_keeps_exactly_the_frames_asked_for(tmp_path):
    recorder, heard = make_recorder(tmp_path, copy=str(tmp_path / "out.wav"), builtin=False)
    try:
        info = recorder.start(max_frames=15)
        assert info.url is None and info.local_copy == tmp_path / "out.wav"
        assert heard.ended_event.wait(10), "capture ends by itself at the frame limit"
        result = recorder.stop()
    finally:
        recorder.close()
    assert heard.ended == [None], "the limit is not a failure"
    assert result.ok and result.frames == 15
    assert len(pcm_of(tmp_path / "out.wav")) == 15 * 1_600
    assert recorder.phase is Phase.IDLE


def test_the_built_in_server_stores_what_the_local_copy_holds_sample_for_sample(tmp_path):
    recorder, heard = make_recorder(tmp_path, copy=str(tmp_path / "copy.wav"))
    try:
        info = recorder.start()
        assert info.builtin and info.storage_dir == tmp_path / "data" / "sessions"
        wait_frames(recorder, 20)
        result = recorder.stop()
    finally:
        recorder.close()
    assert result.ok and result.verified, result.message
    stored = pcm_of(info.storage_dir / f"{result.session_id}.wav")
    copy = pcm_of(tmp_path / "copy.wav")
    assert len(copy) == result.frames * 1_600 and np.array_equal(stored, copy)
    assert heard.problems == [] and heard.ended == []


@pytest.mark.parametrize("failure", [
    StorageError("cannot write the audio spool: No space left on device"),
    RuntimeError("an injected bug"),
], ids=["disk-full", "injected-bug"])
def test_after_the_spool_fails_no_frame_goes_anywhere_and_what_was_kept_is_whole(
        tmp_path, monkeypatch, failure):
    real_submit = Streamer.submit

    def failing_submit(self, frame):
        if frame.seq == 12:
            raise failure
        real_submit(self, frame)

    monkeypatch.setattr(Streamer, "submit", failing_submit)
    recorder, heard = make_recorder(tmp_path, copy=str(tmp_path / "copy.wav"))
    try:
        recorder.start()
        assert heard.ended_event.wait(10)
        time.sleep(0.3)  # later frames arrive, and must go nowhere
        result = recorder.stop()
    finally:
        recorder.close()
    (message,) = heard.ended
    assert message.startswith("Recording stopped")
    if isinstance(failure, StorageError):
        assert "No space left on device" in message
    else:
        assert "internal error" in message and "an injected bug" in message
    assert recorder.frames_recorded == 12
    assert len(pcm_of(tmp_path / "copy.wav")) == 12 * 1_600, "the copy holds what was spooled"
    assert result.ok and result.frames == 12, "the server got every frame before the failure"


def test_a_failing_local_copy_only_warns_and_the_server_gets_everything(tmp_path, monkeypatch):
    from meetcap.audio.filewriter import FrameFileWriter

    real_write = FrameFileWriter.__call__

    def failing_write(self, frame):
        if frame.seq >= 5:
            raise StorageError(f"writing {self.path} failed (disk full?)")
        real_write(self, frame)

    monkeypatch.setattr(FrameFileWriter, "__call__", failing_write)
    recorder, heard = make_recorder(tmp_path, copy=str(tmp_path / "copy.wav"))
    try:
        recorder.start()
        wait_frames(recorder, 15)
        result = recorder.stop()
    finally:
        recorder.close()
    assert len(heard.problems) == 1 and "The local copy stopped" in heard.problems[0]
    assert "still goes to the server" in heard.problems[0]
    assert heard.ended == []
    assert result.ok and result.frames == recorder.frames_recorded >= 15
    assert len(pcm_of(tmp_path / "copy.wav")) == 5 * 1_600


def test_a_start_that_fails_leaves_nothing_behind_and_the_recorder_can_start_again(tmp_path):
    recorder, _ = make_recorder(tmp_path, copy=str(tmp_path / "copy.wav"), builtin=False,
                                device_id="synthetic:unplugged")
    try:
        with pytest.raises(DeviceError, match="synthetic:unplugged"):
            recorder.start()
        assert recorder.phase is Phase.IDLE
        assert not (tmp_path / "copy.wav").exists()
        recorder.set_device("mic", SYNTHETIC_MIC.id)
        recorder.start(max_frames=3)
        with pytest.raises(UsageError, match="already recording"):
            recorder.start()
        assert recorder.capture_ended.wait(10)
        recorder.stop()
    finally:
        recorder.close()
    assert len(pcm_of(tmp_path / "copy.wav")) == 3 * 1_600


def test_the_built_in_server_is_not_loaded_until_a_session_needs_it(tmp_path):
    import subprocess
    import sys

    code = ("import sys, meetcap.gui.main_window, meetcap.session; "
            "print(sorted(m for m in sys.modules if m.startswith('meetcap.server')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"QT_QPA_PLATFORM": "offscreen", "PATH": ""})
    assert out.stdout.strip() == "[]"
    server = LocalServer(tmp_path / "sessions")
    try:
        assert server.start().startswith("ws://127.0.0.1:")
    finally:
        server.stop()


def test_a_built_in_server_that_dies_is_told_and_the_audio_waits_in_the_spool(
        tmp_path, monkeypatch):
    from meetcap.server.app import MeetcapServer

    async def dies_soon(self):
        import asyncio

        await asyncio.sleep(0.5)
        raise RuntimeError("injected server bug")

    monkeypatch.setattr(MeetcapServer, "wait_closed", dies_soon)
    recorder, heard = make_recorder(tmp_path)
    try:
        recorder.start()
        deadline = time.monotonic() + 10
        while not heard.problems and time.monotonic() < deadline:
            time.sleep(0.05)
        wait_frames(recorder, 15)
        result = recorder.stop(timeout_s=1.0)
    finally:
        recorder.close()
    assert heard.problems and heard.problems[0].startswith("The built-in server stopped")
    assert "injected server bug" in heard.problems[0]
    assert not result.ok and result.frames_left > 0, "what was not stored stays in the spool"


def test_choosing_no_device_is_kept_as_a_choice_not_as_never_chosen(tmp_path):
    # The app saves "" as "none, on purpose" and None as "not chosen yet" (then it picks
    # the system's default at the next start): a switch to none must stay "".
    recorder, _ = make_recorder(tmp_path, builtin=False, copy=str(tmp_path / "c.wav"))
    try:
        recorder.set_device("mic", None)
        assert recorder.settings.device_id("mic") == ""
        recorder.set_device("mic", SYNTHETIC_MIC.id)
        assert recorder.settings.device_id("mic") == SYNTHETIC_MIC.id
        recorder.start()
        recorder.set_device("mic", None)  # live, during the session
        assert recorder.settings.device_id("mic") == ""
        recorder.stop()
        assert recorder.settings.device_id("mic") == ""
    finally:
        recorder.close()
