"""The fractional-delay interpolator the mixer reads drifting lanes with."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.dsp.interpolate import HISTORY, interpolate

RATE = 16000


@pytest.mark.parametrize("freq_hz", [250.0, 1000.0, 3000.0, 4000.0, 6000.0])
def test_a_tone_read_between_samples_stays_within_minus_70_db(freq_hz: float) -> None:
    """Speech band up to 6 kHz: at any fraction the error is below -70 dB. (Linear
    interpolation half a sample off is at about -13 dB at 4 kHz.)"""
    n = np.arange(4000)
    tone = np.sin(2 * np.pi * freq_hz / RATE * n).astype(np.float32)
    for fraction in (0.1, 0.25, 0.5, 0.77, 0.999):
        positions = np.arange(100, 3800) + fraction
        exact = np.sin(2 * np.pi * freq_hz / RATE * positions)
        error = interpolate(tone, positions) - exact
        assert 10 * np.log10(np.mean(error**2) / 0.5) < -70.0
        linear = np.interp(positions, n, tone) - exact
        if freq_hz == 4000.0 and fraction == 0.5:
            assert 10 * np.log10(np.mean(linear**2) / 0.5) > -20.0  # why not linear


def test_whole_sample_positions_copy_the_samples_exactly() -> None:
    noise = np.random.default_rng(0).standard_normal(2000).astype(np.float32)
    positions = np.arange(HISTORY, 1900, dtype=np.float64)
    np.testing.assert_array_equal(interpolate(noise, positions), noise[HISTORY:1900])
