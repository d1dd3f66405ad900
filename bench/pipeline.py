#!/usr/bin/env python
"""Speed of the DSP pipeline (meetcap.dsp.MixChain) against a naive chain, side by side.

    python bench/pipeline.py [--seconds 60] [--naive-seconds 5] [--cycle-ms 20] [--cpu N]

The workload is what the capture worker does: two sources at 48 kHz (a mono microphone
with speech-like syllables, a stereo loopback with music-like tones that goes quiet, i.e.
delivers nothing, for 2 s out of every 10) captured in 10 ms device blocks; every 20 ms
(``--cycle-ms``) the worker pushes what each source's ring buffer holds (one array per
source), renders what the clock says is due and reads the levels. The chain runs
resample -> gain -> mix (drift compensation) -> AGC + limiter -> Silero VAD -> 100 ms
frames. Everything runs on one core: onnxruntime and the BLAS pools get one thread and
the process is pinned to one CPU. Speed is audio seconds per CPU second of this process
("x real time"), best of ``--repeats`` runs (3); wall time is printed beside it (it
suffers when other programs share the core).

The naive chain does the same job the way a first version would:
- resampling: ``scipy.signal.resample_poly`` on every 10 ms block on its own (no filter
  state carried over, so every block boundary also gets filter edge effects), channels
  averaged with ``mean``;
- mixing: per-cycle blocks summed as they come, no FIFO, no drift handling;
- normalising: a gain per block from that block's RMS, then a hard clip;
- VAD: the model is loaded (a new onnxruntime InferenceSession, one thread) for every
  rendered block that completes 512-sample windows, and each window runs from a zero
  state with no context: no session reuse and no state reuse;
- framing: ``np.clip`` + ``astype(int16)`` into a growing bytearray.
It gets a shorter span (``--naive-seconds``) because it is slow; the ratios compare.

Meeting-like audio (bench/meeting_audio.py: two espeak-ng voices taking turns, about
half speech, the rest the mic's -65 dBFS room noise and the system's digital silence)
gets its own rows: the chain with the VAD gate (the default: Silero skipped where there
cannot be speech, same verdicts, meetcap/dsp/vad_gate.py), without it, and with who
spoke on (a gated VAD per lane), and with tracks mode on as well (the two lanes as a
two-channel frame beside the mix). ``--meeting-only`` runs just the gated default row and
prints ``meeting: <N>x real time`` (bench/pipecat_peer.py alternates it with pipecat's
chain on the same samples).

The LAST line is exactly: ``pipeline: <N>x real time with VAD, naive chain <M>x``.
"""

from __future__ import annotations

import os

# One core means one thread everywhere: set before numpy / onnxruntime load their pools.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import functools  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402

from meetcap.constants import FRAME_SAMPLES, SAMPLE_RATE_HZ  # noqa: E402
from meetcap.dsp import vad as vad_module  # noqa: E402
from meetcap.dsp.chain import DEFAULT_VAD_BATCH_MS, MixChain  # noqa: E402
from meetcap.dsp.vad import VadStream  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import meeting_audio  # noqa: E402

DEVICE_RATE_HZ = 48000
BLOCK_MS = 10

Sources = dict[str, np.ndarray]  # name -> float32 (frames, channels) at 48 kHz


