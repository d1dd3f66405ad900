"""The mixer: every source on ONE 16 kHz timeline, whatever its device clock does.

The timeline is driven from outside: ``render(n)`` says that n more samples of the
timeline are due (the worker derives n from ``time.monotonic()``), and every source then
contributes exactly n samples. That keeps the timeline gapless and lets the sources'
clocks differ from the master clock and from each other.

Each source's resampled audio waits in its own FIFO (a :class:`SourceLane`):

- **Latency** of a lane = the samples in its FIFO + those still inside the source's
  resampler (soxr releases output in bursts of a few hundred samples; counting what it
  holds makes the measure smooth). The caller passes the latter with each push.
- **Startup margin (priming).** A lane starts playing only once its latency reaches
  ``target_latency_ms`` (100 ms), and it starts so that exactly that much is left after
  the render. Of those 100 ms the resampler holds 6-40 ms (soxr HQ, 44.1-48 kHz), so the
  FIFO itself keeps 60-94 ms against late device blocks: enough for capture blocks of
  10-40 ms and a worker that wakes every 20-50 ms. A device that delivers in bigger
  blocks needs a bigger target. The price: every source reaches the mix 100 ms after it
  was captured.
- **Nothing delivered.** When a lane runs dry (WASAPI loopback sends nothing during
  silence, a device was unplugged), the missing part is zeros, so the timeline never
  stalls or jumps and the other sources are untouched. The lane primes again before it
  resumes, which puts its latency back at the target.
- **Clock drift.** A device clock that runs fast fills its FIFO, a slow one drains it
  (100 ppm is 1.6 samples a second at 16 kHz, 0.36 s an hour). The lane
  smooths its latency over ~2 s and, when that is more than ``deadband_ms`` (4 ms) from
  the target, drops or repeats single samples at a rate proportional to the
  error (reaching the target in ~10 s, at most ``max_correction_ppm``). Each dropped or
  repeated sample sits where the waveform is flattest in its stretch (the smallest
  step between neighbours), so the splice is as small as the signal allows. For 100 ppm
  that is 1.6 splices a second, far apart, and the latency stays within a few ms of the
  target for as long as capture runs (tests/dsp/test_mixer.py measures it over 60 min).

Gains apply per source before the sum; the mix is the plain sum (not the average):
normalising and limiting come later (:mod:`meetcap.dsp.normalize`).
"""

from __future__ import annotations

import functools
import inspect
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.fifo import SampleFifo
from meetcap.dsp.gain import Gain
from meetcap.dsp.units import ms_to_samples, s_to_samples

DEFAULT_TARGET_LATENCY_MS = 100.0
DEFAULT_DEADBAND_MS = 4.0
DEFAULT_CORRECTION_TIME_S = 10.0
DEFAULT_LEVEL_SMOOTHING_S = 2.0
# After (re)priming, a lane watches its latency this long before correcting anything, then
# adopts the settled value as its target. Where in the device's block cycle priming
# happened leaves the lane up to a block (~20 ms) off the nominal target; correcting that
# offset stretched a source by ~1,500 ppm for its first 10-20 s (measured through
# PulseAudio in tests/audio), which is audible as a slow pitch bend. Holding the settled
# latency instead costs nothing: drift compensation still keeps it from moving.
DEFAULT_SETTLE_S = 4.0
# 1 %: enough to absorb any real device clock (they are within a few hundred ppm) and to
# work off a burst of backlog in seconds, while splices stay >= 100 samples apart.
DEFAULT_MAX_CORRECTION_PPM = 10_000.0
# Never more than one splice per this many samples in a render, however large the error.
_MIN_SPLICE_SPACING = 64


def splice_out(samples: np.ndarray, count: int) -> np.ndarray:
    """Remove ``count`` single samples, one per equal stretch, where the waveform is flattest."""
    if count <= 0:
        return samples.copy()
    spacing = len(samples) // count
    grid = samples[: count * spacing].reshape(count, spacing)
    # Drop x[i] where |x[i] - x[i-1]| is smallest: the neighbours then join almost seamlessly.
    where = np.argmin(np.abs(np.diff(grid, axis=1)), axis=1) + 1
    return np.delete(samples, where + np.arange(count) * spacing)


def splice_in(samples: np.ndarray, count: int) -> np.ndarray:
    """Repeat ``count`` single samples, one per equal stretch, where the waveform is flattest."""
    if count <= 0:
        return samples.copy()
    spacing = len(samples) // count
    grid = samples[: count * spacing].reshape(count, spacing)
    where = np.argmin(np.abs(np.diff(grid, axis=1)), axis=1) + np.arange(count) * spacing
    return np.insert(samples, where + 1, samples[where])


