"""The loss judge's fast way (histories converted only where they grew, windows found
by bisection, a median without numpy's wrapper) decides exactly as the plain way: every
real trace replayed through both, and a stream whose arrivals go back (the masks again).
The fast way costs ~0.07 ms a 50 ms tick instead of ~0.3 ms (docs/figures.md)."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest

from meetcap.audio import lane_losses
from meetcap.audio.lane_losses import (
    AFTER_GAP_S,
    AFTER_S,
    BEFORE_S,
    CAUGHT_UP_S,
    FAST_AFTER_S,
    FAST_MIN_S,
    HICCUP_MIN_S,
    LaneLossJudge,
    Verdict,
    _floor,
    judge,
    onset_of,
    snapped,
)
from meetcap.audio.lost_samples import LostSampleDetector

TRACES = sorted(glob.glob(str(Path(__file__).parent.parent / "data" / "mixtrace_*.npz")))
LANES = ("mic", "system")


class PlainLaneLossJudge(LaneLossJudge):
    """The judge before: both histories converted whole and masked every tick."""

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


def _judged(blocks, judge_class) -> tuple:
    """(lane, arrival s, frames, overflow) blocks through two detectors and a judge every
    50 ms: every verdict, the fills asked for, and the silence written."""
    detectors = {name: LostSampleDetector(48000) for name in LANES}
    judge_ = judge_class()
    next_tick = None
    for lane, t, frames, overflow in blocks:
        detectors[lane].on_block(frames, t, overflow)
        if next_tick is None or t >= next_tick:
            judge_.check(detectors, t)
            next_tick = t + 0.05
    return (judge_.verdicts, [d.late_fills for d in detectors.values()],
            [d.silence_frames for d in detectors.values()])


def _trace_blocks(path: str) -> list:
    with np.load(path) as data:
        t_ms, lane, frames, overflow = (data[key] for key in (
            "block_t_ms", "block_lane", "block_frames", "block_overflow"))
    order = np.argsort(t_ms, kind="stable")
    return [(LANES[int(lane[i])], float(t_ms[i]) / 1000.0, int(frames[i]), bool(overflow[i]))
            for i in order]


@pytest.mark.parametrize("trace", TRACES, ids=lambda p: Path(p).stem)
def test_the_fast_judge_decides_as_the_plain_judge_on_real_traces(trace) -> None:
    blocks = _trace_blocks(trace)
    fast, plain = _judged(blocks, LaneLossJudge), _judged(blocks, PlainLaneLossJudge)
    assert fast == plain


def test_the_fast_judge_decides_as_the_plain_judge_when_arrivals_go_back() -> None:
    """A clock that steps back now and then (the fast way's bisection needs order: it
    falls back to masks until those rows are gone), with losses and hiccups."""
    rng = np.random.default_rng(5)
    blocks = _trace_blocks(next(t for t in TRACES if "lost_twice" in t))
    shaken = []
    for k, (lane, t, frames, overflow) in enumerate(blocks):
        if k % 700 == 350:
            t -= 0.03 + 0.02 * float(rng.random())  # before the lane's previous block
        shaken.append((lane, t, frames, overflow))
    fast, plain = _judged(shaken, LaneLossJudge), _judged(shaken, PlainLaneLossJudge)
    assert fast == plain
    assert any(v.lost_frames for v in fast[0])  # losses were judged on the way


def test_the_median_without_numpy_is_numpys_bit_for_bit() -> None:
    rng = np.random.default_rng(2)
    for n in [1, 2, 3, 4, 5, 50, 51]:
        for _ in range(50):
            values = rng.random(n) * 0.05 + rng.integers(0, 3, n) * 0.02
            assert lane_losses._median(values) == float(np.median(values))
