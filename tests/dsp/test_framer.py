"""Frames: exactly 3,200 bytes, numbered without gaps, whatever the render sizes."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.constants import FRAME_BYTES, FRAME_SAMPLES
from meetcap.dsp.framer import Framer, to_int16_le
from tests.dsp.signals import noise


def test_arbitrary_render_sizes_give_exact_gapless_frames() -> None:
    rng = np.random.default_rng(1)
    audio = noise(7.3, -20.0, seed=2)
    framer = Framer(start_time=1_700_000_000.25)
    frames = []
    pos = 0
    for size in [0, 1, 1599, 1600, 1601, 3, 5000] + list(rng.integers(0, 4000, 60)):
        chunk = audio[pos : pos + int(size)]
        pos += len(chunk)
        framer.push_audio(chunk)
        framer.push_no_speech(len(chunk))
        frames += framer.pop_frames()
    framer.push_audio(audio[pos:])
    framer.push_no_speech(len(audio) - pos)
    frames += framer.pop_frames()

    assert len(frames) == len(audio) // FRAME_SAMPLES
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(len(f.pcm) == FRAME_BYTES for f in frames)
    for f in frames:
        assert f.capture_time == pytest.approx(1_700_000_000.25 + f.seq * 0.1, abs=1e-6)
    pcm = b"".join(f.pcm for f in frames)
    expected, _ = to_int16_le(audio[: len(frames) * FRAME_SAMPLES])
    assert pcm == expected  # every sample, in order, none twice
    assert framer.pending_samples == len(audio) % FRAME_SAMPLES


def test_float_to_int16_rounds_and_clips_at_the_rails() -> None:
    x = np.array([0.0, 1.0, -1.0, 0.5 / 32767, -1.49 / 32767, 1.5, -1.5, 0.25], np.float32)
    pcm, clipped = to_int16_le(x)
    assert list(np.frombuffer(pcm, "<i2")) == [0, 32767, -32767, 0, -1, 32767, -32768, 8192]
    assert clipped == 2
    assert pcm[2:4] == b"\xff\x7f"  # little-endian on the wire whatever the host


def test_a_frame_is_speech_when_most_of_it_is_speech() -> None:
    framer = Framer(start_time=0.0)
    framer.push_audio(np.zeros(4 * FRAME_SAMPLES, np.float32))
    verdicts = np.zeros(4 * FRAME_SAMPLES, bool)
    verdicts[FRAME_SAMPLES - 100 : FRAME_SAMPLES + 800] = True  # 100 in frame 0, 800 in frame 1
    verdicts[2 * FRAME_SAMPLES : 2 * FRAME_SAMPLES + 799] = True  # 799 in frame 2
    framer.push_speech(verdicts[:2500])
    first = framer.pop_frames()
    assert [f.speech for f in first] == [False]  # frame 1 waits for all its verdicts
    framer.push_speech(verdicts[2500:])
    assert [f.speech for f in framer.pop_frames()] == [True, False, False]
