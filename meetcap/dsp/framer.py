"""Cut the finished 16 kHz stream into numbered 100 ms frames of int16 PCM.

Each :class:`meetcap.frames.Frame` holds exactly 1,600 samples (3,200 bytes, int16
little-endian). Sequence numbers count from 0 with no gaps; ``capture_time`` is the wall
time of the timeline's sample 0 plus ``seq * 0.1`` s.

Float to int16: ``round(x * 32767)`` clipped to [-32768, 32767], the same scale as
PortAudio's float-to-int16 converter, so +-1.0 maps to +-32767 without clipping and the
limiter's -1 dBFS ceiling keeps every sample well inside the range.

Speech flag: a frame is speech when at least half of its samples lie inside a speech
segment of the VAD (majority vote). A frame that only brushes the edge of a segment is
not flagged; a frame mostly inside one is, so the flags follow the speech region to
within half a frame at each end, before the VAD's own hysteresis.
"""

from __future__ import annotations

import numpy as np

from meetcap.constants import FRAME_MS, FRAME_SAMPLES
from meetcap.dsp.fifo import SampleFifo
from meetcap.frames import Frame

INT16_SCALE = 32767.0
_FRAME_S = FRAME_MS / 1000.0


def to_int16_le(samples: np.ndarray) -> tuple[bytes, int]:
    """float32 samples to int16 little-endian bytes; also returns how many had to clip."""
    scaled = np.rint(samples * np.float32(INT16_SCALE))
    clipped = 0
    # Two reductions find the (rare) out-of-range block; counting builds two masks.
    if scaled.size and (float(scaled.max()) > 32767.0 or float(scaled.min()) < -32768.0):
        clipped = int(np.count_nonzero((scaled > 32767.0) | (scaled < -32768.0)))
        np.clip(scaled, -32768.0, 32767.0, out=scaled)
    return scaled.astype("<i2").tobytes(), clipped


class Framer:
    """Turns the final audio and its per-sample speech verdicts into :class:`Frame` objects.

    Push audio with :meth:`push_audio` and exactly as many speech verdicts (one bool per
    sample, possibly later) with :meth:`push_speech`; :meth:`pop_frames` returns every
    frame for which both are complete. Nothing is ever dropped: samples wait until their
    frame is full.
    """

    def __init__(self, start_time: float, *, first_seq: int = 0) -> None:
        self.start_time = float(start_time)
        self.next_seq = first_seq
        self.clip_count = 0  # samples that needed int16 clipping (the limiter should prevent it)
        self.last_speech = False
        self._audio = SampleFifo(np.float32, capacity=4 * FRAME_SAMPLES)
        self._speech = SampleFifo(np.bool_, capacity=4 * FRAME_SAMPLES)

    @property
    def pending_samples(self) -> int:
        """Audio samples not yet emitted in a frame."""
        return len(self._audio)

    @property
    def samples_awaiting_speech(self) -> int:
        """Audio samples pushed whose speech verdicts have not been pushed yet."""
        return max(0, len(self._audio) - len(self._speech))

    def push_audio(self, samples: np.ndarray) -> None:
        self._audio.push(samples)

    def push_speech(self, verdicts: np.ndarray) -> None:
        self._speech.push(verdicts)

    def push_no_speech(self, count: int) -> None:
        """Verdicts for ``count`` samples when no VAD runs."""
        self._speech.push_value(False, count)

    def pop_frames(self) -> list[Frame]:
        count = min(len(self._audio), len(self._speech)) // FRAME_SAMPLES
        if count == 0:
            return []
        total = count * FRAME_SAMPLES
        pcm, clipped = to_int16_le(self._audio.pop(total))
        self.clip_count += clipped
        speech_samples = np.count_nonzero(
            self._speech.pop(total).reshape(count, FRAME_SAMPLES), axis=1
        )
        frames = []
        frame_bytes = len(pcm) // count
        for i in range(count):
            seq = self.next_seq + i
            frames.append(
                Frame(
                    seq=seq,
                    pcm=pcm[i * frame_bytes : (i + 1) * frame_bytes],
                    capture_time=self.start_time + seq * _FRAME_S,
                    speech=bool(2 * speech_samples[i] >= FRAME_SAMPLES),
                )
            )
        self.next_seq += count
        self.last_speech = frames[-1].speech
        return frames
