"""`meetcap record --noise-suppress` as a user runs it: a subprocess against a real
PulseAudio server, steady fan noise (-40 dBFS) played into the microphone. The file's
last second is the microphone lane after the suppressor has learned the noise: well
below the played level (without the option it is the played level: the real-rig test in
tests/audio/test_echo_pulseaudio.py measures both)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.support.noise import FAN_DBFS, fan_noise
from tests.support.pulse import MIC_ID, MIC_SINK


def test_noise_suppress_takes_steady_noise_out_of_the_recording(pulse, tmp_path):
    pulse.play(fan_noise(tmp_path, seconds=8.0).path, MIC_SINK)
    out = tmp_path / "ns.wav"
    proc = subprocess.run(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--no-system",
         "--no-normalize", "--echo-cancel", "off", "--noise-suppress", "--seconds", "3",
         "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    recorded, rate = sf.read(out, dtype="float32")
    last = recorded[-rate:]
    level = 10 * np.log10(np.mean(np.square(last, dtype=np.float64)) + 1e-20)
    print(f"\nfan noise played at {FAN_DBFS:.0f} dBFS; recorded with --noise-suppress: "
          f"{level:.1f} dBFS")
    assert level > -80.0, "the microphone was recorded (not digital silence)"
    assert level < FAN_DBFS - 5.0