def make_sources(seconds: float, seed: int = 1) -> Sources:
    """A speech-like microphone (mono) and a music-like loopback (stereo), both 48 kHz.

    Built in 10 s pieces, in float32, so the test signal itself stays small in RAM.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * DEVICE_RATE_HZ)
    mic = np.empty((n, 1), np.float32)
    system = np.empty((n, 2), np.float32)
    piece = 10 * DEVICE_RATE_HZ
    phase0 = 0.0
    for start in range(0, n, piece):
        t = np.arange(start, min(n, start + piece)) / DEVICE_RATE_HZ
        # Mic: harmonics of a wandering pitch, cut into syllables, over a -60 dBFS room.
        f0 = 130 + 30 * np.sin(2 * np.pi * 0.5 * t)
        phase = phase0 + 2 * np.pi * np.cumsum(f0) / DEVICE_RATE_HZ
        phase0 = float(phase[-1])
        voiced = sum(np.sin(k * phase) / k for k in range(1, 10))
        syllables = np.clip(np.sin(2 * np.pi * 3.3 * t), 0, None) ** 0.7
        talking = np.sin(2 * np.pi * 0.08 * t) > -0.3  # pauses between sentences
        noise = rng.standard_normal(len(t)) * 1e-3
        mic[start : start + len(t), 0] = 0.05 * voiced * syllables * talking + noise
        # System: a few steady tones and some hiss, around -25 dBFS.
        hiss = rng.standard_normal(len(t)) * 0.005
        system[start : start + len(t), 0] = (
            0.04 * np.sin(2 * np.pi * 220 * t) + 0.03 * np.sin(2 * np.pi * 331 * t) + hiss
        )
        system[start : start + len(t), 1] = (
            0.04 * np.sin(2 * np.pi * 223 * t) + 0.03 * np.sin(2 * np.pi * 440 * t) + hiss
        )
    return {"mic": mic, "system": system}


def loopback_delivers(t_s: float) -> bool:
    """WASAPI loopback sends nothing during silence: here 2 s out of every 10."""
    return (t_s % 10.0) < 8.0


def always_delivers(t_s: float) -> bool:
    """PulseAudio's monitor delivers zeros during silence (the meeting-like rows)."""
    return True


def drive(
    sources: Sources,
    seconds: float,
    cycle_ms: float,
    push: Callable[[str, np.ndarray], None],
    render: Callable[[int], list],
    delivers: Callable[[float], bool] = loopback_delivers,
) -> tuple[float, float, int]:
    """The worker loop: per cycle, push the device blocks that arrived, render what is due.

    Returns (cpu seconds, wall seconds, frames produced).
    """
    block = DEVICE_RATE_HZ * BLOCK_MS // 1000
    blocks_per_cycle = max(1, round(cycle_ms / BLOCK_MS))
    total_blocks = int(seconds * 1000 / BLOCK_MS)
    frames = 0
    rendered = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for first in range(0, total_blocks, blocks_per_cycle):
        last = min(total_blocks, first + blocks_per_cycle)
        # The worker drains each source's ring buffer in one read per cycle: whatever
        # device blocks arrived since the last cycle, as one array.
        a, b = first * block, last * block
        push("mic", sources["mic"][a:b])
        if delivers(first * BLOCK_MS / 1000):
            push("system", sources["system"][a:b])
        due = last * BLOCK_MS * SAMPLE_RATE_HZ // 1000 - rendered
        frames += len(render(due))
        rendered += due
    return time.process_time() - cpu0, time.perf_counter() - wall0, frames


VAD_BATCH_MS = DEFAULT_VAD_BATCH_MS


def run_chain(
    sources: Sources, seconds: float, cycle_ms: float, use_vad: bool, *,
    gate: bool = True, who_spoke: bool = False, tracks: bool = False,
    delivers=loopback_delivers, echo_cancel: str = "off",
):
    chain = MixChain(
        start_time=time.time(), vad_batch_ms=VAD_BATCH_MS, who_spoke=who_spoke, tracks=tracks,
        echo_cancel=echo_cancel,
    )
    chain.add_source("mic", DEVICE_RATE_HZ, 1)
    chain.add_source("system", DEVICE_RATE_HZ, 2)
    chain.set_gain_db("system", -3.0)
    if not gate:  # the reference: the model on every window (the same verdicts, slower)
        chain._vad = VadStream(batch_windows=round(VAD_BATCH_MS / 32))
    chain.set_vad(use_vad)  # loads the shared model once, outside the timed loop

    def render(n: int) -> list:
        frames = chain.render(n)
        chain.levels()  # the worker publishes levels every cycle
        return frames

    return drive(sources, seconds, cycle_ms, chain.push, render, delivers)


def run_meeting(sources: Sources, seconds: float, cycle_ms: float, use_vad: bool, **options):
    return run_chain(sources, seconds, cycle_ms, use_vad, delivers=always_delivers, **options)


