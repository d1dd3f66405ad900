#!/usr/bin/env python
"""Echo cancellers measured side by side on the real rig (issue 10).

    python bench/echo.py [--runs 2] [--delay-ms 100] [--loss-db 15]

The rig (tests/support/echo_rig.py): a private PulseAudio server; the person's voice
(espeak-ng) is played into the microphone sink, the remote voice into the speaker sink,
and module-loopback from the speakers' monitor into the microphone sink (``--delay-ms``
late, ``--loss-db`` down) is the echo path. meetcap's own capture worker and MixChain
record both lanes on one 16 kHz timeline (echo cancellation off: the lanes as they reach
the canceller); then every candidate processes the same lanes in 10 ms blocks:

- pywebrtc-audio's EchoCanceller (WebRTC AEC3), out of the box;
- livekit's AudioProcessingModule (WebRTC AEC3 in the livekit wheel), echo cancellation on;
- aec-audio-processing's AudioProcessor (WebRTC), echo cancellation only;
- meetcap's MicEchoCanceller (meetcap/dsp/echo.py: AEC3 + a delay-aligned linear filter).

A candidate that is not installed is skipped with a note (only pywebrtc-audio is a
dependency). Each output is aligned by its own fixed latency (AEC3 delivers 8 ms late)
before it is compared. Figures per run:

- ERLE: energy of the mic lane over that of the output, from 2 s after the remote voice
  starts until 20 ms before the person starts (only the remote side speaks);
- double talk: correlation of the output with the person's clean voice (placed where it
  is in the mic lane) and its level in dB (least-squares gain) where both speak;
- speed: audio seconds per CPU second on this process's core.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from meetcap.constants import SAMPLE_RATE_HZ  # noqa: E402
from meetcap.dsp.chain import ECHO_OFF  # noqa: E402
from meetcap.dsp.echo import LINEAR_BLOCK, MicEchoCanceller  # noqa: E402
from tests.audio.test_echo_pulseaudio import run_rig  # noqa: E402
from tests.support.echo_rig import (  # noqa: E402
    at_16k,
    double_talk_figures,
    echo_path,
    erle_db,
    locate,
    placed,
)
from tests.support.pulse import MIC_SINK, SPEAKER_SINK, running_pulse_server  # noqa: E402
from tests.support.speech import make_speech  # noqa: E402

BLOCK = 160
Process = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (near, far) 10 ms -> out


def pywebrtc() -> Process:
    from pywebrtc_audio import EchoCanceller

    canceller = EchoCanceller(SAMPLE_RATE_HZ, 1, 0)
    return canceller.process


def livekit() -> Process:
    from livekit import rtc

    apm = rtc.AudioProcessingModule(echo_cancellation=True)

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        reverse = rtc.AudioFrame(_pcm(far), SAMPLE_RATE_HZ, 1, BLOCK)
        apm.process_reverse_stream(reverse)
        frame = rtc.AudioFrame(_pcm(near), SAMPLE_RATE_HZ, 1, BLOCK)
        apm.process_stream(frame)
        return np.frombuffer(frame.data, np.int16).astype(np.float32) / 32768.0

    return process


def aec_audio_processing() -> Process:
    import aec_audio_processing as aap

    processor = aap.AudioProcessor(enable_aec=True, enable_ns=False, enable_agc=False,
                                   enable_vad=False)
    processor.set_stream_format(SAMPLE_RATE_HZ, 1)
    processor.set_reverse_stream_format(SAMPLE_RATE_HZ, 1)

    def process(near: np.ndarray, far: np.ndarray) -> np.ndarray:
        processor.process_reverse_stream(_pcm(far))
        out = processor.process_stream(_pcm(near))
        return np.frombuffer(out, np.int16).astype(np.float32) / 32768.0

    return process


def meetcap() -> Process:
    canceller = MicEchoCanceller(enabled=True)
    return canceller.process


CANDIDATES: dict[str, Callable[[], Process]] = {
    "pywebrtc-audio AEC3": pywebrtc,
    "livekit APM": livekit,
    "aec-audio-processing": aec_audio_processing,
    "meetcap MicEchoCanceller": meetcap,
}


def _pcm(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1, 32767 / 32768) * 32768).astype(np.int16).tobytes()


def run_candidate(make: Callable[[], Process], mic: np.ndarray, far: np.ndarray,
                  block: int) -> tuple[np.ndarray, float]:
    process = make()
    n = len(mic) - len(mic) % block
    out = np.zeros(len(mic), np.float32)
    cpu = time.process_time()
    for i in range(0, n, block):
        out[i : i + block] = process(mic[i : i + block], far[i : i + block])
    return out, time.process_time() - cpu


def own_latency(out: np.ndarray, mic: np.ndarray, where: slice) -> int:
    """The candidate's fixed delay: where its output best matches the mic (0..40 ms)."""
    return max(range(0, 641), key=lambda lag: float(
        np.dot(out[where.start + lag : where.stop + lag], mic[where])))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--delay-ms", type=int, default=100)
    parser.add_argument("--loss-db", type=float, default=15.0)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})  # one core
    work = Path(tempfile.mkdtemp(prefix="meetcap-echo-"))
    remote = make_speech(work, "remote", "Thanks. The remote team finished the release on "
                         "Friday, and the numbers look fine for the next quarter.",
                         voice="en-us", pitch=75, lead_s=0.0, tail_s=0.1)
    person = make_speech(work, "person", "Good morning everyone, let us review the budget.",
                         voice="en", pitch=40, lead_s=0.0, tail_s=0.1)
    remote_16k, person_16k = at_16k(remote.samples), at_16k(person.samples)
    runtime = work / "pulse"
    runtime.mkdir(mode=0o700)
    results: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in CANDIDATES}
    with running_pulse_server(runtime) as pulse:
        for run in range(args.runs):
            with echo_path(pulse, delay_ms=args.delay_ms, loss_db=args.loss_db):
                time.sleep(0.5)
                tap = run_rig(pulse, ECHO_OFF, [(0.0, remote, SPEAKER_SINK),
                                                (4.5, person, MIC_SINK)], seconds=9.5)
            mic, _, system = tap.lanes()
            far_at = locate(remote_16k, system)
            near_at = locate(person_16k, mic)
            echo_lag_ms = (locate(system[far_at : near_at], mic[max(0, far_at - 8000) : near_at])
                           - min(far_at, 8000)) / 16.0
            # Up to the 20 ms block before the person starts: the canceller switches to the
            # linear output for the whole block the voice starts in (its Geigel verdict is per
            # block), and that block's echo before the voice is cancelled only linearly (on one
            # recording 53.7 dB up to there, 51.8 dB up to the voice itself).
            echo_only = slice(far_at + 2 * SAMPLE_RATE_HZ, near_at - LINEAR_BLOCK)
            voiced = np.flatnonzero(np.abs(person_16k) > 0.02)
            far_end = far_at + np.flatnonzero(np.abs(remote_16k) > 0.02)[-1]
            both = slice(near_at + voiced[0], min(near_at + voiced[-1], far_end))
            clean = placed(person_16k, near_at, len(mic))
            raw_c, raw_db = double_talk_figures(mic[both], clean[both])
            print(f"run {run + 1}: echo {echo_lag_ms:.0f} ms late, remote alone "
                  f"{(near_at - far_at) / SAMPLE_RATE_HZ:.1f} s, double talk "
                  f"{(both.stop - both.start) / SAMPLE_RATE_HZ:.1f} s; raw mic in double talk: "
                  f"correlation {raw_c:.3f}, {raw_db:+.1f} dB")
            for name, make in CANDIDATES.items():
                try:
                    block = 1600 if make is meetcap else BLOCK  # the chain's 100 ms units
                    out, cpu = run_candidate(make, mic, system, block)
                except ImportError as exc:
                    print(f"  {name:26s} not installed ({exc.name})")
                    continue
                lag = own_latency(out, mic, slice(both.start, both.stop - 1000))
                out = np.concatenate((out[lag:], np.zeros(lag, np.float32)))
                erle = erle_db(mic[echo_only], out[echo_only])
                correlation, level_db = double_talk_figures(out[both], clean[both])
                speed = len(mic) / SAMPLE_RATE_HZ / max(cpu, 1e-9)
                results[name].append((erle, correlation, level_db, speed))
                print(f"  {name:26s} ERLE {erle:5.1f} dB   double talk: correlation "
                      f"{correlation:.3f}, level {level_db:+5.1f} dB   {speed:5.0f}x real time"
                      f"   (latency {lag} samples)")
    print("\nworst of the runs (targets: ERLE >= 25 dB, correlation >= 0.9, level > -3 dB):")
    for name, rows in results.items():
        if rows:
            print(f"  {name:26s} ERLE {min(r[0] for r in rows):5.1f} dB   correlation "
                  f"{min(r[1] for r in rows):.3f}   level {min(r[2] for r in rows):+5.1f} dB   "
                  f"{min(r[3] for r in rows):5.0f}x real time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
