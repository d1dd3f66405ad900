"""`meetcap record` as a user runs it: a subprocess against real PulseAudio devices."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import soundfile as sf

from tests.support.pulse import MIC_ID, MIC_SINK, SYSTEM_ID


def record(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_record_for_3_seconds_writes_exactly_30_frames(pulse, speech_files, tmp_path):
    out = tmp_path / "meeting.flac"
    proc = record(["--seconds", "3", "--out", str(out)])
    player = pulse.play(speech_files["mic"].path, MIC_SINK)
    stdout, stderr = proc.communicate(timeout=60)
    player.kill()
    player.wait()
    assert proc.returncode == 0, stderr
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (16_000, 1, 30 * 1_600)
    assert "recorded 30 frames" in stdout


def test_ctrl_c_leaves_a_complete_playable_file(pulse, tmp_path):
    out = tmp_path / "meeting.wav"
    proc = record(["--out", str(out)])
    time.sleep(4.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    data, rate = sf.read(out, dtype="int16")
    assert rate == 16_000
    assert len(data) > 0 and len(data) % 1_600 == 0, "whole 100 ms frames, header finalised"


def test_an_unknown_device_is_a_clear_error(pulse, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "meetcap", "record", "--mic", "pulse:nope", "--no-system",
         "--out", str(tmp_path / "x.wav")],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 2
    assert "no audio device with id 'pulse:nope'" in proc.stderr
    assert "meetcap devices" in proc.stderr
    assert "Traceback" not in proc.stderr