class NaiveChain:
    """The baseline described in the module docstring."""

    def __init__(self, use_vad: bool) -> None:
        import onnxruntime
        from scipy.signal import resample_poly

        self._ort = onnxruntime
        self._resample_poly = resample_poly
        self._use_vad = use_vad
        self._model_path = vad_module.default_model_path()
        self._pending: dict[str, list[np.ndarray]] = {"mic": [], "system": []}
        self._vad_buffer = np.zeros(0, np.float32)
        self._audio = bytearray()
        self._seq = 0
        self.speech_windows = 0

    def push(self, name: str, block: np.ndarray) -> None:
        mono = block.mean(axis=1)
        self._pending[name].append(self._resample_poly(mono, 1, 3).astype(np.float32))

    def render(self, n: int) -> list[bytes]:
        mix = np.zeros(n, np.float32)
        for name, parts in self._pending.items():
            if parts:
                audio = np.concatenate(parts)[:n]
                gain = 10 ** (-3 / 20) if name == "system" else 1.0
                mix[: len(audio)] += audio * gain
                parts.clear()
        rms = float(np.sqrt(np.mean(mix**2))) + 1e-9
        mix = np.clip(mix * min(10.0, 0.1 / rms), -1.0, 1.0)
        if self._use_vad:
            self._vad(mix)
        self._audio += (mix * 32767).astype(np.int16).tobytes()
        frames = []
        while len(self._audio) >= 2 * FRAME_SAMPLES:
            frames.append(bytes(self._audio[: 2 * FRAME_SAMPLES]))
            del self._audio[: 2 * FRAME_SAMPLES]
            self._seq += 1
        return frames

    def _vad(self, mix: np.ndarray) -> None:
        self._vad_buffer = np.concatenate([self._vad_buffer, mix])
        count = len(self._vad_buffer) // 512
        if not count:
            return
        options = self._ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        session = self._ort.InferenceSession(
            self._model_path, sess_options=options, providers=["CPUExecutionProvider"]
        )
        for i in range(count):
            window = self._vad_buffer[i * 512 : (i + 1) * 512][None, :]
            probability, _ = session.run(
                None,
                {
                    "input": window,
                    "state": np.zeros((2, 1, 128), np.float32),
                    "sr": np.array(SAMPLE_RATE_HZ, np.int64),
                },
            )
            self.speech_windows += int(probability[0, 0] > 0.5)
        self._vad_buffer = self._vad_buffer[count * 512 :]


