"""Real PipeWire delivery, replayed through the real mixer: a stall is never drift.

The traces in tests/data were recorded with ``MEETCAP_MIXTRACE`` (meetcap/dsp/mixtrace.py)
during ``tests/audio/test_capture_pulseaudio.py -k keep_time`` on PipeWire (2 cores, load
3.5-4.5): every push and render one Mixer saw, replayed exactly (tests/dsp/replay.py).
On one clock there is nothing to correct, so after 10 s every lane must apply 0 ppm
(the real test fails a run where a lane applied more than 20).

What the old loop did with them (all on one clock):

- a stall that stepped a lane's latency below the 50 ms floor: the reference was held at
  the floor and the band term read slower to rebuild the margin (470-530 ppm here; one
  85 ms stall of both lanes, after an earlier one, was 113 ppm in a real run);
- a step's reference was the old one plus the measured shift, keeping whatever offset
  the lane had (a prime's overshoot, a reference re-adopted mid-step): 450 ppm;
- a step window still at the old level was kept raw in the average: when it aged out
  30 s later the average moved 6 ms and the band applied 3.5 ppm (a real run, as
  recorded, nothing added);
- a dry-out kept the band term it had for the 10 s until the loop settled again;
- the first windows of a step pulled the average beyond the band before the step was
  confirmed (five windows; after a restart the average holds only ten): 70-100 ppm;
- a lane that primed and then stalled settled lower than its reference: that deficit
  was worked off as a "negative backlog", reading up to 1 % slow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.dsp.replay import replay

DATA = Path(__file__).parent.parent / "data"
CLEAN = DATA / "mixtrace_pipewire_clean.npz"  # no stall in 60 s, passed
STALLS = DATA / "mixtrace_pipewire_stalls_dry_outs.npz"  # 5 stalls, 3-4 dry-outs per lane
READ_AS_DRIFT = DATA / "mixtrace_pipewire_stall_read_as_drift.npz"  # applied 3.5 ppm
MANY_STALLS = DATA / "mixtrace_pipewire_many_stalls.npz"  # load 4.8: 9 and 3 dry-outs
# A PipeWire graph stall: the count rose by 4,092-4,613 frames at 48 kHz (lost_samples).
STALL_85_MS = 1365  # samples at 16 kHz


def worst_ppm_after_10_s(run) -> dict[str, float]:
    after = run.times_s >= 10.0
    return {name: float(np.max(np.abs(ppm[after]))) for name, ppm in run.ppm.items()}


@pytest.mark.parametrize("trace", [CLEAN, STALLS, READ_AS_DRIFT, MANY_STALLS],
                         ids=lambda p: p.stem)
def test_real_pipewire_delivery_as_recorded_is_never_corrected(trace) -> None:
    run = replay(trace)
    worst = worst_ppm_after_10_s(run)
    print(f"\n{trace.stem}: worst correction after 10 s {worst}, dry-outs {run.underruns}")
    assert max(worst.values()) == 0.0


@pytest.mark.parametrize("first_s, second_s", [(9.0, 19.0), (15.0, 20.0), (21.0, 41.0)])
def test_two_85_ms_stalls_of_both_lanes_are_steps_not_drift(first_s, second_s) -> None:
    """Two graph stalls of both lanes: each moves the latency 85 ms down for good (the
    content intact, later). The second takes a lane below the 50 ms floor; it is taken
    as it is (the old loop read 430-530 ppm slow there to rebuild the margin)."""
    stalls = tuple((lane, at, STALL_85_MS) for at in (first_s, second_s)
                   for lane in ("mic", "system"))
    run = replay(CLEAN, stalls=stalls)
    worst = worst_ppm_after_10_s(run)
    print(f"\nstalls at {first_s} and {second_s} s: worst correction {worst}, steps "
          f"{ {n: run.mixer.lane(n).loop.steps for n in run.ppm} }, dry-outs {run.underruns}")
    assert max(worst.values()) == 0.0
    assert all(run.mixer.lane(n).loop.steps >= 1 for n in run.ppm)  # they were seen


def test_a_250_ms_stall_after_a_dry_out_is_a_step_not_drift() -> None:
    """A trace with real stalls and dry-outs, plus a 250 ms stall of the system lane at
    39 s: it runs dry, primes, and the real stalls that follow step it down while its
    prime's overshoot is not yet adopted (the old loop: 453 ppm)."""
    run = replay(STALLS, stalls=(("system", 39.0, 4000),))
    worst = worst_ppm_after_10_s(run)
    print(f"\nworst correction {worst}, dry-outs {run.underruns}")
    assert max(worst.values()) == 0.0


@pytest.mark.parametrize("trace, at_s", [(STALLS, 27.0), (STALLS, 28.0)], ids=["27s", "28s"])
def test_a_step_soon_after_a_dry_out_does_not_steer_before_it_is_confirmed(trace, at_s) -> None:
    """A 250 ms stall of the system lane soon after it primed again: the loop's average
    holds ten windows, so each of the step's first windows moves it 2.5 ms (clipped at
    25 ms). Nothing steers until the step is told (the old loop, or this one without
    that hold: 70-100 ppm)."""
    run = replay(trace, stalls=(("system", at_s, 4000),))
    worst = worst_ppm_after_10_s(run)
    print(f"\nworst correction {worst}, dry-outs {run.underruns}")
    assert max(worst.values()) == 0.0


def test_a_lane_that_primes_and_then_stalls_is_not_read_slow_to_win_its_margin_back() -> None:
    """Many real stalls, plus one of 250 ms in the system lane at 43 s: it runs dry,
    primes, and a real stall lowers it 75 ms while the loop settles. That is a step (the
    content is intact, later), not a backlog to work off at -1 %."""
    run = replay(MANY_STALLS, stalls=(("system", 43.0, 4000),))
    worst = worst_ppm_after_10_s(run)
    print(f"\nworst correction {worst}, dry-outs {run.underruns}")
    assert max(worst.values()) == 0.0
