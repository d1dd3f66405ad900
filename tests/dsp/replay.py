"""Replay what a real sound server delivered through the real mixer, exactly.

A trace (meetcap/dsp/mixtrace.py, ``MEETCAP_MIXTRACE``) holds every push (lane, sample
count, the resampler's held-back samples) and every render (n, clock lead) one Mixer saw
in a run against a real server. The drift loop sees only these counts, never the audio,
so pushing silence of the same lengths into a fresh :class:`Mixer` makes every decision
it made again. :func:`compact` keeps one mixer's P/R events in a small ``.npz`` for
tests/data; :func:`replay` runs them. The capture blocks (when each arrived, how many
frames) are kept too: :func:`judge_losses` runs them through each lane's
LostSampleDetector and the LaneLossJudge, exactly as the capture callbacks and the
worker do (meetcap/audio/lane_losses.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meetcap.audio.lane_losses import LaneLossJudge, Verdict
from meetcap.audio.lost_samples import LostSampleDetector
from meetcap.dsp.mixer import Mixer

RATE = 16000
LANES = ("mic", "system")
RENDER = -1  # the ``lane`` of a render event


def compact(trace: Path, out: Path) -> None:
    """The busiest mixer's pushes and renders, and the capture blocks, as an .npz."""
    events: dict[str, list] = {}
    blocks = []
    for line in trace.read_text().splitlines():
        f = line.split()
        if f[0] in ("P", "R"):
            events.setdefault(f[1], []).append(f)
        elif f[0] == "C":
            blocks.append((0 if f[1].endswith("mic") else 1, float(f[2]), int(f[3]), int(f[4])))
    chosen = max(events.values(), key=len)
    lane = np.array([RENDER if f[0] == "R" else LANES.index(f[2]) for f in chosen], np.int8)
    t = np.array([float(f[2] if f[0] == "R" else f[3]) for f in chosen])
    n = np.array([int(f[3] if f[0] == "R" else f[4]) for f in chosen], np.int32)
    extra = np.array([float(f[4] if f[0] == "R" else f[5]) for f in chosen])
    t0 = t[0]
    c = np.array(blocks, dtype=np.float64).reshape(-1, 4)
    np.savez_compressed(
        out, lane=lane, n=n, extra=extra,
        t_ms=np.round((t - t0) * 1000).astype(np.int32),
        block_lane=c[:, 0].astype(np.int8),
        block_t_ms=np.round((c[:, 1] - t0) * 1000).astype(np.int32),
        block_t_us=np.round((c[:, 1] - t0) * 1e6).astype(np.int64),  # floors to 0.1 ms
        block_frames=c[:, 2].astype(np.int32), block_overflow=c[:, 3].astype(np.int8))


@dataclass
class Replayed:
    mixer: Mixer
    times_s: np.ndarray  # timeline time after each render
    ppm: dict[str, np.ndarray]  # each lane's applied correction after each render
    underruns: dict[str, int]


def replay(path: Path, stalls: tuple[tuple[str, float, int], ...] = (),
           fills: tuple[tuple[str, float, int], ...] = (), **lane_options) -> Replayed:
    """Feed a compacted trace's events through a fresh Mixer, in order.

    ``stalls``: (lane, seconds into the trace, samples) graph stalls added to the real
    delivery the way PipeWire's are (lost_samples.py): the source's clock pauses, so
    from then on the lane receives that many samples fewer (its content intact, later).
    ``fills``: (lane, seconds into the trace, samples) of silence the capture writes
    into the lane at that time (lost samples, meetcap/audio/lane_losses.py): the next
    push after it carries that many samples more.
    """
    data = np.load(path)
    mixer = Mixer(**lane_options)
    for name in LANES:
        mixer.add_source(name)
    todo = sorted((LANES.index(name), at_s * 1000, samples) for name, at_s, samples in stalls)
    owed = dict.fromkeys(range(len(LANES)), 0)
    to_fill = sorted((LANES.index(name), at_s * 1000, samples) for name, at_s, samples in fills)
    times, ppm = [], {name: [] for name in LANES}
    for lane, n, extra, t_ms in zip(data["lane"], data["n"], data["extra"], data["t_ms"],
                                    strict=True):
        if lane >= 0:
            for stall in [s for s in todo if s[0] == lane and s[1] <= t_ms]:
                todo.remove(stall)
                owed[lane] += stall[2]
            taken = min(int(n), owed[lane])
            owed[lane] -= taken
            n = int(n) - taken
            for fill in [f for f in to_fill if f[0] == lane and f[1] <= t_ms]:
                to_fill.remove(fill)
                n += fill[2]
        if lane == RENDER:
            mixer.render(int(n), int(extra))
            times.append(mixer.samples_rendered / RATE)
            for name in LANES:
                ppm[name].append(mixer.lane(name).correction_ppm)
        else:
            mixer.push(LANES[lane], np.zeros(int(n), np.float32), float(extra))
    return Replayed(mixer, np.array(times), {k: np.array(v) for k, v in ppm.items()},
                    {name: mixer.lane(name).underruns for name in LANES})


@dataclass
class Judged:
    verdicts: list[Verdict]  # onset in seconds into the trace (its first P/R event)
    detectors: dict[str, LostSampleDetector]

    def fills(self, rate_hz: int = 48000) -> tuple[tuple[str, float, int], ...]:
        """The silence written, as replay()'s ``fills`` (16 kHz samples)."""
        return tuple((name, at + (d.origin or 0.0), round(frames * RATE / rate_hz))
                     for name, d in self.detectors.items() for at, frames in d.late_fills)


@functools.lru_cache(maxsize=8)
def judge_losses(path: Path, *, tick_s: float = 0.05, rate_hz: int = 48000) -> Judged:
    """Each capture block of a compacted trace through its lane's LostSampleDetector, in
    arrival order, and the LaneLossJudge every ``tick_s`` (the worker's tick). Cached:
    the same trace judged again is the same (treat the result as read-only)."""
    data = np.load(path)
    order = np.argsort(data["block_t_ms"], kind="stable")
    detectors = {name: LostSampleDetector(rate_hz) for name in LANES}
    judge = LaneLossJudge()
    next_tick = None
    for i in order:
        t = float(data["block_t_ms"][i]) / 1000.0
        detectors[LANES[int(data["block_lane"][i])]].on_block(
            int(data["block_frames"][i]), t, bool(data["block_overflow"][i]))
        if next_tick is None or t >= next_tick:
            judge.check(detectors, t)
            next_tick = t + tick_s
    return Judged(judge.verdicts, detectors)
