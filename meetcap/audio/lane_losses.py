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

from dataclasses import dataclass

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

    def _check_hiccups(self, detectors: dict[str, LostSampleDetector],
                       now: float) -> list[Verdict]:
        """The fast way, case 2 of the module doc as it happens: a hiccup the other lane
        caught up from within FAST_AFTER_S while this lane stayed behind. Told ~0.4 s
        after the loss (the slow way, from the detector's confirmed rise, takes 2-3 s and
        the lane plays early all that while: each second of a misplaced voice costs a
        whole-recording fit ~3 %)."""
        made = []
        histories = {name: np.asarray(d.history(), dtype=np.float64).reshape(-1, 2)
                     for name, d in detectors.items()}
        for name, detector in detectors.items():
            mine = histories[name]
            other_name = next(n for n in detectors if n != name)
            theirs = histories[other_name]
            if len(mine) == 0 or len(theirs) == 0:
                continue
            # Each of the other lane's blocks is looked at once, when FAST_AFTER_S of
            # deliveries after it are in.
            done = max(self._hiccups_done.get(other_name, -np.inf),
                       self._examined.get(other_name, -np.inf))
            ready = (theirs[:, 0] > max(done, now - 2.0)) & (
                theirs[:, 0] <= now - FAST_AFTER_S - 0.02)
            if ready.any():
                self._examined[other_name] = float(theirs[ready, 0].max())
            waits = np.diff(theirs[:, 0], prepend=theirs[0, 0])
            for i in np.flatnonzero(ready):
                at = float(theirs[i, 0])
                if at <= self._hiccups_done.get(other_name, -np.inf):
                    continue
                before = _floor(theirs, at - BEFORE_S, at - 0.03)
                if before is None:
                    continue
                # Late against its floor (fixed-size blocks, the backlog after), or a wait
                # beyond the usual one (the backlog in one block).
                usual = waits[(theirs[:, 0] >= at - BEFORE_S) & (theirs[:, 0] < at)]
                waited = waits[i] - float(np.median(usual)) if len(usual) else 0.0
                if max(theirs[i, 1] - before, waited) < HICCUP_MIN_S:
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
        mine = np.asarray(detector.history(), dtype=np.float64).reshape(-1, 2)
        theirs = np.asarray(other.history(), dtype=np.float64).reshape(-1, 2)
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
