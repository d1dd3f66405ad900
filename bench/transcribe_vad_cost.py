#!/usr/bin/env python
"""What the server's own speech decision costs beside the transcription it serves.

    python bench/transcribe_vad_cost.py [--rounds 1] [--repeats 3] [--cpu N]

The transcription worker runs meetcap's Silero VAD over each session's stored audio
(meetcap/server/transcription/speech.py) instead of trusting the client's speech flags.
Measured in one run, on one pinned core, on the same espeak-ng audio
(tests/support/transcript_corpus.py): the worker's SpeechDecider (int16 frames in
one-second chunks, as the worker reads them) and the engine's finals-only transcription
of the same frames (StreamingTranscriber, partials off: the least the engine does) and
with partials (what a live session the server keeps up with costs). CPU seconds of this
process, best of ``--repeats``.

The LAST line is exactly:
``server vad: <V>x real time, <P> % of the engine's finals-only cost, <L> % of a live
session's``
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from meetcap.constants import FRAME_BYTES  # noqa: E402
from meetcap.server.transcription.speech import SpeechDecider  # noqa: E402
from meetcap.transcribe.engine import load_engine  # noqa: E402
from meetcap.transcribe.offline import frames_with_speech, transcribe_frames  # noqa: E402
from meetcap.transcribe.stream import StreamingTranscriber  # noqa: E402
from tests.support.transcript_corpus import SENTENCES, make_corpus  # noqa: E402


def best_cpu(run, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        run()
        best = min(best, time.process_time() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="times over the sentences")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})

    corpus = make_corpus(SENTENCES * args.rounds)
    frames = frames_with_speech(corpus.samples)
    pcm = b"".join(f.pcm for f in frames)
    print(f"audio: {corpus.duration_s:.1f} s of espeak-ng sentences")

    def server_vad() -> None:
        decider = SpeechDecider(0)
        step = 10 * FRAME_BYTES
        for i in range(0, len(pcm), step):
            decider.feed(pcm[i:i + step])
        decider.flush()

    engine = load_engine(None, threads=1)

    def engine_finals() -> None:
        transcribe_frames(StreamingTranscriber(engine, partials=False), frames)

    def engine_live() -> None:
        transcribe_frames(StreamingTranscriber(engine, partial_interval_s=0.8), frames)

    vad_s = best_cpu(server_vad, args.repeats)
    engine_s = best_cpu(engine_finals, args.repeats)
    live_s = best_cpu(engine_live, args.repeats)
    print(f"server VAD   cpu {vad_s:6.3f} s  {corpus.duration_s / vad_s:7.0f}x real time")
    print(f"engine       cpu {engine_s:6.3f} s  {corpus.duration_s / engine_s:7.1f}x real time "
          "(finals only)")
    print(f"engine       cpu {live_s:6.3f} s  {corpus.duration_s / live_s:7.1f}x real time "
          "(with partials every 0.8 s, as live)")
    print(f"take-up warm-up after a restart: {vad_s / corpus.duration_s * 3600:.1f} s CPU "
          "per hour of session already stored")
    print(f"server vad: {corpus.duration_s / vad_s:.0f}x real time, "
          f"{vad_s / engine_s * 100:.1f} % of the engine's finals-only cost, "
          f"{vad_s / live_s * 100:.1f} % of a live session's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
