#!/usr/bin/env python
"""Live transcript latency: from the end of an utterance to its final at the client.

    python bench/transcript_latency.py [--utterances 20] [--workers 1] [--pause-s 1.2]
        [--partial-budget PERCENT]

A real ``meetcap-server --transcribe`` process (default options: one worker, the packaged
Whisper tiny.en, one thread) and the real client Streamer (transcript=True) over a
loopback websocket. The audio: espeak-ng sentences of known text, several voices and
speeds, ``--pause-s`` apart (tests/support/transcript_corpus.py), framed with the Silero
VAD's speech flags beforehand, as the capture pipeline marks them; the server does not use
them (it ignores bit 0 and finds the speech with its own VAD, protocol 3.3). Frames are
submitted at real time: frame ``seq`` when its 100 ms have passed (t0 + (seq + 1) * 0.1 s),
as a capture delivers them.

Latency of an utterance = arrival of its final segment at the client - (t0 + the time
its voice ends in the audio, known from the corpus). It includes the server's VAD's
hangover and the pause the segmentation waits for (about 0.6 s together), storage, the
worker reading the frames back, and the engine. Partials: the time between successive transcript
messages (partials, then the final) while each sentence is spoken, from the first one;
and, stricter, the same with the time from the last message to the end of the voice
added (a sentence that shows one partial and then nothing for 3 s of speech has a 3 s
wait there, which the first figure does not see).

The LAST line reads:
``transcript latency: p50 <a> s, p95 <b> s over <n> utterances; partials every <c> s
(p95 <d> s) during speech``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meetcap.client.config import StreamerConfig  # noqa: E402
from meetcap.client.streamer import Streamer  # noqa: E402
from meetcap.transcribe.offline import frames_with_speech  # noqa: E402
from tests.support.transcript_corpus import (  # noqa: E402
    MORE_SENTENCES,
    SENTENCES,
    make_corpus,
)

TOKEN = "bench-token-0123456789"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def start_server(
    data_dir: Path, workers: int, budget: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    env = dict(os.environ, MEETCAP_TOKENS=f"bench:{TOKEN}", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap.server", "--port", "0", "--data-dir", str(data_dir),
         "--transcribe", "--transcribe-workers", str(workers), "--log-level", "warning",
         *(["--partial-budget", budget] if budget else [])],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = re.search(r"listening on (ws://\S+)", line)
        if match:
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, match.group(1)
        sys.stderr.write(line)
    raise SystemExit(f"the server did not start (status {proc.wait()})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--utterances", type=int, default=20)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--pause-s", type=float, default=1.2)
    parser.add_argument("--partial-budget", default=None, metavar="PERCENT",
                        help="the server's --partial-budget (default: the transcriber's)")
    args = parser.parse_args()
    pool = SENTENCES + MORE_SENTENCES
    sentences = tuple(pool[i % len(pool)] for i in range(args.utterances))
    corpus = make_corpus(sentences, pause_s=args.pause_s)
    frames = frames_with_speech(corpus.samples)
    speech_s = sum(u.end_s - u.start_s for u in corpus.utterances)
    print(f"audio: {len(frames) / 10:.1f} s, {len(corpus.utterances)} sentences, "
          f"{speech_s:.1f} s of voice; partial budget "
          f"{args.partial_budget or 'the default'}; load average before: "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    arrivals: list[tuple[float, object]] = []
    lock = threading.Lock()

    def heard(segment) -> None:
        with lock:
            arrivals.append((time.monotonic(), segment))

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "data", args.workers, args.partial_budget)
        try:
            config = StreamerConfig(url=url, token=TOKEN, spool_dir=Path(tmp) / "spool",
                                    transcript=True)
            streamer = Streamer(config, on_transcript=heard)
            streamer.start()
            t0 = time.monotonic()
            for frame in frames:
                due = t0 + (frame.seq + 1) * 0.1
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                streamer.submit(frame)
            result = streamer.finish(120)
            print(result.message, flush=True)
        finally:
            proc.terminate()
            proc.wait(30)

    # The machine is shared: a load far above its cores starves the worker (say so).
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    finals = [(t, s) for t, s in arrivals if s.final]
    latencies = []
    gaps = []
    waits = []  # gaps, plus the last message before the voice's end to that end
    shown = []  # messages during each sentence's voice
    for u in corpus.utterances:
        # The final whose frames overlap this sentence most (the segment's times are
        # frame-exact on the session's timeline, the corpus times are the voice's).
        def overlap(seg, u=u) -> float:  # used at once, in this round of the loop
            return min(seg.end_s, u.end_s) - max(seg.start_s, u.start_s)

        mine = [(t, s) for t, s in finals if overlap(s) > 0]
        if not mine:
            print(f"  no final for: {u.text}")
            continue
        arrived = max(t for t, _ in mine)
        latencies.append(arrived - (t0 + u.end_s))
        ids = {s.id for _, s in mine}
        times = [t for t, s in arrivals if s.id in ids and t <= t0 + u.end_s]
        times = sorted(times)
        gaps += [b - a for a, b in zip(times, times[1:], strict=False)]
        shown.append(len(times))
        if times:
            waits += [b - a for a, b in zip(times, times[1:], strict=False)]
            waits.append(t0 + u.end_s - times[-1])
    print(f"finals: {len(finals)} for {len(corpus.utterances)} sentences; "
          f"latencies (s): {' '.join(f'{x:.2f}' for x in latencies)}")
    partial_every = statistics.median(gaps) if gaps else float("nan")
    partial_p95 = percentile(gaps, 95) if gaps else float("nan")
    if waits:
        print(f"messages during the voice: {sum(shown)} for {len(shown)} sentences "
              f"({sum(1 for n in shown if n == 0)} with none); {len(gaps)} gaps between "
              f"them; with the wait from the last one to the voice's end: median "
              f"{statistics.median(waits):.2f} s, p95 {percentile(waits, 95):.2f} s, "
              f"max {max(waits):.2f} s")
    print(
        f"transcript latency: p50 {percentile(latencies, 50):.2f} s, "
        f"p95 {percentile(latencies, 95):.2f} s over {len(latencies)} utterances; "
        f"partials every {partial_every:.2f} s (p95 {partial_p95:.2f} s) during speech"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
