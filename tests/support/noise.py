"""Steady room noise to play into a sink: a fan or an air conditioner near the microphone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from tests.support.speech import PLAY_RATE_HZ, SpeechFile

FAN_DBFS = -40.0  # RMS: about 16 dB under the test voices (espeak-ng at 0.5 peak)


def fan_noise(directory: Path, *, seconds: float, dbfs: float = FAN_DBFS) -> SpeechFile:
    """Pink (1/f) noise at 48 kHz, ``dbfs`` RMS, written to ``directory/fan.wav``: the
    spectrum of a fan, loudest in the low frequencies where speech has its vowels.
    Seeded: the same noise every run (no speech spans)."""
    n = int(seconds * PLAY_RATE_HZ)
    spectrum = np.fft.rfft(np.random.default_rng(11).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / PLAY_RATE_HZ)
    spectrum[1:] /= np.sqrt(freqs[1:] / 100.0)
    spectrum[0] = 0.0
    noise = np.fft.irfft(spectrum, n)
    noise = (noise / np.sqrt(np.mean(noise**2)) * 10 ** (dbfs / 20)).astype(np.float32)
    path = directory / "fan.wav"
    sf.write(path, noise, PLAY_RATE_HZ, subtype="FLOAT")
    return SpeechFile(path, noise, ())
