"""The mixer keeps both sources on one timeline: through clock drift and dropouts."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.dsp.mixer import Mixer, splice_in, splice_out
from meetcap.dsp.resample import Resampler

RATE = 16000
CLICK = 0.5  # amplitude of one-sample marker clicks at the device rate
DETECT = 0.05  # a click comes out of the 48 -> 16 kHz filter at ~0.17; the noise stays < 0.02


class Device:
    """A capture device whose clock runs at ``true_rate_hz`` (nominally ``nominal_rate_hz``).

    Its signal is low seeded noise (-50 dBFS) with one-sample clicks at chosen true times.
    ``pause(start_s, stop_s)`` makes it deliver nothing in that span, like a WASAPI
    loopback during silence: its sample clock stops and the clicks of the span never exist.
    """

    def __init__(self, true_rate_hz, clicks_s, *, nominal_rate_hz=48000, seed=0, pause=None):
        self.rate = true_rate_hz
        self.resampler = Resampler(nominal_rate_hz, 1)
        self.pause = pause
        table = np.random.default_rng(seed).standard_normal(2 * nominal_rate_hz) * 10 ** (-50 / 20)
        self._table = np.concatenate([table, table]).astype(np.float32)
        self._period = 2 * nominal_rate_hz
        self._produced = 0
        clicks_s = np.asarray(clicks_s, dtype=float)
        if pause is not None:
            start, stop = pause
            clicks_s = clicks_s[(clicks_s < start) | (clicks_s >= stop)]
        self.clicks_s = clicks_s
        self._click_at = np.round(self._device_index(clicks_s)).astype(np.int64)

    def _device_index(self, t_s):
        """Device sample index of true time ``t_s``."""
        t_s = np.asarray(t_s, dtype=float)
        if self.pause is None:
            return t_s * self.rate
        start, stop = self.pause
        return (
            np.where(t_s < start, t_s, np.where(t_s < stop, start, t_s - (stop - start)))
            * self.rate
        )

    def samples_until(self, t_s: float) -> np.ndarray:
        end = int(self._device_index(t_s))
        n = end - self._produced
        offset = self._produced % self._period
        block = self._table[offset : offset + n].copy()
        inside = self._click_at[(self._click_at >= self._produced) & (self._click_at < end)]
        block[inside - self._produced] = CLICK
        self._produced = end
        return block

    def push_until(self, mixer: Mixer, name: str, t_s: float) -> None:
        samples = self.resampler.process(self.samples_until(t_s))
        mixer.push(name, samples, self.resampler.pending_samples)


def run(mixer: Mixer, devices: dict, seconds: float, block_range, seed=0, keep_parts=False):
    """Drive the master clock: push what each device produced by now, then render.

    Returns the timeline positions of clicks found in the mix, and optionally the parts.
    """
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    found, parts = [], {name: [] for name in devices}
    for name in devices:
        mixer.add_source(name)
    while mixer.samples_rendered < total:
        n = min(int(rng.integers(*block_range)), total - mixer.samples_rendered)
        t_end = (mixer.samples_rendered + n) / RATE
        for name, device in devices.items():
            device.push_until(mixer, name, t_end)
        start = mixer.samples_rendered
        block = mixer.render(n)
        assert len(block.mix) == n  # the timeline advances by exactly what the clock says
        hits = np.flatnonzero(np.abs(block.mix) > DETECT)
        if len(hits):
            found.append((start + hits, np.abs(block.mix[hits])))
        if keep_parts:
            for name in devices:
                parts[name].append(block.parts[name])
    return click_positions(found), parts


def click_positions(found) -> np.ndarray:
    """Collapse runs of above-threshold samples into one position each (the peak)."""
    if not found:
        return np.zeros(0)
    pos = np.concatenate([p for p, _ in found])
    mag = np.concatenate([m for _, m in found])
    starts = np.flatnonzero(np.diff(pos, prepend=-(10**9)) > 40)
    peaks = [
        pos[a:b][np.argmax(mag[a:b])] for a, b in zip(starts, [*starts[1:], len(pos)], strict=True)
    ]
    return np.asarray(peaks) / RATE


def pair_offsets(found_s: np.ndarray, expected_s: np.ndarray, window_s: float = 0.5) -> np.ndarray:
    """For each expected true time, how late its click came out (s); NaN if missing."""
    late = np.full(len(expected_s), np.nan)
    for i, t in enumerate(expected_s):
        near = found_s[(found_s >= t) & (found_s < t + window_s)]
        if len(near) == 1:
            late[i] = near[0] - t
    return late


def drift_run(minutes: float, compensate: bool):
    period_s = 30.0
    a_clicks = np.arange(1.0, minutes * 60, period_s)
    b_clicks = a_clicks + 15.0  # B's clicks sit between A's, at known true times
    devices = {
        "fast": Device(48000 * (1 + 100e-6), a_clicks, seed=1),
        "slow": Device(48000 * (1 - 100e-6), b_clicks, seed=2),
    }
    mixer = Mixer(drift_compensation=compensate)
    found, _ = run(mixer, devices, minutes * 60, (8000, 24000))
    late_a = pair_offsets(found, a_clicks)
    late_b = pair_offsets(found, b_clicks)
    return mixer, late_a, late_b


def test_sources_200_ppm_apart_stay_within_20_ms_after_an_hour() -> None:
    """One device clock 100 ppm fast, the other 100 ppm slow, master clock nominal.

    Uncompensated the fast one would arrive 360 ms late after an hour and the slow one
    would run dry again and again; compensated both stay at the 100 ms margin.
    """
    mixer, late_a, late_b = drift_run(60.0, compensate=True)

    assert not np.isnan(late_a).any() and not np.isnan(late_b).any()  # all 240 clicks found
    misalignment_s = late_b - late_a  # B's click k vs A's click k, 15 s apart in true time
    assert np.max(np.abs(misalignment_s)) < 0.020
    # Each source's latency stays near the 100 ms margin, from start to end.
    for late in (late_a, late_b):
        assert np.all((late > 0.090) & (late < 0.110))
    fast, slow = mixer.lane("fast"), mixer.lane("slow")
    # Gentle: about 1.6 splices a second (100 ppm of 16 kHz), no hunting, no dropouts.
    assert 5000 < fast.samples_dropped < 7000 and fast.samples_repeated < 50
    assert 5000 < slow.samples_repeated < 7000 and slow.samples_dropped < 50
    assert fast.underruns == 0 and slow.underruns == 0


def test_without_compensation_the_same_drift_breaks_alignment() -> None:
    """The control for the test above: the measurement does see drift when it is there."""
    _, late_a, late_b = drift_run(10.0, compensate=False)
    assert np.nanmax(np.abs(late_b - late_a)) > 0.040


def test_a_source_that_stops_delivering_is_filled_with_zeros_and_shifts_nothing() -> None:
    clicks = np.arange(0.5, 12.0, 0.5)

    def devices(pause):
        return {
            "mic": Device(48000, clicks, seed=3),
            "system": Device(44100, clicks + 0.25, nominal_rate_hz=44100, seed=4, pause=pause),
        }

    reference = Mixer()
    ref_found, ref_parts = run(reference, devices(None), 12.0, (80, 1600), seed=5, keep_parts=True)
    mixer = Mixer()
    found, parts = run(mixer, devices((4.0, 7.0)), 12.0, (80, 1600), seed=5, keep_parts=True)

    mic = np.concatenate([p.raw for p in parts["mic"]])
    ref_mic = np.concatenate([p.raw for p in ref_parts["mic"]])
    assert len(mic) == 12 * RATE  # the timeline kept its length through the dropout
    np.testing.assert_array_equal(mic, ref_mic)  # and the microphone did not move by a sample

    system = np.concatenate([p.raw for p in parts["system"]])
    delivered = np.zeros(len(system), bool)
    pos = 0
    for p in parts["system"]:
        delivered[pos + p.delivered.start : pos + p.delivered.stop] = True
        pos += len(p.raw)
    gap = slice(int(4.1 * RATE), int(7.0 * RATE))  # after the 0.1 s it had queued played out
    assert np.all(system[gap] == 0.0) and not delivered[gap].any()
    assert delivered[int(7.2 * RATE) :].all()  # primed again and playing after the pause

    # Clicks alternate every 0.25 s, so look for each one only within 0.2 s after it.
    late_mic = pair_offsets(found, clicks, window_s=0.2)
    late_system = pair_offsets(found, clicks + 0.25, window_s=0.2)
    in_pause = ((clicks + 0.25) >= 4.0) & ((clicks + 0.25) < 7.0)
    assert np.isnan(late_system[in_pause]).all()  # never captured, so never heard
    assert not np.isnan(late_mic).any()
    np.testing.assert_allclose(late_mic, pair_offsets(ref_found, clicks, 0.2), atol=1 / RATE)
    # Back after the pause with the same latency as before it.
    before, after = late_system[(clicks + 0.25) < 4.0], late_system[(clicks + 0.25) >= 7.25]
    assert np.all(np.abs(after - np.median(before)) < 0.005)


def test_a_source_that_never_delivers_contributes_silence() -> None:
    mixer = Mixer()
    mixer.add_source("mic")
    mixer.add_source("system")
    mixer.push("mic", np.full(4000, 0.25, np.float32))
    block = mixer.render(2000)
    assert np.all(block.parts["system"].raw == 0.0)
    assert block.parts["system"].delivered == slice(2000, 2000)
    # mic primed: it plays what exceeds the 100 ms margin, at the end of this render
    assert np.all(block.mix[-(4000 - 1600) :] == 0.25) and np.all(block.mix[:-2400] == 0.0)


def test_removed_source_plays_out_its_queue_then_goes_quiet() -> None:
    mixer = Mixer()
    mixer.add_source("mic")
    mixer.push("mic", np.full(3000, 0.1, np.float32))
    mixer.render(1000)
    mixer.remove_source("mic")
    block = mixer.render(3000)
    assert np.count_nonzero(block.mix) == 2000  # nothing captured is thrown away
    assert mixer.sources == []


def test_gains_apply_per_source_before_the_sum() -> None:
    mixer = Mixer()
    for name in ("mic", "system"):
        mixer.add_source(name)
        mixer.push(name, np.full(2880, 0.25, np.float32))
    mixer.gain("system").set_gain_db(-6.0)
    mixer.gain("mic").set_muted(True)
    mixer.render(100)  # gain ramps settle
    block = mixer.render(1000)
    assert np.all(block.parts["mic"].gained == 0.0)
    np.testing.assert_allclose(block.mix, 0.25 * 10 ** (-6 / 20), rtol=1e-6)


@pytest.mark.parametrize("count", [1, 3, 16])
def test_splices_remove_or_repeat_single_samples_where_the_wave_is_flattest(count: int) -> None:
    t = np.arange(1600) / RATE
    wave = np.sin(2 * np.pi * 200 * t).astype(np.float32)
    shorter = splice_out(wave, count)
    longer = splice_in(wave, count)
    assert len(shorter) == 1600 - count and len(longer) == 1600 + count
    # A splice at the flattest point makes a step no bigger than the wave's own steps.
    largest_step = np.max(np.abs(np.diff(wave)))
    assert np.max(np.abs(np.diff(shorter))) <= largest_step * 1.01
    assert np.max(np.abs(np.diff(longer))) <= largest_step * 1.01