def run_naive(sources: Sources, seconds: float, cycle_ms: float, use_vad: bool):
    naive = NaiveChain(use_vad)
    return drive(sources, seconds, cycle_ms, naive.push, naive.render)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def pin_to_one_cpu(cpu: int | None) -> str:
    if not hasattr(os, "sched_setaffinity"):
        return "not pinned (no sched_setaffinity here)"
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return f"pinned to CPU {chosen} of {len(allowed)} allowed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio for the chain")
    parser.add_argument("--naive-seconds", type=float, default=5.0, help="audio for the naive")
    parser.add_argument("--cycle-ms", type=float, default=20.0, help="worker render period")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one CPU")
    parser.add_argument("--repeats", type=int, default=3, help="chain runs; the best counts")
    parser.add_argument(
        "--meeting-only", action="store_true",
        help="only the meeting-like row (gated VAD), for bench/pipecat_peer.py",
    )
    parser.add_argument(
        "--vad-batch-ms",
        type=float,
        default=DEFAULT_VAD_BATCH_MS,
        help="MixChain(vad_batch_ms=...): VAD latency against speed",
    )
    args = parser.parse_args(argv)
    global VAD_BATCH_MS
    VAD_BATCH_MS = args.vad_batch_ms

    pinned = "not pinned" if args.no_pin else pin_to_one_cpu(args.cpu)
    meeting = meeting_audio.load_meeting(meeting_audio.cached_meeting(args.seconds))
    if args.meeting_only:
        vad_module.load_model()
        runs = [run_meeting(meeting, args.seconds, args.cycle_ms, True)
                for _ in range(args.repeats)]
        who = [run_meeting(meeting, args.seconds, args.cycle_ms, True, who_spoke=True)
               for _ in range(args.repeats)]
        print(f"meeting: {args.seconds / min(runs)[0]:.1f}x real time; who spoke: "
              f"{args.seconds / min(who)[0]:.1f}x ({pinned})")
        return 0
    print(
        f"workload: mic 48 kHz mono + loopback 48 kHz stereo, {BLOCK_MS} ms device blocks, "
        f"render every {args.cycle_ms:g} ms; VAD batches of {args.vad_batch_ms:g} ms; "
        f"{pinned}; onnxruntime 1 thread"
    )
    longest = max(args.seconds, args.naive_seconds)
    sources = make_sources(longest)

    load0 = time.perf_counter()
    vad_module.load_model()
    print(f"VAD model load (once per process): {1000 * (time.perf_counter() - load0):.0f} ms")

    rss_before_mb = _max_rss_mb()
    results = {}
    for label, runner, seconds, use_vad, repeats in (
        ("chain, VAD off", run_chain, args.seconds, False, args.repeats),
        ("chain, VAD on", run_chain, args.seconds, True, args.repeats),
        ("naive, VAD off", run_naive, args.naive_seconds, False, 1),
        ("naive, VAD on", run_naive, args.naive_seconds, True, 1),
        ("meeting, VAD off", run_meeting, args.seconds, False, args.repeats),
        ("meeting, VAD no gate", functools.partial(run_meeting, gate=False), args.seconds,
         True, args.repeats),
        ("meeting, VAD gated", run_meeting, args.seconds, True, args.repeats),
        ("meeting, who spoke", functools.partial(run_meeting, who_spoke=True), args.seconds,
         True, args.repeats),
        ("meeting, tracks", functools.partial(run_meeting, who_spoke=True, tracks=True),
         args.seconds, True, args.repeats),
        # Echo cancellation forced on (the app's "auto" runs it only while the speakers
        # reach the mic; the echo score alone runs always and is in every row above).
        ("meeting, AEC on", functools.partial(run_meeting, echo_cancel="on"),
         args.seconds, True, args.repeats),
        ("meeting, AEC+who+tracks", functools.partial(
            run_meeting, who_spoke=True, tracks=True, echo_cancel="on"),
         args.seconds, True, args.repeats),
    ):
        data = meeting if label.startswith("meeting") else sources
        runs = [runner(data, seconds, args.cycle_ms, use_vad) for _ in range(repeats)]
        cpu_s, wall_s, frames = min(runs)  # best of the repeats: least disturbed by others
        results[label] = seconds / cpu_s
        if label == "chain, VAD on":
            rss_chain_mb = _max_rss_mb()
        spread = "" if repeats == 1 else f"  (worst of {repeats}: {seconds / max(runs)[0]:.0f}x)"
        print(
            f"{label:20s} {seconds:6.1f} s audio  cpu {cpu_s:7.3f} s  wall {wall_s:7.3f} s  "
            f"{seconds / cpu_s:7.1f}x real time (cpu) {seconds / wall_s:7.1f}x (wall)  "
            f"{frames} frames{spread}"
        )

    traced_s = min(10.0, args.seconds)
    tracemalloc.start()
    run_chain(sources, traced_s, args.cycle_ms, True)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"memory: peak RSS {rss_before_mb:.0f} MB before the runs (Python, numpy, scipy, "
        f"onnxruntime, the model, {longest:g} s of test signal), {rss_chain_mb:.0f} MB after "
        f"the chain runs, {_max_rss_mb():.0f} MB after the naive ones; tracemalloc peak "
        f"during a {traced_s:g} s chain run {traced_peak / 1e6:.2f} MB"
    )
    print(
        f"meeting-like audio ({meeting_audio.speech_share(meeting):.0%} speech): the VAD gate "
        f"takes the chain from {results['meeting, VAD no gate']:.0f}x to "
        f"{results['meeting, VAD gated']:.0f}x real time; who spoke (a VAD per lane) "
        f"{results['meeting, who spoke']:.0f}x, with tracks too "
        f"{results['meeting, tracks']:.0f}x; echo cancellation on "
        f"{results['meeting, AEC on']:.0f}x, with who spoke and tracks "
        f"{results['meeting, AEC+who+tracks']:.0f}x"
    )
    print(
        f"pipeline: {results['chain, VAD on']:.0f}x real time with VAD, "
        f"naive chain {results['naive, VAD on']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
