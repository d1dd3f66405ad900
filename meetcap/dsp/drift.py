"""How fast to read a source so that it keeps time with the session clock.

A :class:`DriftLoop` watches one lane's latency against the master clock (the samples
it holds that the clock has not yet asked for) after every render, and answers with a
correction ``c``: the lane reads ``1 + c`` input samples per timeline sample.

What it has to ignore, measured through real PulseAudio (docs/figures.md, "Mix timing"):
the latency seen at each render jumps by 5-8 ms (std) with the device's 20-60 ms
deliveries, and even averaged over one second it wanders by +-13 ms for tens of seconds
on ONE clock, with no trend (a 20 s average still moves 3-5 ms). What it has to follow:
a real clock difference, which is a trend that never stops (200 ppm is 0.2 ms more
every second, 0.72 s an hour). So the rate is not steered by the latency's wander; it is
measured from its trend, and the latency is only kept inside a band:

1. **Per one-second window**, a high percentile of that second's latencies (a scheduling
   hiccup moves a few renders, not the percentile; see :func:`window_level`), plus what the
   correction itself has read so far (so the measure is the *uncorrected* latency ``U``,
   whose slope is the clock difference whatever the loop does).
2. **Clipped** to +-``clip_ms`` around the running estimate (a 500 ms stall moves it at
   most that much per second). ``U`` jumping by more than ``step_ms`` for five windows
   in a row is a **latency step** (the server changed its buffering): no clock does
   that, the samples still play where they would have, so the reference follows the
   average for ``adopt_s`` and nothing is corrected (unless the margin would become too
   long). A PipeWire graph stall pauses the source's clock and is such a step down;
   nothing steers while a step may be under way, and a margin a step left thinner than
   the floor is rebuilt only by the prime after a dry-out, never by reading slower
   (replays of real traces: tests/dsp/test_mixer_replay.py).
3. **The rate** is the least-squares slope of ``U`` over the last ``span_s`` (10 min),
   shrunk towards zero by what the wander could fake over that span (``wander_ms`` / span):
   on one clock it stays at 0; a real 200 ppm is 90 % learned after 5 minutes.
4. **The band**: the latency averaged over ``average_s`` against the reference adopted
   in the first ``adopt_s``; beyond ``deadband_ms`` it is steered back in proportionally
   (time constant ``fast_s``), inside not at all: on one clock the correction is then
   exactly zero (the lane copies samples untouched), which matters because even 2 ppm
   is 2 samples a minute, enough to cost a whole-recording fit of speech several
   percent. No integrator, so no hunting from edge to edge of the band.
5. **A backlog** no clock can cause (after a stall the lane ran dry, primed again, and
   the delayed audio arrived on top: the lane sits that much late; never a deficit,
   which is a paused clock) is worked off on its
   own, at up to ``max_ppm`` (1 %, 17 cents: 0.3 s in 30 s), braking to end exactly.

Every term moves with the filtered measures, and the correction changes by at most
``slew_ppm_per_s``; the lane ramps from one value to the next over a render. The read
rate never steps, it glides.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

DEFAULT_WINDOW_S = 1.0
DEFAULT_AVERAGE_S = 30.0
DEFAULT_ADOPT_S = 20.0
DEFAULT_CLIP_MS = 25.0
DEFAULT_STEP_MS = 15.0
DEFAULT_SPAN_S = 600.0
DEFAULT_WANDER_MS = 10.0
DEFAULT_DEADBAND_MS = 6.0
DEFAULT_FAST_S = 20.0
DEFAULT_CATCH_UP_MS = 25.0
DEFAULT_CATCH_UP_S = 2.0
# 1 %: beyond any device clock (they are within a few hundred ppm), and a stall's
# backlog of 0.3 s is worked off in 30 s at a pitch change of 17 cents.
DEFAULT_MAX_PPM = 10_000.0
# The correction glides: it changes by at most this much per second (a catch-up reaches
# 1 % in 5 s; drift tracking changes it by a few ppm per second).
DEFAULT_SLEW_PPM_PER_S = 2_000.0
# The rate is measured once the trend spans this long (before: the last one, or 0).
_MIN_SPAN_S = 60.0
# After a (re)start the average needs this many windows before it steers anything.
_SETTLED_WINDOWS = 10
# The window's level: this percentile of its latencies (see window_level).
_LEVEL_PERCENTILE = 80.0
# A step: this many windows in a row on the same side of the estimate, their median
# beyond step_ms and none nearer than half of it (one second's latency wanders by up to
# +-13 ms on its own, and three windows beyond 12 ms happened in a simulated hour).
_STEP_WINDOWS = 5


def window_level(values: list[float]) -> float:
    """The latency right after the freshest deliveries of a window: a high percentile.

    Just after a delivery the FIFO's newest sample is the one the device captured last,
    so this level is "how long ago the newest audio was captured, plus the margin",
    whatever the device's block or burst size; the mean would also hold half a burst,
    which differs from device to device and would set two lanes apart. A hiccup (a late
    delivery) lowers a few values and leaves the percentile alone.
    """
    # np.percentile(values, 80) (its "linear" method) in plain floats, bit for bit
    # (tests/dsp/test_fast_paths.py): ~10 values a window, where numpy's Python around
    # the partition cost ~30 us a window per lane.
    ordered = sorted(values)
    top = len(ordered) - 1
    index = top * (_LEVEL_PERCENTILE / 100)
    below = math.floor(index)
    if index >= top:
        return float(ordered[-1])
    low, high = float(ordered[below]), float(ordered[below + 1])
    gamma = index - below
    if gamma >= 0.5:
        return high - (high - low) * (1 - gamma)
    return low + (high - low) * gamma


class DriftLoop:
    """Latency observations in (samples), a read-rate correction out (see module doc)."""

    def __init__(
        self,
        rate_hz: int,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        average_s: float = DEFAULT_AVERAGE_S,
        adopt_s: float = DEFAULT_ADOPT_S,
        clip_ms: float = DEFAULT_CLIP_MS,
        step_ms: float = DEFAULT_STEP_MS,
        span_s: float = DEFAULT_SPAN_S,
        wander_ms: float = DEFAULT_WANDER_MS,
        deadband_ms: float = DEFAULT_DEADBAND_MS,
        fast_s: float = DEFAULT_FAST_S,
        catch_up_ms: float = DEFAULT_CATCH_UP_MS,
        catch_up_s: float = DEFAULT_CATCH_UP_S,
        max_ppm: float = DEFAULT_MAX_PPM,
        slew_ppm_per_s: float = DEFAULT_SLEW_PPM_PER_S,
        min_reference: float = 0.0,
        max_reference: float = math.inf,
    ) -> None:
        self._rate_hz = float(rate_hz)
        self._window = max(1, round(window_s * rate_hz))
        self._average = max(1, round(average_s / window_s))
        # (time s, uncorrected latency U) per window, clipped, over the last span_s
        self._trend: deque[tuple[float, float]] = deque(maxlen=max(2, round(span_s / window_s)))
        # (deviation, U, estimate and reference before it) of the last windows
        self._recent: deque[tuple[float, float, float, float]] = deque(maxlen=_STEP_WINDOWS)
        self._adopt_windows = max(1, round(adopt_s / window_s))
        self._clip = clip_ms * rate_hz / 1000.0
        self._step = step_ms * rate_hz / 1000.0
        self._wander = wander_ms / 1000.0
        self._deadband = deadband_ms / 1000.0
        self._fast = fast_s
        self._catch_up = catch_up_ms / 1000.0
        self._catch_up_s = catch_up_s
        self._max = max_ppm * 1e-6
        self._slew = slew_ppm_per_s * 1e-6
        self._min_reference = min_reference
        self._max_reference = max_reference
        self._values: list[float] = []
        self._in_window = 0
        self._time = 0.0  # seconds of timeline observed
        # Samples read beyond the timeline's own by the correction so far: the latency
        # plus this is what it would be uncorrected (U).
        self._extra = 0.0
        self.backlog = 0.0  # samples to work off on their own (see module doc, 5.)
        self._catch = 0.0  # the part of the correction that works the backlog off
        self._tracking = 0.0  # rate and band terms
        self.reference: float | None = None  # samples; None until the first window
        self.estimate: float | None = None  # the averaged latency, samples
        self.rate = 0.0  # the measured clock difference (ratio - 1)
        self.correction = 0.0  # what the lane applies
        self.windows = 0
        self.steps = 0  # latency steps taken as they are (not corrected)
        self._readopt = False  # primed again: adopt the settled latency (see restart)
        self._follow = 0  # windows the reference still follows the average after a step

    @property
    def correction_ppm(self) -> float:
        return self.correction * 1e6

    @property
    def offset_ms(self) -> float:
        """Averaged latency minus the reference (positive: the source runs ahead)."""
        if self.estimate is None or self.reference is None:
            return 0.0
        return (self.estimate - self.reference) / self._rate_hz * 1000.0

    @property
    def adopted(self) -> bool:
        return self.windows >= self._adopt_windows

    def restart(self) -> None:
        """The lane primed again (after running dry): its latency starts afresh, measured
        against the same reference, at the same rate. A backlog that arrives after a
        stall is then an offset to work off, not a step to take as it is."""
        self._values.clear()
        self._in_window = 0
        self._trend.clear()
        self._recent.clear()
        self.estimate = None
        # A reference a step took below the floor is raised to it now: the prime's zero
        # fill has just rebuilt that margin (a jump at a dry-out, never a rate).
        if self.reference is not None:
            self.reference = self._bounded(self.reference)
        # The band term steered the latency before the dry-out; that latency is gone.
        # Keep only the measured clock difference (a stale band term was applied for the
        # 10 s until the loop settled again: 470 ppm on one clock in a replayed PipeWire
        # trace, tests/dsp/test_mixer_replay.py).
        self._tracking = self.rate
        self._combine()
        # The lane primed to the reference by its latency right at a render; the window
        # level is a high percentile of the latency, which sits up to ~20 ms above that
        # (bursty delivery). Steering that difference away warped the lane by 100-7,000
        # ppm after every dry-out (measured on PipeWire: 450 ppm, 66 samples in 12 s).
        # So once settled, a latency within catch_up_ms of the reference is the reference.
        self._readopt = True

    @property
    def prime_margin(self) -> float | None:
        """The latency a lane that ran dry primes back to: its reference, but never a
        margin thinner than the floor (see :meth:`restart`)."""
        return None if self.reference is None else self._bounded(self.reference)

    def observe(self, latency: float, n: int, extra: float = 0.0) -> None:
        """The lane's latency against the master clock after a render of ``n`` samples,
        for which it read ``n + extra`` input samples."""
        self._extra += extra
        self._time += n / self._rate_hz
        if self.backlog or self._catch:
            self._work_off_backlog(n)
        self._values.append(latency + self._extra)
        self._in_window += n
        if self._in_window >= self._window:
            self._close_window(self._in_window / self._rate_hz)

    def _close_window(self, dt: float) -> None:
        value = window_level(self._values)
        self._values.clear()
        self._in_window = 0
        self.windows += 1
        if self.estimate is None:
            self._trend.append((self._time, value))
        else:
            before = self.estimate + self._extra
            deviation = value - before
            self._recent.append((deviation, value, before,
                                 self.reference if self.reference is not None else 0.0))
            clipped = before + min(max(deviation, -self._clip), self._clip)
            self._trend.append((self._time, clipped))
            if self._is_step():
                self._take_step()
        recent = [u for _, u in list(self._trend)[-self._average :]]
        self.estimate = float(np.mean(recent)) - self._extra
        if self._follow:
            # After a step the reference follows the average for adopt_s, as at the start:
            # the step's size was judged on four windows, and the level after a PipeWire
            # stall settles for a further 5-10 ms over the next 20 s (a real trace: a
            # reference set at once ended 6 ms off, and the band read that as drift).
            self._follow -= 1
            self.reference = min(self.estimate, self._max_reference)
        if not self.adopted or self.reference is None:
            self.reference = self._bounded(self.estimate)
            return
        if len(self._trend) >= _SETTLED_WINDOWS:
            if self._readopt:
                self._readopt = False
                # Settled lower, by any amount: a stall paused the source's clock after the
                # prime (PipeWire: the content intact, later), and reading slower to win the
                # margin back is a warp (a replayed real trace: a lane that primed and then
                # stalled 75 ms was read up to 1 % slow as a "negative backlog"). Only a
                # lane that settled higher by more than catch_up_ms has a backlog.
                if self.estimate - self.reference <= self._catch_up * self._rate_hz:
                    self.reference = min(self.estimate, self._max_reference)
            self._update()

    def _is_step(self) -> bool:
        if len(self._recent) < _STEP_WINDOWS:
            return False
        # Against the estimate before these windows (which they have already moved).
        baseline = self._recent[0][2]
        deviations = np.array([u - baseline for _, u, *_ in self._recent])
        if not (np.all(deviations > 0) or np.all(deviations < 0)):
            return False
        sizes = np.abs(deviations)
        return float(np.median(sizes)) > self._step and float(sizes.min()) > self._step / 2

    def _take_step(self) -> None:
        """The delivery latency moved at once (no clock does that): the samples still play
        where they would have, so the reference moves with it instead of time warping."""
        before = self._recent[0][2]
        # The first window of a step may hold only part of it: the later ones say how big.
        shift = float(np.median([u for _, u, *_ in list(self._recent)[1:]])) - before
        trend = list(self._trend)
        self._trend.clear()
        self._trend.extend((t, u + shift) for t, u in trend[:-_STEP_WINDOWS])
        # The windows that told the step are taken as measured, but one that still sat
        # nearer the old level (it qualifies with half a step of wander) belongs before
        # it: kept raw, it held the average 1,600 samples off for 30 s and moved it 6 ms
        # when it aged out (a real PipeWire trace).
        after = before + shift
        self._trend.extend((t, u + shift if abs(u - before) < abs(u - after) else u)
                           for (t, _), (_, u, *_) in
                           zip(trend[-_STEP_WINDOWS:], self._recent, strict=True))
        self._recent.clear()
        # Not raised to the floor here: the latency really is that low now, and steering
        # it back up is reading slower on one clock, a warp (a PipeWire graph stall of
        # 85 ms in both lanes took a lane from 127 to 42 ms; held at the 50 ms floor, the
        # band term read 113-500 ppm slow). A margin that thin is rebuilt only if the lane
        # runs dry (restart), where the prime's zero fill does it at once.
        # And not the old reference plus the shift either: that kept whatever offset the
        # lane had when the step began (a prime's overshoot not yet adopted, a reference
        # re-adopted while the step was already pulling the average down) plus the part
        # of the step the rebuilt average does not hold, 6-15 ms on real PipeWire traces:
        # beyond the band, read as 240-450 ppm of drift. A step is taken as it is: the
        # latency the average holds after it is the reference (see _close_window).
        self._follow = self._adopt_windows
        self.steps += 1

    def _bounded(self, reference: float) -> float:
        return min(max(reference, self._min_reference), self._max_reference)

    def _measured_rate(self) -> float:
        """The slope of U, shrunk by what the wander could fake over the span."""
        span = self._trend[-1][0] - self._trend[0][0] if self._trend else 0.0
        if span < _MIN_SPAN_S:
            return self.rate  # too short to tell: keep what was measured before
        t = np.array([t for t, _ in self._trend])
        u = np.array([u for _, u in self._trend])
        t -= t.mean()
        slope = float(np.dot(t, u - u.mean()) / np.dot(t, t)) / self._rate_hz
        doubt = self._wander / span
        return math.copysign(max(0.0, abs(slope) - doubt), slope)

    def _step_under_way(self) -> bool:
        """The last windows all jumped the same way by more than half a step: it may be
        a step not yet confirmed (it takes five windows), whose first windows pull the
        average (by up to clip_ms each, over as few as ten windows after a restart):
        nothing steers on that until it is told."""
        if len(self._recent) < 2:
            return False
        last = [d for d, *_ in list(self._recent)[-2:]]
        return all(abs(d) > self._step / 2 for d in last) and (
            all(d > 0 for d in last) or all(d < 0 for d in last))

    def _update(self) -> None:
        assert self.reference is not None and self.estimate is not None
        if self._step_under_way():
            return
        if abs(self.estimate - self.reference - self.backlog) > self._catch_up * self._rate_hz:
            # Late audio on top: no clock does this, work it off. Never a deficit (the
            # lane sitting early is a paused source clock, a step: see restart).
            self.backlog = max(0.0, self.estimate - self.reference)
        offset = (self.estimate - self.reference - self.backlog) / self._rate_hz  # seconds
        outside = math.copysign(max(0.0, abs(offset) - self._deadband), offset)
        wanted = self._measured_rate()
        step = self._slew * (self._window / self._rate_hz)
        self.rate += min(max(wanted - self.rate, -step), step)
        tracking = self.rate + outside / self._fast
        self._tracking += min(max(tracking - self._tracking, -step), step)
        self._combine()

    def _work_off_backlog(self, n: int) -> None:
        """Per render: the catch-up glides (at most ``slew`` per second) towards what is
        left of the backlog, braking in time to end at zero exactly when it is gone."""
        self.backlog -= n * self._catch
        left_s = self.backlog / self._rate_hz
        want = math.copysign(min(abs(left_s) / self._catch_up_s, self._max,
                                 math.sqrt(2.0 * self._slew * abs(left_s))), left_s)
        step = self._slew * n / self._rate_hz
        self._catch += min(max(want - self._catch, -step), step)
        if abs(self.backlog) < 0.5 and abs(self._catch) <= step:
            self.backlog = self._catch = 0.0
        self._combine()

    def _combine(self) -> None:
        self.correction = min(max(self._tracking + self._catch, -self._max), self._max)
