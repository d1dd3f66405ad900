"""`meetcap record` as a user runs it: a subprocess against real PulseAudio devices."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from tests.support.pulse import MIC_ID, MIC_SINK, SYSTEM_ID

# Every test that uses `pulse` runs against PulseAudio and against PipeWire.
pytestmark = pytest.mark.sound_servers("pulseaudio", "pipewire")


def record(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_size(path, min_bytes: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size >= min_bytes:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} did not grow to {min_bytes} bytes")


def test_record_for_3_seconds_writes_exactly_30_frames(pulse, speech_files, tmp_path):
    out = tmp_path / "meeting.flac"
    player = pulse.play(speech_files["mic"].path, MIC_SINK)
    proc = record(["--seconds", "3", "--no-normalize", "--out", str(out)])
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 30 * 1_600)
    assert "recorded 30 frames (3.0 s)" in stdout
    assert "mic" in stdout and "dBFS" in stdout, "levels are shown while recording"
    # One clock: nothing to correct, and the applied correction is printed per lane.
    assert re.search(r"drift correction: mic \+?-?0\.0 ppm \(at most 0\.0\), "
                     r"system \+?-?0\.0 ppm \(at most 0\.0\)", stdout), stdout
    data, _ = sf.read(out, dtype="int16")
    assert np.abs(data).max() > 1000, "the voice is in the file"
    player.wait(timeout=30)


def test_ctrl_c_leaves_a_complete_playable_file(pulse, tmp_path):
    out = tmp_path / "meeting.wav"
    proc = record(["--out", str(out)])
    wait_for_size(out, 44 + 3_200 * 10, 15)  # recording for real
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    data, rate = sf.read(out, dtype="int16")
    assert rate == 16_000
    assert len(data) >= 1_600 * 10 and len(data) % 1_600 == 0, "whole 100 ms frames"
    assert f"recorded {len(data) // 1_600} frames" in stdout, "the header holds every frame"
    assert "Traceback" not in stderr


def test_a_killed_recording_still_leaves_a_readable_file(pulse, tmp_path):
    # No Ctrl-C handler runs on SIGKILL: the regular flushes keep the header current.
    out = tmp_path / "meeting.wav"
    proc = record(["--out", str(out)])
    wait_for_size(out, 44 + 3_200 * 25, 20)
    proc.kill()
    proc.communicate(timeout=30)
    data, rate = sf.read(out, dtype="int16")
    assert rate == 16_000 and len(data) >= 1_600 * 10


def test_an_unknown_device_is_a_clear_error_and_creates_no_file(pulse, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "meetcap", "record", "--mic", "pulse:nope", "--no-system",
         "--out", str(tmp_path / "x.wav")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "no audio device with id 'pulse:nope'" in proc.stderr
    assert "meetcap devices" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "x.wav").exists()


def test_a_gain_out_of_range_is_a_clear_error(pulse, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--no-system",
         "--gain-mic", "30", "--out", str(tmp_path / "x.wav")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "gain 30.0 dB is out of range" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.wav").exists()
