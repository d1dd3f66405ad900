#!/usr/bin/env python
"""Where the chain's CPU goes on meeting-like audio, stage by stage.

    python bench/chain_stages.py [--tree DIR] [--runs 3] [--seconds 60] [--cpu N]

Runs bench/pipeline.py's meeting row (the mix VAD gated, the default chain; the audio of
bench/meeting_audio.py) pinned to one CPU, with a timer around each stage the chain calls
per 100 ms unit (and inside the VAD around the model runs and the gate), and prints
milliseconds per second of audio per stage for the least disturbed of ``--runs`` runs.
The timers read the wall clock (a CPU clock costs ~1 us a read here) of a process
pinned to one CPU, so a run that shared the CPU reads high: hence the best of several.
They cost ~0.3 ms per second of audio themselves: compare rows, and read the totals of
bench/pipeline.py or bench/pipecat_peer.py for the speed.

``--tree DIR`` imports meetcap from another checkout (e.g. ``git archive <commit>
meetcap | tar -x -C DIR``), so an older tree's breakdown can be printed the same way;
alternate the two a few times on a shared machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent

# (module, class, method, label): what MixChain._process calls per unit; nested calls of
# the same stage are timed once.
STAGES = (
    ("chain", "MixChain", "push", "push (check and copy device blocks)"),
    ("chain", "MixChain", "_resample_pending", "resample and clip count"),
    ("mixer", "Mixer", "render", "mixer (FIFOs, drift)"),
    ("health", "HealthTracker", "observe", "health"),
    ("meter", "LevelMeter", "process", "meters"),
    ("echo", "MicEchoCanceller", "process", "echo stage with the echo score"),
    ("delay", "DelayLine", "process", "system lane delay"),
    ("normalize", "Normalizer", "process", "normalise (AGC, limiter)"),
    ("framer", "Framer", "push_audio", "framer"),
    ("framer", "Framer", "push_speech", "framer"),
    ("framer", "Framer", "pop_frames", "framer"),
    ("vad", "VadStream", "process", "VAD"),
    ("chain", "MixChain", "levels", "levels"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="import meetcap from this directory")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    args = parser.parse_args(argv)

    tree = (args.tree or HERE.parent).resolve()
    sys.path.insert(0, str(tree))  # before pipeline.py puts this checkout first
    import importlib

    modules = {
        name: importlib.import_module(f"meetcap.dsp.{name}")
        for name in ("chain", "mixer", "health", "meter", "echo", "delay", "normalize",
                     "framer", "vad", "vad_gate")
    }
    if not modules["vad"].__file__.startswith(str(tree)):
        raise SystemExit(f"meetcap came from {modules['vad'].__file__}, not {tree}")
    sys.path.insert(1, str(HERE))
    import meeting_audio
    import pipeline

    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if args.cpu is None else args.cpu
    os.sched_setaffinity(0, {cpu})

    spent: Counter[str] = Counter()
    clock = time.perf_counter  # the process is pinned; best of the runs
    busy = [False]

    def timed(owner, name: str, label: str, nested: bool) -> None:
        original = getattr(owner, name)

        def wrapper(*a, **k):
            if busy[0] and not nested:
                return original(*a, **k)
            outer = not busy[0]
            busy[0] = busy[0] or not nested
            start = clock()
            try:
                return original(*a, **k)
            finally:
                spent[label] += clock() - start
                if outer and not nested:
                    busy[0] = False

        setattr(owner, name, wrapper)

    for module, cls, method, label in STAGES:
        timed(getattr(modules[module], cls), method, label, nested=False)
    vad = modules["vad"]
    if hasattr(vad, "BoundRun"):
        timed(vad.BoundRun, "run", "  VAD: model runs", nested=True)
    else:  # trees before 3b62220 ran the model through _run_feeds
        timed(vad, "_run_feeds", "  VAD: model runs", nested=True)
    timed(modules["vad_gate"].VadGate, "quiet", "  VAD: gate", nested=True)

    meeting = meeting_audio.load_meeting(meeting_audio.cached_meeting(args.seconds))
    vad.load_model()
    pipeline.run_meeting(meeting, args.seconds, 20, True)  # warm up
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(args.runs):
        spent.clear()
        _, wall_s, _ = pipeline.run_meeting(meeting, args.seconds, 20, True)
        if best is None or wall_s < best[0]:
            best = (wall_s, dict(spent))
    assert best is not None
    wall_s, stages = best
    per_s = 1000.0 / args.seconds
    print(f"meetcap from {tree}; meeting-like audio {args.seconds:g} s; pinned to CPU {cpu}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'stage':38s} ms per second of audio")
    top = {k: v for k, v in stages.items() if not k.startswith(" ")}
    for label, seconds in sorted(top.items(), key=lambda kv: -kv[1]):
        print(f"{label:38s} {seconds * per_s:6.2f}")
        if label == "VAD":
            for inner in ("  VAD: model runs", "  VAD: gate"):
                print(f"{inner:38s} {stages.get(inner, 0.0) * per_s:6.2f}")
    print(f"{'the rest (the loop, untimed calls)':38s} {(wall_s - sum(top.values())) * per_s:6.2f}")
    print(f"chain stages: {wall_s * per_s:.2f} ms per second of audio in total (wall, pinned)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
