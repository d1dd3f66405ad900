"""Meters and health: what the user sees next to each source."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.dsp.health import HealthTracker
from meetcap.dsp.meter import LevelMeter, count_clips
from meetcap.levels import SILENCE_DBFS, Health
from tests.dsp.signals import noise, sine

BLOCK = 320  # the worker renders ~20 ms at a time


def feed(tracker: HealthTracker, signal: np.ndarray, watch: Health | None = None) -> float | None:
    """Observe ``signal`` block by block; return the time (s) ``watch`` was first reported."""
    for start in range(0, len(signal), BLOCK):
        tracker.observe(signal[start : start + BLOCK])
        if watch is not None and tracker.snapshot().health is watch:
            return (start + BLOCK) / 16000
    return None


def started(**options) -> HealthTracker:
    tracker = HealthTracker("mic", **options)
    tracker.start()
    return tracker


@pytest.mark.parametrize("amplitude", [1.0, 0.5, 0.01])
def test_meter_reads_a_known_sine_in_dbfs(amplitude: float) -> None:
    meter = LevelMeter()
    x = sine(1000, 16000, 0.5, amplitude)
    for start in range(0, len(x), 123):
        meter.process(x[start : start + 123])
    expected_peak = 20 * np.log10(amplitude)
    assert meter.peak_dbfs == pytest.approx(expected_peak, abs=0.05)
    assert meter.rms_dbfs == pytest.approx(expected_peak - 3.01, abs=0.05)


def test_meter_of_silence_reads_the_floor() -> None:
    meter = LevelMeter()
    meter.process(np.zeros(3200, np.float32))
    assert meter.peak_dbfs == SILENCE_DBFS and meter.rms_dbfs == SILENCE_DBFS


def test_clips_are_counted_at_full_scale_on_every_channel() -> None:
    block = np.full((100, 2), 0.5, np.float32)
    block[3, 0] = 1.0
    block[4, 1] = -1.0
    block[5, 0] = 32767 / 32768  # int16 +full scale as PortAudio delivers it
    block[6, 1] = 0.999  # loud but not clipped
    assert count_clips(block) == 3
    assert count_clips(np.zeros((0, 2), np.float32)) == 0


def test_muted_device_is_reported_within_two_seconds() -> None:
    tracker = started()
    feed(tracker, sine(440, 16000, 2.0, 0.3))
    assert tracker.snapshot().health is Health.OK
    reported_after_s = feed(tracker, np.zeros(16000 * 3, np.float32), watch=Health.MUTED)
    assert reported_after_s is not None and 0.9 <= reported_after_s <= 2.0
    feed(tracker, np.zeros(16000, np.float32))
    assert tracker.snapshot().problem_for_s == pytest.approx(reported_after_s + 1.0, abs=0.05)
    feed(tracker, sine(440, 16000, 0.1, 0.3))
    assert tracker.snapshot().health is Health.OK


def test_quiet_source_is_silent_after_the_configured_time_and_not_before() -> None:
    tracker = started(silent_after_s=3.0)
    reported_after_s = feed(tracker, noise(6.0, -70.0, seed=1), watch=Health.SILENT)
    assert reported_after_s is not None and 3.0 <= reported_after_s <= 3.2
    loud = started(silent_after_s=3.0)
    assert feed(loud, noise(6.0, -45.0, seed=2), watch=Health.SILENT) is None


def test_undelivered_audio_is_silence_but_not_a_mute() -> None:
    """A loopback that sends nothing is not 'muted', but the listener hears silence."""
    tracker = started(silent_after_s=2.0)
    for _ in range(200):  # 4 s of blocks the mixer had to fill with zeros
        tracker.observe(np.zeros(BLOCK, np.float32), delivered=slice(0, 0))
    assert tracker.snapshot().health is Health.SILENT


def test_clipping_shows_for_one_second_after_the_last_clip() -> None:
    tracker = started()
    feed(tracker, sine(440, 16000, 0.5, 0.3))
    tracker.note_clips(5)
    assert tracker.snapshot().health is Health.CLIPPING
    feed(tracker, sine(440, 16000, 0.96, 0.3))
    assert tracker.snapshot().health is Health.CLIPPING
    feed(tracker, sine(440, 16000, 0.1, 0.3))
    snapshot = tracker.snapshot()
    assert snapshot.health is Health.OK and snapshot.clip_count == 5


def test_overruns_lost_and_stopped() -> None:
    tracker = started()
    tracker.set_overruns(2)
    assert tracker.snapshot().health is Health.OVERRUN
    feed(tracker, sine(440, 16000, 5.1, 0.3))
    assert tracker.snapshot().health is Health.OK
    tracker.mark_lost()
    tracker.idle(8000)
    lost = tracker.snapshot()
    assert lost.health is Health.LOST and lost.problem_for_s == pytest.approx(0.5)
    tracker.start()  # the device came back
    tracker.set_overruns(1)  # the new stream counts from zero again
    assert tracker.snapshot().overruns == 3
    tracker.stop()
    assert tracker.snapshot().health is Health.STOPPED
