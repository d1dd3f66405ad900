"""Per-source gain: what the slider and the mute button do to the sound."""

from __future__ import annotations

import math

import numpy as np
import pytest

from meetcap.dsp.gain import Gain
from meetcap.errors import ConfigError
from tests.dsp.signals import sine

RAMP = 80  # 5 ms at 16 kHz


def steady_peak(gain: Gain, x: np.ndarray) -> float:
    y = gain.process(x)
    return float(np.max(np.abs(y[RAMP:])))


def test_minus_6_db_halves_the_amplitude() -> None:
    x = sine(440, 16000, 0.5, 0.8)
    ratio = steady_peak(Gain(-6.0), x) / float(np.max(np.abs(x)))
    assert 20 * math.log10(ratio) == pytest.approx(-6.0, abs=0.5)
    assert ratio == pytest.approx(0.5, abs=0.01)


def test_plus_12_db_is_the_maximum_and_more_is_refused() -> None:
    x = sine(440, 16000, 0.2, 0.01)
    assert steady_peak(Gain(12.0), x) / 0.01 == pytest.approx(10 ** (12 / 20), rel=1e-3)
    for bad in (12.5, float("nan"), "loud"):
        with pytest.raises(ConfigError, match="gain"):
            Gain(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("off_db", [-math.inf, -60.0, -80.0])
def test_gain_at_the_bottom_of_the_range_is_off(off_db: float) -> None:
    y = Gain(off_db).process(sine(440, 16000, 0.2))
    assert np.all(y == 0.0)


def test_mute_gives_exact_zeros_and_unmute_restores_the_gain() -> None:
    gain = Gain(-3.0)
    x = sine(440, 16000, 0.3, 0.5)
    gain.process(x)
    gain.set_muted(True)
    muted = gain.process(x)
    assert np.all(muted[RAMP:] == 0.0)  # exact digital zeros once the 5 ms fade is over
    assert np.all(gain.process(x) == 0.0)
    gain.set_muted(False)
    back = gain.process(x)
    np.testing.assert_allclose(back[RAMP:], x[RAMP:] * 10 ** (-3 / 20), rtol=1e-6)


def test_a_gain_change_is_ramped_not_stepped() -> None:
    """Moving the slider from -20 to +12 dB mid-tone changes each sample only a little."""
    x = np.full(4000, 0.05, dtype=np.float32)  # DC: any step would show as one big jump
    gain = Gain(-20.0)
    first = gain.process(x[:1000])
    gain.set_gain_db(12.0)
    rest = gain.process(x[1000:])
    y = np.concatenate([first, rest])
    jump = 0.05 * (10 ** (12 / 20) - 10 ** (-20 / 20))
    assert np.max(np.abs(np.diff(y))) <= jump / RAMP * 1.01
    assert y[-1] == pytest.approx(0.05 * 10 ** (12 / 20), rel=1e-6)


def test_ramp_spanning_many_small_blocks_ends_on_the_target() -> None:
    gain = Gain(0.0)
    gain.set_gain_db(-6.0)
    x = np.ones(3 * RAMP, dtype=np.float32)
    y = np.concatenate([gain.process(x[i : i + 7]) for i in range(0, len(x), 7)])
    assert np.all(np.diff(y[:RAMP]) < 0)  # one smooth fade across the 7-sample blocks
    assert np.all(y[RAMP - 1 :] == np.float32(10 ** (-6 / 20)))
