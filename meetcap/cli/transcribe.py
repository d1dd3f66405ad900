"""`meetcap transcribe FILE`: a recorded file to a transcript, offline.

Runs the same VAD, frames and streaming segmentation as the live server
(meetcap/transcribe/offline.py), so the result agrees with a session's live transcript;
with ``--model`` it re-transcribes an old session with a bigger model. Nothing is
downloaded: the model is the packaged one or a directory the user has.
"""

from __future__ import annotations

import argparse
import os
import sys

from meetcap.transcribe.engine import DEFAULT_MODEL, DEFAULT_THREADS, PACKAGED_MODELS
from meetcap.transcribe.formats import FORMATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "transcribe", help="transcribe a WAV or FLAC file offline",
        description="Transcribe a recorded file with the engine and segmentation the live "
                    "server uses. The transcript goes to standard output (or --out).",
    )
    parser.add_argument("file", help="the audio file (WAV or FLAC, any rate and channels)")
    parser.add_argument("--format", choices=FORMATS, default="txt",
                        help="txt (default), json (the server's transcript.json), srt, vtt, "
                             "md (Markdown)")
    parser.add_argument("--model", default=None, metavar="DIR|NAME",
                        help=f"a faster-whisper model directory, or a packaged model "
                             f"({', '.join(sorted(PACKAGED_MODELS))}; default {DEFAULT_MODEL})")
    parser.add_argument("--language", default=None,
                        help="the language code (en, de...); English-only models need none")
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help=f"CPU threads for the engine (default {DEFAULT_THREADS})")
    parser.add_argument("--min-words", type=int, default=4,
                        help="segments with fewer words are marked minor (default 4)")
    parser.add_argument("--no-minor", action="store_true",
                        help="leave minor segments out of txt/srt/vtt/md")
    parser.add_argument("--out", default=None, help="write the transcript to this file")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from meetcap.transcribe.engine import load_engine
    from meetcap.transcribe.formats import render
    from meetcap.transcribe.offline import check_audio_file, transcribe_file
    from meetcap.transcribe.stream import StreamingTranscriber

    check_audio_file(args.file)  # ConfigError with words before the model loads
    engine = load_engine(args.model, language=args.language, threads=args.threads)
    # Partials are for a live reader; offline only the finals matter (same finals).
    transcriber = StreamingTranscriber(engine, min_words=args.min_words, partials=False)
    segments, duration_s = transcribe_file(args.file, transcriber)
    if args.no_minor:
        segments = [s for s in segments if not s.minor]
    text = render(
        args.format, segments, title=os.path.basename(args.file),
        source=os.path.basename(args.file), duration_s=round(duration_s, 3),
        model=getattr(engine, "model_dir", None),
        # Without --language, the one the transcriber detected and kept for the file.
        language=getattr(engine, "language", None) or transcriber.language,
    )
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
