"""The mixer: every source on ONE 16 kHz timeline, whatever its device clock does.

The timeline is driven from outside: ``render(n, clock_lead)`` says that n more samples
of the timeline are due (the worker derives n from ``time.monotonic()``; the chain
renders whole 100 ms units and says how far the clock is already past them), and every
source then contributes exactly n samples. That keeps the timeline gapless and lets the
sources' clocks differ from the master clock and from each other.

Each source's resampled audio waits in its own FIFO (a :class:`SourceLane`):

- **Latency** of a lane = the samples in its FIFO + those still inside the source's
  resampler - the samples the clock has passed but not rendered yet (``clock_lead``):
  how long the newest audio will wait before it plays.
- **Startup margin (priming).** A lane starts playing once its latency reaches
  ``target_latency_ms`` (200 ms), so that exactly that much is left after the render.
  Measured here (docs/figures.md, "Mix timing"): PulseAudio hands a null sink's monitor
  over in 20-60 ms blocks with gaps of up to 162 ms, and the chain takes 100 ms at a
  time, so 100 ms ran dry two times a minute per lane; 200 ms has not, in any run here.
- **Nothing delivered.** When a lane runs dry (WASAPI loopback sends nothing during
  silence, a device was unplugged, a server stalled), the missing part is zeros, so the
  timeline never stalls or jumps and the other sources are untouched. The lane primes
  again (to the latency it had) before it resumes; audio that arrives late on top (a
  stall's backlog) is worked off smoothly (:mod:`meetcap.dsp.drift`), never dropped.
- **Clock drift.** A device clock that runs fast fills its FIFO, a slow one drains it
  (100 ppm is 1.6 samples a second at 16 kHz, 0.36 s an hour). A
  :class:`~meetcap.dsp.drift.DriftLoop` per lane measures the clock difference from
  the trend of the latency and ignores its wander; the lane then reads its FIFO at
  ``1 + correction`` samples per timeline sample with a 32-tap windowed-sinc
  interpolator (:mod:`meetcap.dsp.interpolate`), the read rate gliding from one render
  to the next: no sample is ever dropped or repeated, a correction is never a step. With
  no correction (one clock) the lane copies samples untouched.
  :attr:`SourceLane.correction_ppm` is what it applies now.

Why not single-sample splices any more (issue 10, measured through real PulseAudio with
two espeak-ng voices on one clock, 30-60 s, `tests/audio` rig): the old lane smoothed
FIFO + resampler level over 2 s and dropped or repeated a sample whenever that was 4 ms
off a target it adopted after 4 s. The level it watched wanders by +-13 ms (1 s means;
5-8 ms std per render) with no trend at all, because the chain's 100 ms units beat
against 50 ms worker ticks and 20-60 ms device blocks, and soxr holds back 0-36 ms
(``upstream_samples``) in bursts. So (1) the lane spliced 55-72 ppm gross where the
drift was zero, (2) its adopted target moved with the wander (100 -> 79.9 -> 89.4 ->
109 ms in one run), and above all (3) the 100 ms margin, counted with the resampler's
held-back samples and without the unrendered clock, ran dry 2 times per lane in 30 s
(FIFO 0 at a 100 ms pull after a 162 ms delivery gap): every underrun zero-filled a gap
and re-primed at a new place, moving the lane by 40-80 samples. A whole-recording fit
explained 3-13 % of it (R^2 0.03, 0.13); the same capture with the lane fixed (no
correction, a 250 ms margin) gave R^2 0.99999 and no underrun, so PulseAudio itself
keeps time. Now: no splices, the latency is measured against the clock, a 200 ms margin,
and the loop does not chase the wander: R^2 1.0000 per lane and for the mix over 60 s,
0 ppm applied (tests/audio/test_capture_pulseaudio.py).

PipeWire (same rig, logged per lane: docs/figures.md, "Mix timing") loses time at the
server, not through the loop (0 ppm for the first 30 s of every run): its graph stalls
for 50-300 ms (the lanes deliver that much less than the clock, content intact), or the
virtual mic drops 21-96 ms of samples in the graph's hiccups. A lane cannot play audio
that has not arrived, but it can keep its place: the capture counts its samples against
the clock (:mod:`meetcap.audio.lost_samples`), the other lane says whether a shortfall
was lost (it caught up from the same hiccup) or a paused clock (it fell behind too) or a
latency step (it saw nothing), and only a loss becomes silence in the lane's stream
(:mod:`meetcap.audio.lane_losses`), 1-3 s after it: the lane's latency comes back and
what follows sits where it belongs. Stalls that add up to more than the margin still run
the lane dry here (the zero fill, then the prime). The lanes' starts, and their places
after a dry-out, are aligned on the deliveries (:mod:`meetcap.audio.lane_alignment`).
One error was the
mixer's: after a dry-out it steered back to its old reference, which the prime misses by
the measure's own 5-20 ms; it now adopts the settled latency
(:meth:`~meetcap.dsp.drift.DriftLoop.restart`). Others were the loop's, found by
replaying real PipeWire traces (``MEETCAP_MIXTRACE``, :mod:`meetcap.dsp.mixtrace`)
through this mixer: a stall that moves a lane's latency for good, in one lane or both,
was read as 3-530 ppm of drift (once 113 ppm in a real run, failing it); it is a step
now, never a rate (tests/dsp/test_mixer_replay.py).

Gains apply per source before the sum; the mix is the plain sum (not the average):
normalising and limiting come later (:mod:`meetcap.dsp.normalize`).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp import mixtrace
from meetcap.dsp.drift import DEFAULT_MAX_PPM, DriftLoop
from meetcap.dsp.fifo import SampleFifo
from meetcap.dsp.gain import Gain
from meetcap.dsp.interpolate import HISTORY, LOOKAHEAD, interpolate
from meetcap.dsp.units import ms_to_samples

DEFAULT_TARGET_LATENCY_MS = 200.0
DEFAULT_MAX_CORRECTION_PPM = DEFAULT_MAX_PPM
# The reference latency a lane adopts is kept at least this share of the target, so the
# lane never settles on a margin too thin for the next delivery.
_MIN_REFERENCE_SHARE = 0.25
# ... and at most this multiple of it: a latency step beyond that is worked off.
_MAX_REFERENCE_SHARE = 2.5
_trace_ids = itertools.count()  # tells mixers apart in a trace (meetcap.dsp.mixtrace)


class SourceLane:
    """One source's FIFO between its resampler and the timeline, read at a corrected rate.

    :meth:`push` resampled 16 kHz audio as it arrives; :meth:`pull` exactly n samples per
    render. See the module docstring for the policy.
    """

    def __init__(
        self,
        *,
        target_latency_ms: float = DEFAULT_TARGET_LATENCY_MS,
        max_correction_ppm: float = DEFAULT_MAX_CORRECTION_PPM,
        drift_compensation: bool = True,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
        drift_options: dict[str, float] | None = None,
    ) -> None:
        self.target_samples = ms_to_samples(target_latency_ms, sample_rate_hz)
        self._rate_hz = sample_rate_hz
        self.drift_compensation = drift_compensation
        self.loop = DriftLoop(
            sample_rate_hz, max_ppm=max_correction_ppm,
            min_reference=_MIN_REFERENCE_SHARE * self.target_samples,
            max_reference=_MAX_REFERENCE_SHARE * self.target_samples, **(drift_options or {}),
        )
        self._fifo = SampleFifo(np.float32, capacity=4 * self.target_samples + 16_384)
        self._fifo.push_value(0.0, HISTORY)  # what the interpolator looks back at
        self._pos = float(HISTORY)  # FIFO index of the next output sample (fractional)
        self._applied = 0.0  # the correction the last read ended at
        self._peak = 0.0  # the largest |correction| applied so far
        self.primed = False
        self.closing = False  # removed: play out what is left, then go away
        self._upstream = 0.0  # samples still inside the source's resampler
        # Statistics a caller may log or test.
        self.underruns = 0
        self.samples_filled = 0
        # Pushed samples read so far (fractional under a correction): with the timeline's
        # length, where the lane's stream sits on it (audio/lane_alignment.py).
        self.consumed = 0.0

    @property
    def level(self) -> int:
        """Samples waiting in the FIFO (not yet played)."""
        return max(0, math.ceil(len(self._fifo) - self._pos))

    @property
    def latency_samples(self) -> float:
        """Captured audio not yet played: the FIFO plus what is inside the resampler."""
        return len(self._fifo) - self._pos + self._upstream

    @property
    def correction_ppm(self) -> float:
        """The read-rate correction applied now, in ppm (positive: the source runs fast
        and is read faster). Zero while the lane adopts its latency or without drift
        compensation."""
        return self._applied * 1e6

    @property
    def peak_correction_ppm(self) -> float:
        """The largest correction (absolute, ppm) this lane has applied so far."""
        return self._peak * 1e6

    def _apply(self, correction: float) -> None:
        self._applied = correction
        self._peak = max(self._peak, abs(correction))

    @property
    def latency_error_samples(self) -> float:
        """Filtered latency minus the adopted reference (positive: the source runs ahead)."""
        return self.loop.offset_ms * self._rate_hz / 1000.0

    def push(self, samples: np.ndarray, upstream_samples: float = 0.0) -> None:
        """Queue resampled 16 kHz mono samples from the source.

        ``upstream_samples``: output samples the resampler holds back after this block
        (:attr:`meetcap.dsp.resample.Resampler.pending_samples`).
        """
        self._fifo.push(samples)
        self._upstream = upstream_samples

    def pull(self, n: int, clock_lead: int = 0) -> tuple[np.ndarray, slice]:
        """Take this source's next ``n`` timeline samples.

        ``clock_lead``: samples the master clock has already passed but the caller has not
        rendered yet (they are due, so the FIFO's surplus over them is the real margin).
        Returns the block and the slice of it that holds delivered audio; the rest is zero
        fill (before it while priming, after it when the FIFO ran dry).
        """
        if self.closing:
            return self._drain(n)
        if not self.primed:
            return self._prime(n, clock_lead)
        target = self.loop.correction if self.drift_compensation else 0.0
        if self._available(n, max(self._applied, target)) < n:
            self.underruns += 1
            self.primed = False
            return self._drain(n)
        applied = self._applied
        out = self._read(n, applied, target)
        extra = n * (applied + target) / 2  # read beyond n by the gliding correction
        # _apply(target), inlined (twice per 100 ms unit).
        self._applied = target
        if abs(target) > self._peak:
            self._peak = abs(target)
        self.loop.observe(len(self._fifo) - self._pos + self._upstream - clock_lead, n, extra)
        return out, slice(0, n)

    def _available(self, n: int, correction: float) -> int:
        """How many of ``n`` outputs the FIFO can make now at (at most) ``correction``."""
        room = len(self._fifo) - LOOKAHEAD - 1 - self._pos  # last position it can make
        if room < 0:
            return 0
        return min(n, int(room / (1.0 + correction)) + 1)

    def _read(self, n: int, start: float, end: float, *, last: bool = False) -> np.ndarray:
        """``n`` outputs, the read rate gliding from ``1 + start`` to ``1 + end``.

        ``last``: the source has nothing more to give; silence stands in for the
        look-ahead the final samples need.
        """
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        before = self._pos
        if start == end == 0.0 and self._pos == int(self._pos) and not last:
            first = int(self._pos)
            out = self._fifo.peek(first + n)[first:].copy()  # no correction: exact copy
            self._pos += n
        else:
            steps = 1.0 + start + (end - start) * (np.arange(n) + 0.5) / n
            positions = self._pos + np.concatenate(([0.0], np.cumsum(steps[:-1])))
            data = self._fifo.peek(len(self._fifo))
            if last:
                data = np.concatenate((data, np.zeros(LOOKAHEAD + 1, np.float32)))
            out = interpolate(data, positions)
            self._pos = float(positions[-1] + steps[-1])
        self.consumed += self._pos - before
        done = int(self._pos) - HISTORY
        if done >= len(self._fifo) - HISTORY:  # everything played: history is silence again
            self._fifo.clear()
            self._fifo.push_value(0.0, HISTORY)
            self._pos = float(HISTORY)
        elif done > 0:
            self._fifo.pop(done)
            self._pos -= done
        return out

    def _drain(self, n: int) -> tuple[np.ndarray, slice]:
        """Play what is left (silence stands in for the look-ahead), then zeros."""
        out = np.zeros(n, dtype=np.float32)
        if self._available(n, self._applied) >= n:
            got = n
            out[:] = self._read(n, self._applied, self._applied)
        else:
            # At 1 + c samples per output, the samples left make this many outputs (not
            # `level`: read at a positive correction, that many would run past the end
            # and the interpolator would index beyond its buffer).
            left = len(self._fifo) - self._pos
            got = min(n, max(0, math.ceil(left / (1.0 + self._applied))))
            out[:got] = self._read(got, self._applied, self._applied, last=True)
        self.samples_filled += n - got
        return out, slice(0, got)

    def _prime(self, n: int, clock_lead: int) -> tuple[np.ndarray, slice]:
        # Back to the latency the lane has adopted (a source that paused comes back at the
        # same place), or the target before it has one.
        margin = self.loop.prime_margin
        if margin is None:
            margin = self.target_samples
        surplus = min(self.level - LOOKAHEAD,
                      int(self.latency_samples - clock_lead - margin))
        if surplus <= 0:
            self.samples_filled += n
            return np.zeros(n, dtype=np.float32), slice(n, n)
        correction = self.loop.correction if self.drift_compensation else 0.0
        # Leave the margin behind (or more: the loop works it off).
        take = min(n, surplus, self._available(n, correction))
        if take <= 0:
            self.samples_filled += n
            return np.zeros(n, dtype=np.float32), slice(n, n)
        self.primed = True
        self.loop.restart()
        out = np.zeros(n, dtype=np.float32)
        out[n - take :] = self._read(take, correction, correction)
        self._apply(correction)
        self.samples_filled += n - take
        return out, slice(n - take, n)


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
    """A rendered stretch of the timeline: the summed mix and each source's part
    (``mix`` is None from ``Mixer.render(summed=False)``: the caller sums the parts)."""

    mix: np.ndarray | None
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
        # Opt-in trace (MEETCAP_MIXTRACE): None when off.
        self._trace_id = next(_trace_ids) if mixtrace.enabled() else None

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
        lane = self._lanes.get(name)
        if lane is None:
            lane = self.lane(name)  # raises: what to do
        lane.push(samples, upstream_samples)
        if self._trace_id is not None:
            mixtrace.write("P", self._trace_id, name, mixtrace.now(), len(samples),
                           float(upstream_samples))

    def render(self, n: int, clock_lead: int = 0, *, summed: bool = True) -> MixBlock:
        """Advance the timeline by ``n`` samples and return the mix and every source's part.

        ``clock_lead``: timeline samples the master clock has passed beyond these ``n``
        that the caller renders later (see :meth:`SourceLane.pull`). ``summed=False``:
        no mix (None), for a caller that sums the parts itself after processing them
        (the chain: the echo stage), saving a zero fill and an add per source.
        """
        if n < 0:
            raise ValueError(f"cannot render a negative number of samples ({n})")
        if self._trace_id is not None:
            mixtrace.write("R", self._trace_id, mixtrace.now(), n, clock_lead)
        mix = np.zeros(n, dtype=np.float32) if summed else None
        parts: dict[str, SourcePart] = {}
        gains = self._gains
        for name, lane in list(self._lanes.items()):
            raw, delivered = lane.pull(n, clock_lead)
            gain = gains.get(name)
            gained = (gain if gain is not None else self.gain(name)).process(raw)
            if mix is not None:
                mix += gained
            parts[name] = SourcePart(raw, gained, delivered)
            if lane.closing and lane.level == 0:
                del self._lanes[name]
        second = self.samples_rendered // SAMPLE_RATE_HZ
        self.samples_rendered += n
        if self._trace_id is not None and self.samples_rendered // SAMPLE_RATE_HZ != second:
            self._trace_state(clock_lead)
        return MixBlock(mix, parts)

    def _trace_state(self, clock_lead: int) -> None:
        t = mixtrace.now()
        for name, lane in self._lanes.items():
            loop = lane.loop
            mixtrace.write("S", self._trace_id, name, t, float(lane.latency_samples - clock_lead),
                           float(loop.estimate if loop.estimate is not None else -1.0),
                           float(loop.reference if loop.reference is not None else -1.0),
                           float(loop.rate * 1e6), float(lane.correction_ppm),
                           float(loop.backlog), lane.underruns, loop.steps, int(lane.primed))
