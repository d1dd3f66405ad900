"""Silero VAD: right on real speech, loud about a broken model, one session per process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime.datasets
import pytest

from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp import vad
from meetcap.dsp.chain import MixChain
from meetcap.dsp.resample import Resampler
from meetcap.dsp.vad import VadStream
from meetcap.errors import ModelError
from tests.dsp.signals import noise, random_blocks

PAD_S = 1.5


def padded(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    silence = np.zeros(int(PAD_S * rate_hz), np.float32)
    return np.concatenate([silence, samples, silence])


def run_chain(chain: MixChain, samples: np.ndarray, rate_hz: int, seed: int = 0) -> list:
    """Push a recording as the mic in ~10 ms device blocks, rendering ~20 ms at a time."""
    rng = np.random.default_rng(seed)
    chain.add_source("mic", rate_hz, 1)
    frames = []
    for a, b in random_blocks(len(samples), rng, rate_hz // 200, rate_hz // 50):
        chain.push("mic", samples[a:b, None])
        due = round(b * 16000 / rate_hz) - chain.samples_rendered
        frames += chain.render(due)
    return frames + chain.finish()


def test_speech_flags_agree_with_the_spoken_region_on_90_percent_of_frames(
    espeak_utterance,
) -> None:
    samples, rate_hz = espeak_utterance
    chain = MixChain(start_time=0.0)
    chain.set_vad(True)

    frames = run_chain(chain, padded(samples, rate_hz), rate_hz)

    pcm = np.frombuffer(b"".join(f.pcm for f in frames), "<i2")
    spoken = np.flatnonzero(np.abs(pcm) > 3)  # the padding is digital silence
    truth = np.zeros(len(pcm), bool)
    truth[spoken[0] : spoken[-1] + 1] = True
    truth_frames = truth.reshape(-1, FRAME_SAMPLES).mean(axis=1) >= 0.5
    flags = np.array([f.speech for f in frames])
    assert truth_frames.sum() > 40 and (~truth_frames).sum() > 25  # both kinds are there
    assert np.mean(flags == truth_frames) >= 0.90
    assert flags[truth_frames].mean() >= 0.95  # the sentence itself is hardly ever missed


def test_streams_share_one_session_but_keep_their_own_state(espeak_utterance) -> None:
    samples, rate_hz = espeak_utterance
    speech = Resampler(rate_hz, 1).process(samples)
    room = noise(len(speech) / 16000, -50.0, seed=1)
    alone_speech, alone_room = VadStream(), VadStream()
    expected_speech = alone_speech.process(speech)
    expected_room = alone_room.process(room)

    a, b = VadStream(), VadStream()
    got_a, got_b = [], []
    for start in range(0, len(speech), 700):  # interleaved, as two users of one process would
        got_a.append(a.process(speech[start : start + 700]))
        got_b.append(b.process(room[start : start + 700]))
    np.testing.assert_array_equal(np.concatenate(got_a), expected_speech)
    np.testing.assert_array_equal(np.concatenate(got_b), expected_room)
    assert expected_speech.mean() > 0.5 and not expected_room.any()
    assert a.model.session is b.model.session is alone_speech.model.session


def test_batching_windows_changes_only_when_verdicts_come_not_what_they_are(
    espeak_utterance,
) -> None:
    samples, rate_hz = espeak_utterance
    speech = Resampler(rate_hz, 1).process(padded(samples, rate_hz))
    single, batched = VadStream(), VadStream(batch_windows=6)
    one_by_one = np.concatenate(
        [single.process(speech[i : i + 1600]) for i in range(0, len(speech), 1600)]
    )
    parts = [batched.process(speech[i : i + 1600]) for i in range(0, len(speech), 1600)]
    assert max(len(p) for p in parts) >= 6 * 512 and min(len(p) for p in parts) == 0
    in_batches = np.concatenate(parts + [batched.flush()])
    np.testing.assert_array_equal(in_batches[: len(one_by_one)], one_by_one)
    assert one_by_one.any()


def test_the_session_is_created_once_however_many_streams_run() -> None:
    vad._forget_models()
    before = vad.sessions_created()
    streams = [VadStream() for _ in range(5)]
    assert vad.sessions_created() == before  # lazy: nothing loaded until first use
    chain = MixChain(start_time=0.0)
    chain.set_vad(True)
    for stream in streams:
        stream.process(noise(0.5, -30.0, seed=2))
    chain.add_source("mic", 16000, 1)
    chain.push("mic", noise(1.0, -30.0, seed=3)[:, None])
    chain.render(16000)
    assert vad.sessions_created() == before + 1
    assert all(s.windows_run == 15 for s in streams)


def test_with_the_vad_off_no_inference_runs_and_frames_say_no_speech(espeak_utterance) -> None:
    samples, rate_hz = espeak_utterance
    vad._forget_models()
    before = vad.sessions_created()
    chain = MixChain(start_time=0.0)
    frames = run_chain(chain, padded(samples, rate_hz), rate_hz)
    assert len(frames) > 60 and not any(f.speech for f in frames)
    assert vad.sessions_created() == before


def test_vad_can_be_switched_on_and_off_mid_stream_without_losing_frames(espeak_utterance) -> None:
    samples, rate_hz = espeak_utterance
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", rate_hz, 1)
    audio = padded(samples, rate_hz)
    frames = []
    step = rate_hz // 50
    for i, start in enumerate(range(0, len(audio), step)):
        if i % 60 == 20:
            chain.set_vad(not chain.vad_enabled)
        chain.push("mic", audio[start : start + step, None])
        frames += chain.render(round((start + step) * 16000 / rate_hz) - chain.samples_rendered)
    frames += chain.finish()
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert len(frames) == chain.samples_rendered // FRAME_SAMPLES
    assert any(f.speech for f in frames)


def test_missing_model_file_raises_model_error_at_switch_on(tmp_path) -> None:
    chain = MixChain(start_time=0.0, vad_model_path=str(tmp_path / "nope.onnx"))
    with pytest.raises(ModelError, match="does not exist"):
        chain.set_vad(True)
    assert not chain.vad_enabled
    chain.add_source("mic", 16000, 1)
    chain.push("mic", noise(0.5, -20.0)[:, None])
    assert len(chain.render(8000)) == 5  # capture goes on without VAD


@pytest.mark.parametrize("content", ["truncated", "not_silero"])
def test_broken_model_raises_model_error_never_silence(tmp_path, content: str) -> None:
    if content == "truncated":
        path = tmp_path / "silero.onnx"
        good = Path(vad.default_model_path()).read_bytes()
        path.write_bytes(good[: len(good) // 2])
        expected = "cannot be loaded"
    else:
        path = onnxruntime.datasets.get_example("sigmoid.onnx")  # a real model, wrong kind
        expected = "not a Silero VAD"
    stream = VadStream(path)
    with pytest.raises(ModelError, match=expected):
        stream.process(np.zeros(1024, np.float32))


def test_model_path_comes_from_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(vad.MODEL_ENV_VAR, str(tmp_path / "elsewhere.onnx"))
    with pytest.raises(ModelError, match=vad.MODEL_ENV_VAR):
        VadStream().load()
    monkeypatch.delenv(vad.MODEL_ENV_VAR)
    assert vad.resolve_model_path() == vad.default_model_path()


def test_vad_refuses_audio_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="1-D"):
        VadStream().process(np.zeros((512, 2), np.float32))
