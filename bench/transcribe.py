#!/usr/bin/env python
"""Speed of meetcap's transcription (meetcap.transcribe) beside faster-whisper's own
``transcribe()`` of the same file with the same model, in the same run.

    python bench/transcribe.py [--rounds 2] [--repeats 3] [--model DIR|NAME] [--cpu N]

The audio: espeak-ng sentences of known text (tests/support/transcript_corpus.py, six
voices and speeds), ``--rounds`` times over (2: about 60 s, 75 % of it speech), 16 kHz.
The VAD flags come from meetcap's Silero VAD run once beforehand (the live server's worker
runs the same VAD over the stored audio); the VAD's own cost is printed apart.

Measured, each on one pinned core with one CTranslate2 thread (the default engine):
- faster-whisper alone: ``WhisperModel.transcribe()`` of the whole file (30 s windows,
  its defaults except the engine's beam size, so the decoding matches);
- meetcap finals only: StreamingTranscriber with partials off, frames fed in one-second
  batches (what ``meetcap transcribe`` and a server behind on its work do);
- meetcap with partials: the same with partials during speech as a live session
  computes them while the server keeps up: one per second of audio at most, within
  their compute budget (StreamingTranscriber's ``partial_budget``, 3 % of the audio
  time by default), so how often they come depends on what one costs here; printed
  with how often a shown partial came;
- partials, no budget: the same with the budget off (a partial every second of
  speech, whatever it costs), the cost the budget saves.
Speed is audio seconds per CPU second of this process ("x real time"), best of
``--repeats`` runs (the machine is shared); WER (jiwer) against the known text.

Live sessions: how many sessions with partials one server transcribes in real time on
this machine, if every core runs one transcription worker: floor(cores * speed with
partials). Meetings with more speech than this corpus (75 %) cost more.

The LAST line is exactly:
``transcribe: <N>x real time, faster-whisper alone <M>x, <S> live sessions``,
N being meetcap's finals-only speed (the same work as faster-whisper's: each second of
audio transcribed once); the speed with partials is on the line before.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np  # noqa: E402

from meetcap.transcribe.engine import DecodeCost, load_engine  # noqa: E402
from meetcap.transcribe.offline import frames_with_speech, transcribe_frames  # noqa: E402
from meetcap.transcribe.segments import TranscriptSegment  # noqa: E402
from meetcap.transcribe.stream import (  # noqa: E402
    DEFAULT_PARTIAL_BUDGET,
    StreamingTranscriber,
)
from tests.support.transcript_corpus import (  # noqa: E402
    SENTENCES,
    make_corpus,
    make_overlap,
    wer,
)

OVERHEAD_TARGET = 0.30  # meetcap's segmentation may cost at most 30 % over faster-whisper


def _timed(run: Callable[[], str], repeats: int) -> tuple[float, float, str]:
    """Best CPU and wall seconds of ``repeats`` runs, and the text of the last."""
    best_cpu = best_wall = float("inf")
    text = ""
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        text = run()
        best_cpu = min(best_cpu, time.process_time() - cpu)
        best_wall = min(best_wall, time.perf_counter() - wall)
    return best_cpu, best_wall, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=2, help="times over the sentences")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--model", default=None, help="model directory or packaged name")
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: "
                        "the first one this process may use)")
    parser.add_argument("--budgets", default="", help="more partial budgets to measure "
                        "beside the default, as fractions of the audio time: 0.02,0.025")
    args = parser.parse_args(argv)

    if hasattr(os, "sched_setaffinity"):
        cpu = args.cpu if args.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
    cores = os.cpu_count() or 1

    sentences = SENTENCES * args.rounds
    corpus = make_corpus(sentences)
    reference = corpus.text
    print(f"audio: {corpus.duration_s:.1f} s, {len(sentences)} espeak-ng sentences, "
          f"{sum(u.end_s - u.start_s for u in corpus.utterances) / corpus.duration_s:.0%} "
          "speech")

    t = time.process_time()
    frames = frames_with_speech(corpus.samples)
    vad_cpu = time.process_time() - t
    print(f"Silero VAD over the file (live, the server's worker runs it too): "
          f"{corpus.duration_s / vad_cpu:.0f}x real time")

    t = time.process_time()
    engine = load_engine(args.model, threads=1)
    print(f"model {engine.model_dir} loaded in {time.process_time() - t:.2f} s CPU "
          f"(beam {engine.beam_size}, int8, 1 thread, pinned to one core)")

    def faster_whisper_alone() -> str:
        segments, _ = engine.model.transcribe(
            corpus.samples, language=engine.language, beam_size=engine.beam_size
        )
        return " ".join(s.text for s in segments)

    last: dict[str, tuple[StreamingTranscriber, list[TranscriptSegment]]] = {}
    costs: dict[str, tuple[DecodeCost, DecodeCost]] = {}  # (drafts, finals) of the last run

    def streaming(label: str, partials: bool, **options) -> Callable[[], str]:
        def run() -> str:
            engine.draft_cost, engine.final_cost = DecodeCost(), DecodeCost()
            transcriber = StreamingTranscriber(engine, partials=partials, **options)
            seen: list[TranscriptSegment] = []
            finals = transcribe_frames(transcriber, frames, on_segment=seen.append)
            last[label] = (transcriber, seen)
            costs[label] = (engine.draft_cost, engine.final_cost)
            return " ".join(s.text for s in finals)
        return run

    budgets = [float(b) for b in args.budgets.split(",") if b.strip()]
    runs = {
        "faster-whisper alone": faster_whisper_alone,
        "meetcap finals only": streaming("finals", False),
        "meetcap with partials": streaming("partials", True),
        **{f"partials, budget {b:.1%}": streaming(f"budget {b:.1%}", True, partial_budget=b)
           for b in budgets},
        "partials, no budget": streaming("unbudgeted", True, partial_budget=None),
    }
    speed: dict[str, float] = {}
    for label, run in runs.items():
        cpu_s, wall_s, text = _timed(run, args.repeats)
        speed[label] = corpus.duration_s / cpu_s
        print(f"{label:22s} cpu {cpu_s:6.2f} s  wall {wall_s:6.2f} s  "
              f"{speed[label]:6.1f}x real time  WER {wer(reference, text):5.1%}")
    print(f"with partials: budget {DEFAULT_PARTIAL_BUDGET:.1%} of the audio time")
    for label, key in (("with partials", "partials"),
                       *((f"budget {b:.1%}", f"budget {b:.1%}") for b in budgets),
                       ("no budget", "unbudgeted")):
        transcriber, seen = last[key]
        shown = [s for s in seen if not s.final]
        gaps = [b.end_s - a.end_s for a, b in zip(shown, shown[1:], strict=False)
                if a.id == b.id]
        print(f"{label}: {transcriber.engine_calls} engine calls, "
              f"{transcriber.partial_calls} of them partials' drafts "
              f"({transcriber.partials_over_budget} partials left out for the budget), "
              f"{len(shown)} partials shown for {len(corpus.utterances)} sentences, one every "
              f"{np.median(gaps):.1f} s (mean {np.mean(gaps):.2f}, max {max(gaps):.1f}) "
              f"within a sentence; partials' CPU {transcriber.partial_cpu_s:.2f} s = "
              f"{transcriber.partial_cpu_s / corpus.duration_s:.1%} of the audio time")

    # Where a draft's and a final's CPU goes (the engine's own process-time counters,
    # best-of runs not separated: the last run of each).
    for what, cost in (("draft (no budget run)", costs["unbudgeted"][0]),
                       ("final (finals only)", costs["finals"][1])):
        n = max(1, cost.decodes)
        total = cost.features_s + cost.encode_s + cost.generate_s + cost.other_s
        steps = cost.forced_tokens + cost.new_tokens + cost.decodes  # + one EOS each
        print(f"one {what}: {1000 * total / n:.1f} ms CPU = features "
              f"{1000 * cost.features_s / n:.1f} + encoder {1000 * cost.encode_s / n:.1f} "
              f"({cost.window_s / n:.1f} s window) + decoder {1000 * cost.generate_s / n:.1f} "
              f"(prompt {cost.prompt_tokens / n:.1f} tokens batched, "
              f"{cost.forced_tokens / n:.1f} forced + {cost.new_tokens / n:.1f} new + EOS "
              f"= {steps / n:.1f} steps) + other {1000 * cost.other_s / n:.1f}; "
              f"{cost.decodes} decodes")

    # A monologue: the same sentences 0.25 s apart, which the VAD bridges, so utterances
    # run to the 20 s cap and partials work on long utterances (the costly case).
    monologue = make_corpus(sentences, pause_s=0.25)
    monologue_frames = frames_with_speech(monologue.samples)

    def monologue_run() -> str:
        finals = transcribe_frames(StreamingTranscriber(engine), monologue_frames)
        return " ".join(s.text for s in finals)

    cpu_s, wall_s, text = _timed(monologue_run, args.repeats)
    speed["monologue with partials"] = monologue.duration_s / cpu_s
    print(f"{'monologue, partials':22s} cpu {cpu_s:6.2f} s  wall {wall_s:6.2f} s  "
          f"{speed['monologue with partials']:6.1f}x real time  "
          f"WER {wer(monologue.text, text):5.1%}  ({monologue.duration_s:.0f} s, "
          f"utterances up to 20 s)")

    # Overlapping speech: two voices at once (tests/support/transcript_corpus.make_overlap),
    # WER against both speakers' sentences in the order they start. One run each: the
    # WER is the figure here, and faster-whisper's own fallback samples (it varies).
    mix, overlap_reference = make_overlap()
    overlap_frames = frames_with_speech(mix)
    streamed = " ".join(s.text for s in transcribe_frames(
        StreamingTranscriber(engine, partials=False), overlap_frames))
    direct_segments, _ = engine.model.transcribe(mix, language=engine.language,
                                                 beam_size=engine.beam_size)
    direct = " ".join(s.text for s in direct_segments)
    print(f"overlapping speech ({len(mix) / 16000:.0f} s, two voices): WER meetcap "
          f"{wer(overlap_reference, streamed):.1%}, faster-whisper alone "
          f"{wer(overlap_reference, direct):.1%}")

    alone = speed["faster-whisper alone"]
    for label in ("meetcap finals only", "meetcap with partials",
                  *(f"partials, budget {b:.1%}" for b in budgets), "partials, no budget"):
        overhead = alone / speed[label] - 1
        verdict = "within" if overhead < OVERHEAD_TARGET else "OVER"
        print(f"{label}: {overhead:+.0%} CPU over faster-whisper alone "
              f"({verdict} the +{OVERHEAD_TARGET:.0%} target)")
    sessions = int(np.floor(cores * speed["meetcap with partials"]))
    print(f"live sessions: {cores} cores x {speed['meetcap with partials']:.1f}x real time "
          f"with partials = {sessions} (finals only, partials dropped when behind: "
          f"{int(np.floor(cores * speed['meetcap finals only']))}; everyone talking in "
          f"monologues: {int(np.floor(cores * speed['monologue with partials']))})")
    print(f"meetcap with partials: {speed['meetcap with partials']:.1f}x real time")
    print(f"transcribe: {speed['meetcap finals only']:.0f}x real time, "
          f"faster-whisper alone {alone:.0f}x, {sessions} live sessions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
