#!/usr/bin/env python
"""meetcap's chain against pipecat's own stages doing the same job, on meeting-like audio.

    python bench/pipecat_peer.py [--seconds 60] [--rounds 3] [--cpu N]

The peer is what pipecat (https://github.com/pipecat-ai/pipecat) does with two sources:
each 48 kHz source through its ``SOXRStreamAudioResampler`` to 16 kHz (the stereo
loopback downmixed to mono first: the resampler takes mono int16), the two summed
(int16, saturating), and its ``SileroVADAnalyzer`` (its own onnxruntime session, one
thread, its start/stop state machine) on the sum. The analyzer is called directly
(``_run_analyzer``, what ``analyze_audio`` hands to its executor thread) so the peer
pays no thread hand-off; the resampler's coroutine never suspends. Device blocks of
10 ms, pushed every 20 ms, as bench/pipeline.py drives meetcap.

pipecat is NOT a dependency of meetcap: this script creates its own venv
(``--venv``, default ``~/.cache/meetcap-bench/pipecat-venv``) and pip-installs
``pipecat-ai`` there on first use. Both chains read the same samples
(bench/meeting_audio.py writes them once to a file), run pinned to the same CPU, in
alternating rounds (meetcap, pipecat, meetcap, ...), each round the best of three runs
inside its process; the best round of each counts. Speed is audio seconds per CPU second
of the process ("x real time").

The LAST line is exactly: ``pipecat peer: meetcap <N>x, pipecat <M>x real time, ratio <R>``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_VENV = Path.home() / ".cache" / "meetcap-bench" / "pipecat-venv"
RATE_HZ = 48_000
BLOCK = RATE_HZ // 100  # 10 ms device blocks
CYCLE_BLOCKS = 2  # pushed every 20 ms


def run_pipecat(path: Path, seconds: float, repeats: int) -> float:
    """In the pipecat venv: the peer chain over the meeting file, best of ``repeats``."""
    import asyncio

    import numpy as np
    from loguru import logger

    logger.remove()  # pipecat logs every start at INFO
    from pipecat.audio.resamplers.soxr_stream_resampler import SOXRStreamAudioResampler
    from pipecat.audio.vad.silero import SileroVADAnalyzer

    with np.load(path) as data:
        mic = (np.clip(data["mic"][:, 0], -1, 1) * 32767).astype(np.int16)
        system = data["system"]
    total = int(seconds * RATE_HZ)

    async def once() -> float:
        resamplers = [SOXRStreamAudioResampler(), SOXRStreamAudioResampler()]
        vad = SileroVADAnalyzer(sample_rate=16_000)
        vad.set_sample_rate(16_000)  # what pipecat's transport does when audio starts
        states = 0
        cpu0 = time.process_time()
        for start in range(0, total, BLOCK * CYCLE_BLOCKS):
            end = min(total, start + BLOCK * CYCLE_BLOCKS)
            stereo = system[start:end]
            down = (np.clip(stereo.mean(axis=1), -1, 1) * 32767).astype(np.int16)
            a = await resamplers[0].resample(mic[start:end].tobytes(), RATE_HZ, 16_000)
            b = await resamplers[1].resample(down.tobytes(), RATE_HZ, 16_000)
            n = min(len(a), len(b)) // 2
            mixed = np.frombuffer(a, np.int16)[:n].astype(np.int32) + np.frombuffer(b, np.int16)[:n]
            summed = np.clip(mixed, -32768, 32767).astype(np.int16).tobytes()
            states += vad._run_analyzer(summed).value is not None
        return time.process_time() - cpu0

    best = min(asyncio.run(once()) for _ in range(repeats))
    return seconds / best


def ensure_venv(venv: Path) -> Path:
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} and installing pipecat-ai there (once)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "pipecat-ai", "numpy",
                        "soxr", "onnxruntime"], check=True)
    return python


def pin(cpu: int | None) -> int:
    allowed = sorted(os.sched_getaffinity(0))
    chosen = allowed[-1] if cpu is None else cpu
    os.sched_setaffinity(0, {chosen})
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--cpu", type=int, default=None, help="CPU both run on (default: last)")
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--child-pipecat", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_pipecat is not None:  # inside the pipecat venv
        pin(args.cpu)
        print(f"pipecat: {run_pipecat(args.child_pipecat, args.seconds, 3):.1f}x real time")
        return 0

    sys.path.insert(0, str(HERE))
    import meeting_audio

    cpu = pin(args.cpu)
    audio = meeting_audio.cached_meeting(args.seconds)
    share = meeting_audio.speech_share(meeting_audio.load_meeting(audio))
    python = ensure_venv(args.venv)
    print(f"meeting-like audio: {args.seconds:g} s, {share:.0%} speech; both pinned to CPU {cpu}; "
          f"load average {os.getloadavg()[0]:.1f} (the machine is shared: read the ratio)")
    meetcap_cmd = [sys.executable, str(HERE / "pipeline.py"), "--meeting-only",
                   "--seconds", f"{args.seconds:g}", "--cpu", str(cpu)]
    pipecat_cmd = [str(python), str(Path(__file__).resolve()), "--child-pipecat", str(audio),
                   "--seconds", f"{args.seconds:g}", "--cpu", str(cpu)]
    best = {"meetcap": 0.0, "meetcap who spoke": 0.0, "pipecat": 0.0}
    for round_ in range(1, args.rounds + 1):
        for name, cmd in (("meetcap", meetcap_cmd), ("pipecat", pipecat_cmd)):
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            speed = float(re.search(r"(?:meeting|pipecat): ([\d.]+)x", out).group(1))
            best[name] = max(best[name], speed)
            line = f"round {round_}: {name:8s} {speed:6.1f}x real time"
            who = re.search(r"who spoke: ([\d.]+)x", out)
            if who:
                best["meetcap who spoke"] = max(best["meetcap who spoke"], float(who.group(1)))
                line += f" (who spoke on, a VAD per lane: {float(who.group(1)):.1f}x)"
            print(line, flush=True)
    ratio = best["meetcap"] / best["pipecat"]
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    print(f"meetcap with who spoke (two lane VADs, labels): {best['meetcap who spoke']:.0f}x, "
          f"{best['meetcap who spoke'] / best['pipecat']:.2f}x pipecat")
    print(f"pipecat peer: meetcap {best['meetcap']:.0f}x, pipecat {best['pipecat']:.0f}x "
          f"real time, ratio {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
