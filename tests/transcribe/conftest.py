"""Shared fixtures: the real packaged Whisper model, loaded once for the whole
tests/transcribe run, and espeak-ng speech of known text."""

from __future__ import annotations

import pytest

from tests.support.transcript_corpus import Corpus, have_espeak, make_corpus


@pytest.fixture(scope="session")
def engine():
    from meetcap.transcribe.engine import load_engine

    return load_engine()  # the packaged tiny.en, int8, one thread


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    return make_corpus()


@pytest.fixture(scope="session")
def corpus_frames(corpus):
    from meetcap.transcribe.offline import frames_with_speech

    return frames_with_speech(corpus.samples)


@pytest.fixture(scope="session")
def live_run(engine, corpus_frames):
    """The corpus through the streaming path with partials on, as the live server runs
    it (one-second batches): every segment in the order it came out."""
    from meetcap.transcribe.offline import transcribe_frames
    from meetcap.transcribe.stream import StreamingTranscriber

    # The partials' budget off, so the cadence tests hold whatever this machine's load
    # (test_stream.py tests the budget with a clock of its own).
    transcriber = StreamingTranscriber(engine, partial_budget=None)
    seen = []
    finals = transcribe_frames(transcriber, corpus_frames, on_segment=seen.append)
    return finals, seen
