"""The resampler turns any device format into clean 16 kHz mono, block size notwithstanding."""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from meetcap.dsp.resample import Resampler
from tests.dsp.signals import random_blocks, sine

FREQ_HZ = 997.0  # not a divisor of any rate, so every block boundary cuts the wave anywhere
AMPLITUDE = 0.5


def stream(resampler: Resampler, signal: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [resampler.process(signal[a:b]) for a, b in random_blocks(len(signal), rng, 1, 3000)]
    parts.append(resampler.flush())
    return np.concatenate(parts)


def fit_sine(y: np.ndarray, freq_hz: float, rate_hz: int = 16000):
    """Least-squares sine at a known frequency: amplitude and the residual."""
    t = np.arange(len(y)) / rate_hz
    basis = np.stack([np.sin(2 * np.pi * freq_hz * t), np.cos(2 * np.pi * freq_hz * t)], 1)
    coef, *_ = np.linalg.lstsq(basis, y.astype(np.float64), rcond=None)
    return float(np.hypot(*coef)), y - basis @ coef


@pytest.mark.parametrize("rate_hz", [44100, 48000, 96000])
@pytest.mark.parametrize("channels", [1, 2])
def test_device_formats_become_a_clean_16khz_sine(rate_hz: int, channels: int) -> None:
    mono = sine(FREQ_HZ, rate_hz, 2.0, AMPLITUDE)
    device = np.repeat(mono[:, None], channels, axis=1)

    y = stream(Resampler(rate_hz, channels), device, seed=rate_hz + channels)

    assert abs(len(y) - 32000) <= 1  # 2 s in, 2 s out (the flush returns the filter tail)
    steady = y[1600:30400]  # away from the filter's start-up and end
    spectrum = np.abs(np.fft.rfft(steady[:16000] * np.hanning(16000)))
    assert abs(np.argmax(spectrum) - FREQ_HZ) <= 1.0  # 1 Hz bins: the tone is where it should be
    amplitude, residual = fit_sine(steady, FREQ_HZ)
    assert 20 * np.log10(amplitude / AMPLITUDE) == pytest.approx(0.0, abs=0.05)
    # A click at any of the ~30 random block boundaries would stick out of this residual.
    assert np.max(np.abs(residual)) < 1e-3


@pytest.mark.parametrize("rate_hz", [44100, 48000])
def test_streaming_in_random_blocks_equals_one_shot_resampling(rate_hz: int) -> None:
    rng = np.random.default_rng(7)
    signal = (rng.standard_normal(rate_hz * 2) * 0.1).astype(np.float32)  # broadband

    y = stream(Resampler(rate_hz, 1), signal[:, None], seed=3)
    whole = Resampler(rate_hz, 1)
    y_whole = np.concatenate([whole.process(signal[:, None]), whole.flush()])
    one_shot = soxr.resample(signal, rate_hz, 16000, quality="HQ")

    assert len(y) == len(y_whole)
    np.testing.assert_allclose(y, y_whole, atol=1e-6)
    # soxr's one-shot call trims the filter delay; the stream keeps it: align, then compare.
    lags = np.arange(0, 200)
    errors = [np.max(np.abs(y[lag : lag + 28000] - one_shot[:28000])) for lag in lags]
    assert min(errors) < 1e-4


def test_stereo_is_averaged_to_mono() -> None:
    left = sine(FREQ_HZ, 48000, 1.0, AMPLITUDE)
    both = Resampler(48000, 2).process(np.stack([left, np.zeros_like(left)], 1))
    cancel = Resampler(48000, 2).process(np.stack([left, -left], 1))

    amplitude, _ = fit_sine(both[1600:14000], FREQ_HZ)
    assert amplitude == pytest.approx(AMPLITUDE / 2, rel=0.01)
    assert np.max(np.abs(cancel)) == 0.0


def test_16khz_input_passes_through_without_delay() -> None:
    x = sine(FREQ_HZ, 16000, 0.5)
    y = Resampler(16000, 1).process(x)
    np.testing.assert_array_equal(y, x)


def test_bad_blocks_are_refused_with_a_clear_message() -> None:
    r = Resampler(48000, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        r.process(np.zeros((480, 1), np.float32))
    with pytest.raises(ValueError, match="float32"):
        r.process(np.zeros((480, 2), np.int16))
    with pytest.raises(ValueError, match="sample rate"):
        Resampler(0, 1)
    with pytest.raises(ValueError, match="channel"):
        Resampler(48000, 0)
    assert Resampler(np.float64(48000.0), np.int64(2)).channels == 2  # as device queries give