class SourceLane:
    """One source's FIFO between its resampler and the timeline, with drift compensation.

    :meth:`push` resampled 16 kHz audio as it arrives; :meth:`pull` exactly n samples per
    render. See the module docstring for the policy.
    """

    def __init__(
        self,
        *,
        target_latency_ms: float = DEFAULT_TARGET_LATENCY_MS,
        deadband_ms: float = DEFAULT_DEADBAND_MS,
        correction_time_s: float = DEFAULT_CORRECTION_TIME_S,
        level_smoothing_s: float = DEFAULT_LEVEL_SMOOTHING_S,
        max_correction_ppm: float = DEFAULT_MAX_CORRECTION_PPM,
        drift_compensation: bool = True,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        self.target_samples = ms_to_samples(target_latency_ms, sample_rate_hz)
        self._nominal_target = self.target_samples
        self._settle = s_to_samples(settle_s, sample_rate_hz)
        self._settling_left = 0
        self._deadband = ms_to_samples(deadband_ms, sample_rate_hz)
        self._correction_time = max(1, s_to_samples(correction_time_s, sample_rate_hz))
        self._smoothing = max(1, s_to_samples(level_smoothing_s, sample_rate_hz))
        self._max_ratio = max_correction_ppm * 1e-6
        self.drift_compensation = drift_compensation
        self._fifo = SampleFifo(np.float32, capacity=4 * self.target_samples + 16_384)
        self.primed = False
        self.closing = False  # removed: play out what is left, then go away
        self._upstream = 0.0  # samples still inside the source's resampler
        self._latency_avg = float(self.target_samples)
        self._splice_debt = 0.0
        # Statistics a caller may log or test.
        self.underruns = 0
        self.samples_dropped = 0
        self.samples_repeated = 0
        self.samples_filled = 0

    @property
    def level(self) -> int:
        """Samples waiting in the FIFO."""
        return len(self._fifo)

    @property
    def latency_samples(self) -> float:
        """Captured audio not yet played: the FIFO plus what is inside the resampler."""
        return len(self._fifo) + self._upstream

    @property
    def latency_error_samples(self) -> float:
        """Smoothed latency minus the target (positive: the source runs ahead)."""
        return self._latency_avg - self.target_samples

    def push(self, samples: np.ndarray, upstream_samples: float = 0.0) -> None:
        """Queue resampled 16 kHz mono samples from the source.

        ``upstream_samples``: output samples the resampler holds back after this block
        (:attr:`meetcap.dsp.resample.Resampler.pending_samples`).
        """
        self._fifo.push(samples)
        self._upstream = upstream_samples

    def pull(self, n: int) -> tuple[np.ndarray, slice]:
        """Take this source's next ``n`` timeline samples.

        Returns the block and the slice of it that holds delivered audio; the rest is zero
        fill (before it while priming, after it when the FIFO ran dry).
        """
        if self.closing:
            return self._drain(n)
        if not self.primed:
            return self._prime(n)
        splices = self._splices_due(n)
        need = n + splices
        if len(self._fifo) < need:
            if len(self._fifo) >= n:
                self._splice_debt += abs(splices)  # not now: keep the correction owed
                splices, need = 0, n
            else:
                self.underruns += 1
                self.primed = False
                return self._drain(n)
        data = self._fifo.pop(need)
        if splices > 0:
            out = splice_out(data, splices)
            self.samples_dropped += splices
        elif splices < 0:
            out = splice_in(data, -splices)
            self.samples_repeated -= splices
        else:
            out = data.copy()
        self._track_level(n)
        return out, slice(0, n)

    def _drain(self, n: int) -> tuple[np.ndarray, slice]:
        got = min(n, len(self._fifo))
        out = np.zeros(n, dtype=np.float32)
        out[:got] = self._fifo.pop(got)
        self.samples_filled += n - got
        return out, slice(0, got)

    def _prime(self, n: int) -> tuple[np.ndarray, slice]:
        surplus = min(len(self._fifo), int(self.latency_samples) - self.target_samples)
        if surplus <= 0:
            self.samples_filled += n
            return np.zeros(n, dtype=np.float32), slice(n, n)
        self.primed = True
        self._splice_debt = 0.0
        take = min(n, surplus)  # leave exactly the target behind (or more: drift fixes it)
        out = np.zeros(n, dtype=np.float32)
        out[n - take :] = self._fifo.pop(take)
        self.samples_filled += n - take
        self._latency_avg = self.latency_samples
        self.target_samples = self._nominal_target
        self._settling_left = self._settle
        return out, slice(n - take, n)

    def _splices_due(self, n: int) -> int:
        """Signed number of samples to drop (+) or repeat (-) in the next n."""
        if not self.drift_compensation:
            return 0
        if self._settling_left > 0:
            self._settling_left -= n
            if self._settling_left <= 0:
                # Adopt the settled latency unless it leaves too little margin for jitter.
                settled = int(round(self._latency_avg))
                if settled >= self._nominal_target // 2:
                    self.target_samples = settled
            return 0
        error = self._latency_avg - self.target_samples
        excess = abs(error) - self._deadband
        if excess <= 0:
            self._splice_debt = 0.0
            return 0
        rate = min(excess / self._correction_time, self._max_ratio)
        self._splice_debt += rate * n
        count = min(int(self._splice_debt), n // _MIN_SPLICE_SPACING, int(math.ceil(excess)))
        self._splice_debt -= count
        return count if error > 0 else -count

    def _track_level(self, n: int) -> None:
        alpha = 1.0 - math.exp(-n / self._smoothing)
        self._latency_avg += alpha * (self.latency_samples - self._latency_avg)


@dataclass(frozen=True, slots=True)
class SourcePart:
    """One source's share of a rendered block: ``raw`` before gain, ``gained`` after.

    ``delivered`` is the slice of the block that came from the device (the rest is fill).
    """

    raw: np.ndarray
    gained: np.ndarray
    delivered: slice


@dataclass(frozen=True, slots=True)
class MixBlock:
    """A rendered stretch of the timeline: the summed mix and each source's part."""

    mix: np.ndarray
    parts: dict[str, SourcePart]


class Mixer:
    """Sources on one 16 kHz timeline, each with its gain, summed.

    Add a source before pushing to it; :meth:`render` as the master clock advances. A source
    never added, or removed (after what it had queued has played out), contributes silence.
    Gains are kept per source name, so they survive a source being removed and re-added.
    """

    def __init__(self, **lane_options: Any) -> None:
        """``lane_options`` are :class:`SourceLane`'s keyword options (target latency,
        drift compensation...), the same for every source; its defaults otherwise."""
        inspect.signature(SourceLane).bind(**lane_options)  # a wrong name fails here, not later
        self._new_lane = functools.partial(SourceLane, **lane_options)
        self._lanes: dict[str, SourceLane] = {}
        self._gains: dict[str, Gain] = {}
        self.samples_rendered = 0

    @property
    def sources(self) -> list[str]:
        """Sources that currently contribute (including removed ones still playing out)."""
        return list(self._lanes)

    def lane(self, name: str) -> SourceLane:
        """The FIFO lane of an added source (for statistics)."""
        try:
            return self._lanes[name]
        except KeyError:
            raise KeyError(
                f"no source named {name!r} is in the mix; add_source() it first"
            ) from None

    def gain(self, name: str) -> Gain:
        """The gain stage of ``name`` (created at 0 dB on first use)."""
        gain = self._gains.get(name)
        if gain is None:
            gain = self._gains[name] = Gain()
        return gain

    def add_source(self, name: str) -> None:
        """Start a lane for ``name``. Re-adding a source that is playing out continues it."""
        lane = self._lanes.get(name)
        if lane is not None and lane.closing:
            lane.closing = False
            lane.primed = lane.primed and lane.level > 0
            return
        if lane is None:
            self._lanes[name] = self._new_lane()

    def remove_source(self, name: str) -> None:
        """Stop ``name``: what it already queued still plays, then it contributes nothing."""
        lane = self._lanes.get(name)
        if lane is not None:
            lane.closing = True

    def push(self, name: str, samples: np.ndarray, upstream_samples: float = 0.0) -> None:
        """Queue resampled 16 kHz mono audio of source ``name`` (see :meth:`SourceLane.push`)."""
        self.lane(name).push(samples, upstream_samples)

    def render(self, n: int) -> MixBlock:
        """Advance the timeline by ``n`` samples and return the mix and every source's part."""
        if n < 0:
            raise ValueError(f"cannot render a negative number of samples ({n})")
        mix = np.zeros(n, dtype=np.float32)
        parts: dict[str, SourcePart] = {}
        for name, lane in list(self._lanes.items()):
            raw, delivered = lane.pull(n)
            gained = self.gain(name).process(raw)
            mix += gained
            parts[name] = SourcePart(raw, gained, delivered)
            if lane.closing and lane.level == 0:
                del self._lanes[name]
        self.samples_rendered += n
        return MixBlock(mix, parts)
