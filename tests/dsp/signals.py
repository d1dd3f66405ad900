"""Seeded synthetic signals for the DSP tests."""

from __future__ import annotations

import numpy as np


def sine(freq_hz: float, rate_hz: float, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine starting at phase 0."""
    t = np.arange(int(round(seconds * rate_hz))) / rate_hz
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def noise(seconds: float, level_dbfs: float, *, rate_hz: int = 16000, seed: int = 0) -> np.ndarray:
    """White Gaussian noise with the given RMS level."""
    rng = np.random.default_rng(seed)
    rms = 10 ** (level_dbfs / 20)
    return (rng.standard_normal(int(seconds * rate_hz)) * rms).astype(np.float32)


def speech_like(seconds: float, level_dbfs: float, *, rate_hz: int = 16000, seed: int = 0):
    """Voiced syllables (harmonics of a wandering f0, ~4 per second) with pauses.

    Returns (signal, active) where ``active`` marks the samples inside syllables; the RMS
    over the active samples is ``level_dbfs``.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    f0 = 140 + 25 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate_hz
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.zeros(n)
    pos = 0
    while pos < n:
        length = int(rng.uniform(0.12, 0.3) * rate_hz)
        gap = int(rng.uniform(0.05, 0.25) * rate_hz)
        seg = envelope[pos : pos + length]
        seg[:] = np.sin(np.pi * np.arange(len(seg)) / length) ** 0.5
        pos += length + gap
        if rng.uniform() < 0.15:  # an occasional breath pause
            pos += int(0.6 * rate_hz)
    signal = voiced * envelope
    active = envelope > 0.05
    rms = np.sqrt(np.mean(signal[active] ** 2))
    signal *= 10 ** (level_dbfs / 20) / rms
    return signal.astype(np.float32), active


def random_blocks(total: int, rng: np.random.Generator, low: int = 1, high: int = 4000):
    """Split range(total) into consecutive (start, stop) pairs of random sizes in [low, high]."""
    pos = 0
    while pos < total:
        size = int(rng.integers(low, high + 1))
        yield pos, min(total, pos + size)
        pos += size


def rms_dbfs(x: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-30)
