"""Which of a lane's count rises were lost samples: told by the other lane, on one clock.

A capture's :class:`~meetcap.audio.lost_samples.LostSampleDetector` finds its stream
falling behind the clock for good (a *rise*: ``arrival - count`` steps up), but on its
own it cannot tell why, and the answers need opposite treatment:

- **lost**: the server never delivered those samples. Everything after plays that much
  early against the other lane for the rest of the session, unless silence is written
  where they went missing.
- **a paused clock** (a PipeWire graph stall: the sink's clock and its player stop, the
  content resumes intact) or **a latency step** (the same samples, handed over later
  for good): nothing is missing; silence would move the lane against its sound.

Measured on PipeWire (tests/audio rig, 13 traced 60 s runs, every capture block's
arrival; each lane's voice located per 2 s against what its player played): the virtual
mic loses samples in the graph's hiccups. The driver wakes 40-120 ms late; the speaker
monitor then hands the whole backlog over at once (its ``arrival - count`` comes back),
while the mic hands over only what it still has and stays 21-53 ms behind, and that many
of its samples are gone (its voice moved 341, 512, 683 and 853 samples earlier at 16 kHz).
When the driver itself pauses, both lanes rise by the same amount (85-96 ms) and nothing
is gone. A mic rise of 10.7 ms (half PipeWire's 1,024-frame quantum) with no hiccup in
the other lane left the voice in place: a latency step.

So a rise of lane A (X seconds, reported by its detector) is judged against lane B's
blocks around the moment A's rise began (``onset``):

1. B rose there too by Y (its floor after minus before): a paused clock, shared; what A
   rose beyond it, if that is a rise in itself (>= ``threshold_s``), is lost.
2. B did not rise but went through the same hiccup (a delivery at least X/2 late
   against its floor) and caught up: A's samples were there to hand over and A did
   not: X is lost.
3. B saw nothing: A's latency stepped; nothing is lost.

What is lost becomes silence in A's ring before its next block
(:meth:`~meetcap.audio.lost_samples.LostSampleDetector.fill_later`). Case 2 is told as
it happens, 0.4 s after the hiccup (:meth:`LaneLossJudge._check_hiccups`: B caught up
within 0.35 s and A's floor over those 0.35 s stayed up); the rest from the detector's
confirmed rise, 1-3 s after it (two 1 s windows, then B's next second). Until then A
plays X early; a whole-recording fit of speech loses ~3 % for every second of that (a
real run: 0.87 for a loss filled 2 s late near the end). After it, A keeps time with B.
Every loss and pause measured was a multiple of 512 frames at 48 kHz (half PipeWire's
quantum), and the count's rise is only exact to ~5 frames: a loss within 32 frames of
that grid is filled as the multiple (:func:`snapped`). Not told apart: in 3 of the 8 losses whose
size could be measured, the mic also stepped its latency by half a quantum (10.7 ms) at
the same hiccup and lost only X - 10.7 ms; filled with X, it then sits 10.7 ms late
instead of 21-43 ms early (tests/audio/test_lane_losses.py replays them).
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from dataclasses import dataclass
from operator import itemgetter
from typing import Literal

import numpy as np

from meetcap.audio.lost_samples import DEFAULT_THRESHOLD_S, LostSampleDetector

# B's floor before the onset (this long), and after it (from AFTER_GAP_S, this long).
BEFORE_S = 1.0
AFTER_GAP_S = 0.2
AFTER_S = 1.0
# B's hiccup: its latest delivery within this of A's onset.
HICCUP_SPAN_S = (-0.06, 0.12)
# A rise B cannot be judged against (B stopped delivering) is dropped after this long.
GIVE_UP_S = 6.0
# PipeWire moves audio in quanta of 1,024 frames at 48 kHz, and every loss and pause
# measured here was a multiple of half of one (512, 1,024, 2,048, 2,560, 4,096 ... frames)
# to within 25 frames; the count's own rise is only that exact (2,556 for 2,560 in a
# real run: the 4 frames left over cost a whole-recording fit 0.87 where the voice sat
# 2 samples at 16 kHz off for 4 s). A loss that close to the grid is snapped to it.
GRID_FRAMES_48K = 512
GRID_SLACK_FRAMES_48K = 32


# The fast way (see LaneLossJudge): a delivery of the other lane at least this late
# against its floor is a hiccup; it caught up if its floor over the next FAST_AFTER_S is
# back within CAUGHT_UP_S; then this lane's floor over the same stretch, risen by at
# least FAST_MIN_S (beyond its own sawtooth: 960-frame blocks on 1,024-frame quanta), is
# lost. FAST_AFTER_S spans a whole beat of those (16 blocks, 320 ms), so the floor is exact.
HICCUP_MIN_S = 0.015
FAST_AFTER_S = 0.35
CAUGHT_UP_S = 0.002
FAST_MIN_S = 0.008


def snapped(frames: int, rate_hz: int) -> int:
    """``frames`` on PipeWire's half-quantum grid when within the slack of it (at 48 kHz
    and its multiples; other rates as measured)."""
    if rate_hz % 48000:
        return frames
    grid = GRID_FRAMES_48K * rate_hz // 48000
    nearest = round(frames / grid) * grid
    slack = GRID_SLACK_FRAMES_48K * rate_hz // 48000
    return nearest if nearest and abs(frames - nearest) <= slack else frames


@dataclass(frozen=True, slots=True)
class Verdict:
    """One judged rise of ``lane``: when it began (seconds on the detectors' clock), how
    much it rose, how much the other lane rose and its hiccup there (s), and what is lost
    (frames of the lane's stream, 0: nothing)."""

    lane: str
    onset: float
    rise_s: float
    other_rise_s: float
    other_hiccup_s: float
    lost_frames: int
    why: str


def _floor(history: np.ndarray, start: float, stop: float) -> float | None:
    inside = history[(history[:, 0] >= start) & (history[:, 0] < stop), 1]
    return float(inside.min()) if len(inside) else None


def _median(values: np.ndarray) -> float:
    """np.median of a short 1-D float64 array, bit for bit (the middle one, or the two
    middle ones' sum halved), without its ~25 us of Python around the partition."""
    ordered = sorted(values.tolist())
    half = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[half]
    return (ordered[half - 1] + ordered[half]) / 2


def _waits(times: np.ndarray, rows: slice | np.ndarray) -> np.ndarray:
    """np.diff(times, prepend=times[0])[rows] (the first row's wait is 0), computed over
    those rows only when they are a slice."""
    if isinstance(rows, slice):
        start, stop = rows.start, rows.stop
        if start >= stop:
            return times[:0]
        if start == 0:
            return np.diff(times[:stop], prepend=times[0])
        return times[start:stop] - times[start - 1 : stop - 1]  # np.diff's own arithmetic
    return np.diff(times, prepend=times[0])[rows]


class _History:
    """One detector's history as an (n, 2) float64 array, kept across ticks: only the
    blocks new since the last tick are converted (the whole 8 s, ~400 tuples a lane,
    cost ~55 us a lane every 50 ms tick), and, while the arrivals never go back (they
    are time.monotonic()), its windows are found by bisection instead of a mask over
    every row: LaneLossJudge's cost per tick fell from ~0.3 ms to ~0.07 ms (replayed
    PipeWire traces), with the same verdicts (tests/dsp/test_lane_losses_fast.py)."""

    def __init__(self) -> None:
        self._rows: list[tuple[float, float]] = []
        self.array = np.zeros((0, 2), np.float64)
        self.times = self.array[:, 0]
        self.values = self.array[:, 1]
        self._dropped = 0  # rows dropped from the front so far (absolute numbering)
        self._last_back = -1  # the latest row whose arrival went back (absolute)
        self.detector: LostSampleDetector | None = None

    @property
    def listed(self) -> list[tuple[float, float]]:
        """The rows of :attr:`array` as the detector gave them."""
        return self._rows

    @property
    def ordered(self) -> bool:
        """Every arrival kept is at or after the one before it."""
        return self._last_back <= self._dropped

    def update(self, rows: list[tuple[float, float]]) -> np.ndarray:
        old = self._rows
        kept = 0
        if old and rows:
            # The detector appends at the back and drops whole arrivals from the front.
            drop = bisect_left(old, rows[0][0], key=itemgetter(0))
            kept = len(old) - drop
            if not (kept <= len(rows) and (kept == 0 or (
                    rows[0] == old[drop] and rows[kept - 1] == old[-1]))):
                kept = 0  # not how it grew: convert it all
        if kept:
            self._dropped += drop
            new = rows[kept:]
            tail = self.array[drop:]
        else:  # a fresh start: every row before is gone
            self._dropped += len(self.array)
            self._last_back = -1
            new, tail = rows, self.array[:0]
        if new:
            # A few blocks a tick: checked in Python, converted in one call.
            at = len(tail)
            previous = rows[kept - 1][0] if kept else -np.inf
            for arrival, _ in new:
                if arrival < previous:  # this row came before the one above it
                    self._last_back = self._dropped + at
                previous = arrival
                at += 1
            added = (np.array(new, np.float64) if len(new) < 64 else np.fromiter(
                itertools.chain.from_iterable(new), np.float64, 2 * len(new)).reshape(-1, 2))
            tail = np.concatenate((tail, added))
        self._rows = rows
        self.array = tail
        self.times = tail[:, 0]
        self.values = tail[:, 1]
        return tail

    def rows(self, start: float, stop: float, *, after: bool = False,
             through: bool = False) -> slice | np.ndarray:
        """The rows whose arrival is from ``start`` (after it: ``after``) until ``stop``
        (through it: ``through``): a slice while ordered, else a mask."""
        t = self.times
        if self.ordered:
            side_start: Literal["left", "right"] = "right" if after else "left"
            side_stop: Literal["left", "right"] = "right" if through else "left"
            return slice(int(t.searchsorted(start, side_start)),
                         int(t.searchsorted(stop, side_stop)))
        return ((t > start) if after else (t >= start)) & (
            (t <= stop) if through else (t < stop))

    def floor(self, start: float, stop: float) -> float | None:
        """_floor over this history."""
        inside = self.values[self.rows(start, stop)]
        return float(inside.min()) if len(inside) else None


def onset_of(history: np.ndarray, floor_before: float, rise_s: float) -> float | None:
    """When a lane's floor stepped up from ``floor_before`` by ``rise_s``: the first
    block after which every ``arrival - count`` stays above half the rise."""
    below = np.flatnonzero(history[:, 1] < floor_before + rise_s / 2)
    if len(below) == 0 or below[-1] + 1 >= len(history):
        return None
    return float(history[below[-1] + 1, 0])


def judge(rise_s: float, other: np.ndarray, onset: float, *,
          threshold_s: float = DEFAULT_THRESHOLD_S,
          since: float = -np.inf) -> tuple[float, float, float, str]:
    """A rise of ``rise_s`` that began at ``onset``, against the other lane's history
    (rows of arrival, arrival - count): (lost s, the other's rise s, its hiccup s, why)."""
    # Not from before an event already judged (``since``): a pause of both lanes just
    # before would read as the other lane's rise here too (a real run: the mic rose 85 ms
    # in a pause of both, then 53 ms more 0.8 s later that it had lost, read as the pause).
    before = _floor(other, max(onset - BEFORE_S, min(since, onset - 0.25)), onset - 0.05)
    after = _floor(other, onset + AFTER_GAP_S, onset + AFTER_GAP_S + AFTER_S)
    if before is None or after is None:
        return 0.0, 0.0, 0.0, "the other lane delivered nothing around it"
    lo, hi = HICCUP_SPAN_S
    inside = (other[:, 0] >= onset + lo) & (other[:, 0] <= onset + hi)
    # How late the other lane's delivery came there: its first block after the hiccup
    # sits that far above its floor (PortAudio hands fixed-size blocks over, the backlog
    # right after), or, where the backlog came in one block, the wait for it beyond the
    # usual one.
    late = float(other[inside, 1].max()) - before if inside.any() else 0.0
    arrivals = other[:, 0]
    waits = np.diff(arrivals)
    usual = waits[(arrivals[1:] >= onset - BEFORE_S) & (arrivals[1:] < onset + lo)]
    waited = waits[inside[1:]]
    wait = float(waited.max() - np.median(usual)) if len(waited) and len(usual) else 0.0
    hiccup = max(late, wait)
    other_rise = after - before
    if other_rise >= threshold_s / 4:
        beyond = rise_s - other_rise
        if beyond >= threshold_s:
            return beyond, other_rise, hiccup, "both lanes paused; this one lost the rest"
        return 0.0, other_rise, hiccup, "both lanes paused (the server's clock stopped)"
    if hiccup >= rise_s / 2:
        return rise_s, other_rise, hiccup, "the other lane caught up after the same hiccup"
    return 0.0, other_rise, hiccup, "the other lane saw nothing: a latency step"


class LaneLossJudge:
    """Watches two lanes' detectors and fills what one lost (see the module doc).

    :meth:`check` runs on the capture worker, every tick; the detectors live in the audio
    callbacks (they hand over copies of their history)."""

    def __init__(self, *, threshold_s: float = DEFAULT_THRESHOLD_S, fast: bool = True) -> None:
        self._threshold_s = threshold_s
        self._fast = fast
        self._seen: dict[int, int] = {}  # id(detector) -> rises already taken
        self._waiting: list[tuple[str, LostSampleDetector, float, float, float]] = []
        self._hiccups_done: dict[str, float] = {}  # the other lane's last hiccup judged
        # A lane's history is as delivered (its fills left out): its floor before a hiccup
        # is taken after its last fast fill only, or that loss would count again.
        self._filled_until: dict[str, float] = {}
        self._examined: dict[str, float] = {}  # the other lane's last block looked at
        self._histories: dict[int, _History] = {}  # id(detector) -> its history so far
        self.verdicts: list[Verdict] = []

    def check(self, detectors: dict[str, LostSampleDetector], now: float) -> list[Verdict]:
        """Judge the rises reported since the last call whose other lane has delivered
        past them; returns the verdicts made now (losses already asked to be filled)."""
        for name, detector in detectors.items():
            seen = self._seen.get(id(detector), 0)
            new = detector.rises[seen:]
            self._seen[id(detector)] = seen + len(new)
            origin = detector.origin
            for at, frames, floor_before in new:
                if origin is not None:
                    self._waiting.append((name, detector, origin + at,
                                          frames / detector.rate_hz, floor_before))
        made = self._check_hiccups(detectors, now) if self._fast and len(detectors) == 2 else []
        for item in list(self._waiting):
            name, detector, reported, rise_s, floor_before = item
            others = [d for n, d in detectors.items() if n != name]
            if not others or now - reported > GIVE_UP_S:
                self._waiting.remove(item)
                continue
            verdict = self._judge(name, detector, others[0], reported, rise_s, floor_before)
            if verdict is None:
                continue  # the other lane has not delivered far enough yet
            self._waiting.remove(item)
            if verdict.lost_frames:
                detector.fill_later(verdict.lost_frames)
            self.verdicts.append(verdict)
            made.append(verdict)
        return made

    def _history(self, detector: LostSampleDetector) -> _History:
        """The detector's history now (converted once per tick: :meth:`check` asks
        again only for the waiting rises, with the same rows)."""
        history = self._histories.get(id(detector))
        if history is None or history.detector is not detector:
            history = self._histories[id(detector)] = _History()
            history.detector = detector
        history.update(detector.history())
        return history

    def _check_hiccups(self, detectors: dict[str, LostSampleDetector],
                       now: float) -> list[Verdict]:
        """The fast way, case 2 of the module doc as it happens: a hiccup the other lane
        caught up from within FAST_AFTER_S while this lane stayed behind. Told ~0.4 s
        after the loss (the slow way, from the detector's confirmed rise, takes 2-3 s and
        the lane plays early all that while: each second of a misplaced voice costs a
        whole-recording fit ~3 %)."""
        made = []
        for key in [k for k, h in self._histories.items()
                    if all(h.detector is not d for d in detectors.values())]:
            del self._histories[key]  # a capture closed: its detector goes
        histories = {name: self._history(d) for name, d in detectors.items()}
        for name, detector in detectors.items():
            mine = histories[name].array
            other_name = next(n for n in detectors if n != name)
            other = histories[other_name]
            theirs = other.array
            if len(mine) == 0 or len(theirs) == 0:
                continue
            times = other.times
            # Each of the other lane's blocks is looked at once, when FAST_AFTER_S of
            # deliveries after it are in.
            done = max(self._hiccups_done.get(other_name, -np.inf),
                       self._examined.get(other_name, -np.inf))
            picked = other.rows(
                max(done, now - 2.0), now - FAST_AFTER_S - 0.02, after=True, through=True)
            ready: range | list[int] = (
                range(picked.start, picked.stop) if isinstance(picked, slice)
                else np.flatnonzero(picked).tolist())
            if len(ready):
                self._examined[other_name] = float(times[list(ready)].max())
            rows = other.listed  # the same values as Python floats, for single rows
            for i in ready:
                at = rows[i][0]
                if at <= self._hiccups_done.get(other_name, -np.inf):
                    continue
                before = other.floor(at - BEFORE_S, at - 0.03)
                if before is None:
                    continue
                # Late against its floor (fixed-size blocks, the backlog after), or a wait
                # beyond the usual one (the backlog in one block). The waits are those
                # of np.diff(times, prepend=times[0]): the first row's is 0.
                usual = _waits(times, other.rows(at - BEFORE_S, at))
                wait = at - rows[i - 1][0] if i else 0.0
                waited = wait - _median(usual) if len(usual) else 0.0
                if max(rows[i][1] - before, waited) < HICCUP_MIN_S:
                    continue
                self._hiccups_done[other_name] = at + FAST_AFTER_S  # one per hiccup
                after = _floor(theirs, at + 0.001, at + FAST_AFTER_S)
                if after is None or after - before > CAUGHT_UP_S:
                    continue  # the other lane fell behind too: the slow way judges it
                since = max(at - BEFORE_S, self._filled_until.get(name, -np.inf))
                if at - 0.05 - since < 0.3:
                    continue  # too soon after this lane's last fill to know its floor
                mine_before = _floor(mine, since, at - 0.05)
                mine_after = _floor(mine, at - 0.02, at + FAST_AFTER_S)
                if mine_before is None or mine_after is None:
                    continue
                rise = mine_after - mine_before
                if rise < FAST_MIN_S:
                    continue
                frames = snapped(round(rise * detector.rate_hz), detector.rate_hz)
                # Before the detector confirmed the rise: nothing of it is owed there yet.
                detector.fill_later(frames, owed=False)
                self._filled_until[name] = at + FAST_AFTER_S
                verdict = Verdict(name, at, rise, after - before, float(theirs[i, 1]) - before,
                                  frames, "the other lane caught up after the same hiccup "
                                  "(told at once)")
                self.verdicts.append(verdict)
                made.append(verdict)
        return made

    def _judge(self, name: str, detector: LostSampleDetector, other: LostSampleDetector,
               reported: float, rise_s: float, floor_before: float) -> Verdict | None:
        mine = self._history(detector).array
        theirs = self._history(other).array
        if len(mine) == 0 or len(theirs) == 0:
            return None
        onset = onset_of(mine[mine[:, 0] <= reported], floor_before, rise_s)
        if onset is None:
            onset = reported - 1.0  # the history no longer shows it: its window's start
        if theirs[-1, 0] < onset + AFTER_GAP_S + AFTER_S:
            return None
        earlier = [v.onset for v in self.verdicts if v.onset < onset - 0.05]
        since = max(earlier) + AFTER_GAP_S if earlier else -np.inf
        lost, other_rise, hiccup, why = judge(rise_s, theirs, onset,
                                              threshold_s=self._threshold_s, since=since)
        lost_frames = snapped(round(lost * detector.rate_hz), detector.rate_hz) if lost else 0
        return Verdict(name, onset, rise_s, other_rise, hiccup, lost_frames, why)
