"""The offline path (meetcap transcribe) streams the file block by block and gets exactly
the finals the live path gets from the same audio."""

from __future__ import annotations

import soundfile as sf

from meetcap.transcribe.offline import frames_with_speech, read_audio, transcribe_file
from meetcap.transcribe.stream import StreamingTranscriber
from tests.support.transcript_corpus import RATE_HZ


def test_file_transcribed_block_by_block_equals_the_live_transcript(
    engine, corpus, live_run, tmp_path
):
    path = tmp_path / "session.wav"
    sf.write(path, corpus.samples, RATE_HZ, subtype="FLOAT")  # what the server would store
    seen = []
    finals, duration = transcribe_file(
        path, StreamingTranscriber(engine, partials=False), on_segment=seen.append
    )
    assert finals == live_run[0]  # the live run had partials on: finals do not depend on them
    assert seen == finals
    assert abs(duration - corpus.duration_s) < 1e-6


def test_a_48k_stereo_file_is_read_at_16k_with_speech_flagged_where_said(corpus, tmp_path):
    import numpy as np
    import soxr

    path = tmp_path / "stereo48k.wav"
    at_48k = soxr.resample(corpus.samples, RATE_HZ, 48_000)
    sf.write(path, np.stack([at_48k, 0.5 * at_48k], axis=1), 48_000, subtype="FLOAT")
    audio = read_audio(path)
    assert audio.source_rate_hz == 48_000 and audio.source_channels == 2
    assert abs(audio.duration_s - corpus.duration_s) < 0.01
    whole = frames_with_speech(audio.samples)
    flags = [f.speech for f in whole]
    # Speech found where the sentences are (the VAD's own accuracy is tested in tests/dsp).
    for u in corpus.utterances:
        middle = int((u.start_s + u.end_s) / 2 * 10)
        assert flags[middle], u
    assert not any(flags[:4])
