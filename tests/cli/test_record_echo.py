"""`meetcap record --echo-cancel` as a user runs it: a subprocess against a real
PulseAudio server whose speakers reach the microphone (module-loopback, 100 ms late,
15 dB down; tests/support/echo_rig.py). Only the remote voice plays; the system lane is
left out of the file (--gain-system -inf), so the file is the microphone lane: with
cancellation the echo is gone from it, without it stays."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import soundfile as sf

from tests.support.echo_rig import echo_path
from tests.support.pulse import MIC_ID, SPEAKER_SINK, SYSTEM_ID


def record_with_remote_voice(pulse, speech, out, echo_cancel: str) -> str:
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID,
         "--gain-system=-inf", "--no-normalize", "--seconds", "6",
         "--echo-cancel", echo_cancel, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(1.0)  # capture runs (PulseAudio delivers ~1 s after the open)
    pulse.play(speech.path, SPEAKER_SINK)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    return stdout


def test_echo_cancel_auto_takes_the_speakers_out_of_the_microphone(pulse, speech_files,
                                                                   tmp_path):
    remote = speech_files["system"]
    with echo_path(pulse, delay_ms=100, loss_db=15.0):
        time.sleep(0.5)
        off_out = record_with_remote_voice(pulse, remote, tmp_path / "off.wav", "off")
        auto_out = record_with_remote_voice(pulse, remote, tmp_path / "auto.wav", "auto")
    off, _ = sf.read(tmp_path / "off.wav", dtype="float32")
    auto, _ = sf.read(tmp_path / "auto.wav", dtype="float32")
    # The last 2.5 s: the remote voice plays, the canceller (auto) has long started.
    tail = slice(len(off) - 40_000, len(off) - 8_000)
    echo_db = 10 * np.log10(np.mean(off[tail] ** 2) + 1e-12)
    left_db = 10 * np.log10(np.mean(auto[tail] ** 2) + 1e-12)
    print(f"\nmic lane while the remote voice plays: {echo_db:.1f} dBFS with --echo-cancel "
          f"off, {left_db:.1f} dBFS with auto")
    assert echo_db > -45.0, "the echo path put the remote voice into the microphone"
    assert left_db < echo_db - 25.0
    assert "speakers reach the mic" in off_out and "cancelled" not in off_out
    assert "speakers reach the mic" in auto_out and "cancelled]" in auto_out
