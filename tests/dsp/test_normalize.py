"""Normalisation: quiet speech comes up slowly, noise does not, and nothing ever clips."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.dsp.framer import to_int16_le
from meetcap.dsp.gain import Gain
from meetcap.dsp.normalize import Agc, Limiter, Normalizer, sliding_min
from tests.dsp.signals import noise, random_blocks, rms_dbfs, sine, speech_like

RATE = 16000


def run(stage, x: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([stage.process(x[a:b]) for a, b in random_blocks(len(x), rng, 1, 2000)])


def test_hot_mix_never_clips_after_int16_conversion() -> None:
    """+12 dB on a full-scale signal (4x over), plus a second hot source summed on top."""
    hot = Gain(12.0)
    full_scale = np.concatenate(
        [sine(1000, RATE, 2.0, 1.0), np.sign(sine(50, RATE, 1.0, 1.0)), noise(1.0, 0.0, seed=1)]
    )
    mix = hot.process(full_scale) + sine(300, RATE, 4.0, 1.0)
    assert np.max(np.abs(mix)) > 4.0

    out = run(Normalizer(), mix)

    normalizer = Normalizer()
    assert np.max(np.abs(out)) <= normalizer.limiter.ceiling * (1 + 1e-6)
    pcm, clipped = to_int16_le(out)
    samples = np.frombuffer(pcm, "<i2")
    assert clipped == 0
    assert samples.max() < 32767 and samples.min() > -32768  # no sample even touches a rail


def test_limiter_is_a_pure_delay_below_the_ceiling() -> None:
    limiter = Limiter()
    x = noise(2.0, -20.0, seed=2)  # peaks ~0.5, under the -1 dBFS ceiling
    assert np.max(np.abs(x)) < limiter.ceiling
    y = run(limiter, x)
    d = limiter.latency_samples
    np.testing.assert_array_equal(y[d:], x[: len(x) - d])
    assert np.all(y[:d] == 0.0)


def test_limiter_output_does_not_depend_on_block_sizes() -> None:
    x = sine(440, RATE, 2.0, 2.5) * (noise(2.0, -3.0, seed=3) > 0)
    whole = Limiter().process(x)
    pieces = run(Limiter(), x, seed=4)
    np.testing.assert_allclose(pieces, whole, rtol=1e-6, atol=1e-7)


def test_limiter_gain_moves_in_ramps_without_steps() -> None:
    """A sudden burst 12 dB over the ceiling is faded, not chopped."""
    x = np.concatenate(
        [sine(200, RATE, 0.5, 0.5), sine(200, RATE, 0.5, 4.0), sine(200, RATE, 0.5, 0.5)]
    )
    limiter = Limiter()
    y = limiter.process(x)
    d = limiter.latency_samples
    gain = np.abs(y[d:]) / np.maximum(np.abs(x[: len(x) - d]), 1e-3)
    measurable = np.flatnonzero(np.abs(x[: len(x) - d]) > 0.05)  # away from zero crossings
    neighbours = np.diff(measurable) == 1
    steps = np.abs(np.diff(gain[measurable]))[neighbours]
    assert np.max(steps) <= 1 / 80 * 1.01  # straight 5 ms ramps: at most 1/80 per sample
    burst = gain[measurable[(measurable > RATE // 2 + 400) & (measurable < RATE - 400)]]
    assert np.ptp(burst) < 1e-3  # and a steady gain through a steady loud tone (no distortion)


def test_agc_output_does_not_depend_on_block_sizes() -> None:
    speech, _ = speech_like(10.0, -35.0, seed=13)
    whole = Agc().process(speech)
    pieces = run(Agc(), speech, seed=14)
    np.testing.assert_allclose(pieces, whole, rtol=1e-6)


def test_sliding_min_matches_the_definition() -> None:
    values = np.random.default_rng(5).random(1000)
    for width in (1, 2, 7, 64, 1000):
        expected = [values[i : i + width].min() for i in range(len(values) - width + 1)]
        np.testing.assert_array_equal(sliding_min(values, width), expected)


def test_quiet_speech_is_raised_slowly_toward_the_target() -> None:
    speech, active = speech_like(40.0, -38.0, seed=6)
    normalizer = Normalizer()
    out = run(normalizer, speech)
    d = normalizer.latency_samples
    out = out[d:]
    active = active[: len(out)]

    first_second = slice(0, RATE)
    assert rms_dbfs(out[first_second][active[first_second]]) < -35.0  # not an instant jump
    last_10_s = slice(30 * RATE, 40 * RATE - d)
    assert rms_dbfs(out[last_10_s][active[last_10_s]]) == pytest.approx(-20.0, abs=3.0)


def test_silence_and_low_noise_are_not_pumped_up() -> None:
    """The gate: a room at -65 dBFS stays at -65 dBFS, before and after speech."""
    normalizer = Normalizer()
    quiet = noise(20.0, -65.0, seed=7)
    out = normalizer.process(quiet)
    assert normalizer.gain_db == 0.0
    assert rms_dbfs(out) == pytest.approx(rms_dbfs(quiet), abs=0.1)

    speech, _ = speech_like(20.0, -32.0, seed=8)
    normalizer.process(speech)
    gain_after_speech = normalizer.gain_db
    assert gain_after_speech > 6.0
    normalizer.process(noise(20.0, -65.0, seed=9))  # a long pause after the speech
    assert normalizer.gain_db == pytest.approx(gain_after_speech, abs=0.01)


def test_loud_speech_is_brought_down_and_the_gain_is_bounded() -> None:
    normalizer = Normalizer()
    loud, active = speech_like(20.0, -6.0, seed=10)
    out = normalizer.process(loud)[normalizer.latency_samples :]
    last_5_s = slice(15 * RATE, len(out))
    assert rms_dbfs(out[last_5_s][active[last_5_s]]) < -14.0  # -6 dBFS came down >= 8 dB
    whisper = Normalizer()
    whisper.process(speech_like(60.0, -70.0 + 25.0, seed=11)[0])  # -45 dBFS: needs 25 dB
    assert whisper.gain_db == pytest.approx(20.0)  # capped at max_gain_db


def test_switching_normalisation_off_glides_back_to_unity() -> None:
    normalizer = Normalizer()
    speech, _ = speech_like(20.0, -35.0, seed=12)
    normalizer.process(speech)
    assert normalizer.gain_db > 10.0
    normalizer.enabled = False
    level = np.full(RATE, 0.01, np.float32)  # DC, so output / input is the gain itself
    y = normalizer.process(level)[normalizer.latency_samples :]
    gain_db = 20 * np.log10(y / 0.01)
    assert gain_db[0] > 10.0 and gain_db[-1] == pytest.approx(0.0, abs=1e-4)
    steps_db = np.diff(gain_db)
    assert np.all(steps_db <= 1e-4) and np.min(steps_db) >= -0.41  # 40 dB/s in 10 ms steps
