"""Replay what a real sound server delivered through the real mixer, exactly.

A trace (meetcap/dsp/mixtrace.py, ``MEETCAP_MIXTRACE``) holds every push (lane, sample
count, the resampler's held-back samples) and every render (n, clock lead) one Mixer saw
in a run against a real server. The drift loop sees only these counts, never the audio,
so pushing silence of the same lengths into a fresh :class:`Mixer` makes every decision
it made again. :func:`compact` keeps one mixer's P/R events in a small ``.npz`` for
tests/data; :func:`replay` runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
        block_frames=c[:, 2].astype(np.int32), block_overflow=c[:, 3].astype(np.int8))


@dataclass
class Replayed:
    mixer: Mixer
    times_s: np.ndarray  # timeline time after each render
    ppm: dict[str, np.ndarray]  # each lane's applied correction after each render
    underruns: dict[str, int]


def replay(path: Path, stalls: tuple[tuple[str, float, int], ...] = (),
           **lane_options) -> Replayed:
    """Feed a compacted trace's events through a fresh Mixer, in order.

    ``stalls``: (lane, seconds into the trace, samples) graph stalls added to the real
    delivery the way PipeWire's are (lost_samples.py): the source's clock pauses, so
    from then on the lane receives that many samples fewer (its content intact, later).
    """
    data = np.load(path)
    mixer = Mixer(**lane_options)
    for name in LANES:
        mixer.add_source(name)
    todo = sorted((LANES.index(name), at_s * 1000, samples) for name, at_s, samples in stalls)
    owed = dict.fromkeys(range(len(LANES)), 0)
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
        if lane == RENDER:
            mixer.render(int(n), int(extra))
            times.append(mixer.samples_rendered / RATE)
            for name in LANES:
                ppm[name].append(mixer.lane(name).correction_ppm)
        else:
            mixer.push(LANES[lane], np.zeros(int(n), np.float32), float(extra))
    return Replayed(mixer, np.array(times), {k: np.array(v) for k, v in ppm.items()},
                    {name: mixer.lane(name).underruns for name in LANES})
