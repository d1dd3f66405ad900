"""The engine and the streaming path on real speech (espeak-ng) with the real packaged
Whisper tiny.en; WER with jiwer."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from meetcap.errors import ModelError
from meetcap.transcribe.engine import load_engine, packaged_model_dir
from tests.support.transcript_corpus import wer


def test_streaming_wer_matches_faster_whisper_transcribe_on_the_same_file(
    engine, corpus, live_run
):
    finals, _ = live_run
    streamed = " ".join(s.text for s in finals)
    # faster-whisper's own transcribe() on the whole clean file, same model, same decoding.
    direct_segments, _ = engine.model.transcribe(
        corpus.samples, language="en", beam_size=engine.beam_size
    )
    direct = " ".join(s.text for s in direct_segments)
    streamed_wer, direct_wer = wer(corpus.text, streamed), wer(corpus.text, direct)
    print(f"\nWER streaming {streamed_wer:.1%}, faster-whisper transcribe() {direct_wer:.1%}")
    assert streamed_wer <= direct_wer + 0.03, (streamed, direct)
    assert streamed_wer <= 0.12, streamed


def test_overlapping_speech_is_retried_and_transcribed_the_same_every_time(engine):
    """Two voices at once make Whisper doubt (repetition loops): the engine retries
    without sampling, so the same audio still gives the same finals, live or offline.
    (WER on overlap beside faster-whisper alone: bench/transcribe.py.)"""
    from meetcap.transcribe.offline import frames_with_speech, transcribe_frames
    from meetcap.transcribe.stream import StreamingTranscriber
    from tests.support.transcript_corpus import have_espeak, make_overlap

    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    mix, reference = make_overlap()
    frames = frames_with_speech(mix)
    retries = engine.retries
    runs = [transcribe_frames(StreamingTranscriber(engine, partials=False), frames)
            for _ in range(2)]
    assert engine.retries >= retries + 2  # the doubtful path ran, in both runs
    assert runs[0] == runs[1]
    streamed_wer = wer(reference, " ".join(s.text for s in runs[0]))
    print(f"\noverlapping speech: WER streaming {streamed_wer:.1%}")
    assert streamed_wer < 0.9  # words of the dominant voice come through
    # Decoded after the previous final, Whisper once said that final again at the start
    # of the next (a doubled phrase); the engine redoes such a decode alone.
    from meetcap.transcribe.engine import _repeats

    for previous, final in zip(runs[0], runs[0][1:], strict=False):
        assert not _repeats(previous.text, final.text), (previous.text, final.text)
    assert engine.context_retries >= 1  # the guard did run on this audio


def test_each_sentence_is_one_final_segment_timed_on_the_frames(corpus, live_run):
    finals, _ = live_run
    assert [s.id for s in finals] == list(range(len(corpus.utterances)))
    for seg, said in zip(finals, corpus.utterances, strict=True):
        # Onset dated back by the VAD, end padded by its 300 ms hangover (+ a frame).
        assert said.start_s - 0.35 <= seg.start_s <= said.start_s + 0.25, (seg, said)
        assert said.end_s <= seg.end_s <= said.end_s + 0.65, (seg, said)
        assert wer(said.text, seg.text) <= 0.35, (seg.text, said.text)
        assert seg.final and seg.speaker is None and not seg.minor


def test_offline_without_partials_gives_the_same_finals_as_live(engine, corpus_frames, live_run):
    from meetcap.transcribe.offline import transcribe_frames
    from meetcap.transcribe.stream import StreamingTranscriber

    offline = transcribe_frames(StreamingTranscriber(engine, partials=False), corpus_frames)
    assert offline == live_run[0]


def test_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_engine(str(tmp_path / "no-such-model"))


def test_a_name_that_would_need_a_download_is_refused():
    with pytest.raises(ModelError, match="never downloads"):
        load_engine("large-v3")


def test_a_directory_without_model_files_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="model.bin"):
        load_engine(str(tmp_path))


def test_a_broken_model_file_is_a_clear_error_at_load(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(packaged_model_dir(), broken)
    with open(broken / "model.bin", "r+b") as f:  # a model.bin cut short: a failed copy
        f.truncate(1_000_000)
    with pytest.raises(ModelError, match="cannot be loaded"):
        load_engine(str(broken))


def test_an_english_only_model_refuses_another_language():
    with pytest.raises(ModelError, match="English-only"):
        load_engine(language="de")


def test_the_engine_hears_silence_as_nothing(engine):
    rng = np.random.default_rng(1)
    quiet = (1e-3 * rng.standard_normal(3 * 16_000)).astype(np.float32)
    assert " ".join(s.text for s in engine.transcribe(quiet)).strip(" .") == ""


def test_the_engine_says_where_a_drafts_and_a_finals_cpu_went(engine, corpus):
    """bench/transcribe.py's breakdown: drafts and finals are counted apart, with their
    window and their tokens; a draft continuing shown words forces them."""
    from meetcap.transcribe.engine import DecodeCost

    engine.draft_cost, engine.final_cost = DecodeCost(), DecodeCost()
    first = corpus.utterances[0]
    samples = corpus.samples[int(first.start_s * 16000):int(first.end_s * 16000)]
    final = engine.transcribe(samples)[0].text
    engine.transcribe(samples[:32000], draft=True, prefix=" ".join(final.split()[:2]))
    drafts, finals = engine.draft_cost, engine.final_cost
    assert (drafts.decodes, finals.decodes) == (1, 1)
    # The windows: the audio + its silence (1 s for a final, 0.5 s for a draft), rounded
    # up to whole seconds (half seconds for a draft). The STFT gives one frame more than
    # 100 a second, so 2 s + 0.5 s of draft takes a 3 s window (an extra half second,
    # ~2.5 ms of encoder, kept: the finals' windows would change with it).
    assert finals.window_s >= len(samples) / 16000 + 1.0 and finals.window_s % 1 == 0
    assert drafts.window_s == 3.0
    assert finals.forced_tokens == 0 and finals.new_tokens >= len(final.split())
    assert drafts.forced_tokens >= 2 and drafts.new_tokens >= 1
    for cost in (drafts, finals):
        assert cost.encode_s > 0 and cost.generate_s > 0 and cost.features_s > 0
