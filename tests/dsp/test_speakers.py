"""Who spoke, through the whole MixChain: real Silero, espeak-ng voices, an echo path made
by adding the system lane to the mic lane late and quieter (the real-PulseAudio version of
this is tests/audio/test_who_spoke_pulseaudio.py)."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.dsp.chain import MixChain
from meetcap.dsp.mixer import DEFAULT_TARGET_LATENCY_MS
from meetcap.frames import SPEAKER_BOTH, SPEAKER_NOBODY, SPEAKER_OTHERS, SPEAKER_YOU
from tests.support.speech import PLAY_RATE_HZ, make_speech

# Frames by which the mixer's margin delays every lane (100 ms frames).
LATE = round(DEFAULT_TARGET_LATENCY_MS / 100)

RATE = PLAY_RATE_HZ
# (who, seconds): turns with pauses, as in a conversation, and one stretch of double talk.
TURNS = (("you", 3.5), (None, 0.8), ("others", 3.5), (None, 0.8), ("you", 2.5),
         (None, 0.6), ("others", 3.0), (None, 0.8), ("both", 3.0), (None, 1.0))


@pytest.fixture(scope="module")
def lanes(tmp_path_factory) -> tuple[np.ndarray, np.ndarray]:
    directory = tmp_path_factory.mktemp("who")
    you = make_speech(directory, "you", "Good morning everyone, let us review the budget "
                      "and the plan.", voice="en", pitch=40, lead_s=0, tail_s=0).samples
    them = make_speech(directory, "them", "Thanks, the remote team finished the release on "
                       "Friday and it went fine.", voice="en-us", pitch=75, lead_s=0,
                       tail_s=0).samples
    mic, system = [], []
    for who, seconds in TURNS:
        n = int(seconds * RATE)
        m, s = np.zeros(n, np.float32), np.zeros(n, np.float32)
        if who in ("you", "both"):
            m[: min(n, len(you))] = you[:n]
        if who in ("others", "both"):
            s[: min(n, len(them))] = them[:n]
        mic.append(m)
        system.append(s)
    return np.concatenate(mic), np.concatenate(system)


def truth(signal: np.ndarray) -> np.ndarray:
    """Per 100 ms frame: the voice is there (a 10 ms block above -40 dBFS in it)."""
    blocks = signal[: len(signal) // 480 * 480].reshape(-1, 480)
    loud = np.sqrt(np.square(blocks).mean(axis=1)) > 0.01
    return loud[: len(loud) // 10 * 10].reshape(-1, 10).any(axis=1)


def run_chain(mic: np.ndarray, system: np.ndarray) -> list:
    chain = MixChain(start_time=0.0, who_spoke=True, normalize=False)
    chain.add_source("mic", RATE, 1)
    chain.add_source("system", RATE, 1)
    chain.set_vad(True)
    frames = []
    for i in range(0, len(mic), 960):  # 20 ms device blocks, rendered as they come
        chain.push("mic", mic[i : i + 960, None])
        chain.push("system", system[i : i + 960, None])
        frames += chain.render(320)
    return frames + chain.finish()


@pytest.mark.parametrize(
    "echo", [None, (0.1, -12.0), (0.15, -18.0)],
    ids=["headset", "echo-100ms-12dB", "echo-150ms-18dB"],
)
def test_frames_where_one_side_speaks_are_labelled_right(lanes, echo):
    mic, system = lanes
    heard = mic.copy()
    if echo is not None:  # the speakers reach the mic: late and quieter
        delay, gain_db = int(echo[0] * RATE), echo[1]
        heard[delay:] += system[:-delay] * np.float32(10 ** (gain_db / 20))
    frames = run_chain(heard, system)
    assert all(f.speaker is not None for f in frames)
    # The mixer delays every lane by its latency: frame k holds played frame k - LATE.
    labels = np.array([f.speaker for f in frames[LATE:]])
    you, others = truth(mic), truth(system)
    n = min(len(labels), len(you))
    labels, you, others = labels[:n], you[:n], others[:n]
    only_you, only_others = you & ~others, others & ~you
    right = np.concatenate(
        (labels[only_you] == SPEAKER_YOU, labels[only_others] == SPEAKER_OTHERS)
    )
    both = labels[you & others]
    print(f"\n{echo}: one side speaks in {len(right)} frames, label right on {right.mean():.1%}; "
          f"double talk 'both' on {np.mean(both == SPEAKER_BOTH):.0%} of {len(both)}; "
          f"silence 'nobody' on {np.mean(labels[~you & ~others] == SPEAKER_NOBODY):.0%}")
    assert len(right) > 100
    assert right.mean() >= 0.95
    assert np.mean(both == SPEAKER_BOTH) >= 0.8  # the person's voice is not lost in double talk
    assert np.all(labels[[f.speech for f in frames[LATE:]][:n]] != SPEAKER_NOBODY)
