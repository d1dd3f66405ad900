#!/usr/bin/env python
"""What the capture worker's loss judge costs per 50 ms tick, on real capture traces.

    python bench/loss_judge_cost.py [--tree DIR]

Every capture block of the traces in tests/data (mixtrace_*.npz: real PipeWire and
PulseAudio runs of tests/audio/test_capture_pulseaudio.py -k keep_time) goes through its
lane's LostSampleDetector in arrival order, and LaneLossJudge.check runs every 50 ms as
the worker runs it (meetcap/audio/pipeline.py); the thread CPU time of each check is
summed. Prints per trace the cost per tick and per second of capture, and a fingerprint
of the verdicts and fills (equal fingerprints: the same decisions), so an older tree
(``--tree DIR``, e.g. ``git archive <commit> meetcap | tar -x -C DIR``) can be compared.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
LANES = ("mic", "system")
TICK_S = 0.05


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="import meetcap from this directory")
    args = parser.parse_args(argv)
    tree = (args.tree or HERE.parent).resolve()
    sys.path.insert(0, str(tree))
    import numpy as np

    from meetcap.audio import lane_losses
    from meetcap.audio.lost_samples import LostSampleDetector

    if not lane_losses.__file__.startswith(str(tree)):
        raise SystemExit(f"meetcap came from {lane_losses.__file__}, not {tree}")
    total_s = total_ticks = total_span = 0.0
    for path in sorted((HERE.parent / "tests" / "data").glob("mixtrace_*.npz")):
        with np.load(path) as data:
            t_ms, lane, frames, overflow = (data[key] for key in (
                "block_t_ms", "block_lane", "block_frames", "block_overflow"))
        detectors = {name: LostSampleDetector(48000) for name in LANES}
        judge = lane_losses.LaneLossJudge()
        next_tick, spent, ticks = None, 0.0, 0
        for i in np.argsort(t_ms, kind="stable"):
            t = float(t_ms[i]) / 1000.0
            detectors[LANES[int(lane[i])]].on_block(int(frames[i]), t, bool(overflow[i]))
            if next_tick is None or t >= next_tick:
                start = time.thread_time()
                judge.check(detectors, t)
                spent += time.thread_time() - start
                ticks += 1
                next_tick = t + TICK_S
        span = float(t_ms.max() - t_ms.min()) / 1000.0
        decided = repr((judge.verdicts, [d.late_fills for d in detectors.values()]))
        print(f"{path.stem:42s} {span:5.1f} s, {ticks} ticks: {spent / ticks * 1e6:6.1f} us "
              f"a tick, {spent / span * 1e3:5.2f} ms per s; {len(judge.verdicts)} verdicts "
              f"{hashlib.sha256(decided.encode()).hexdigest()[:12]}")
        total_s, total_ticks, total_span = total_s + spent, total_ticks + ticks, total_span + span
    print(f"meetcap from {tree}: the loss judge costs {total_s / total_ticks * 1e6:.1f} us a "
          f"tick, {total_s / total_span * 1e3:.2f} ms of CPU per second of capture")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
