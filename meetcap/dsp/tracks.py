"""Tracks mode: the two lanes as two channels of the same 100 ms frames.

Channel 1 is the mic lane, channel 2 the system lane, each as it enters the sum (after
its gain, and the mic after echo cancellation) and then through its own normaliser (AGC
+ limiter, the same settings and look-ahead as the mix's, so the tracks line up sample
for sample with the mono mix of the same frame). A frame's ``tracks`` holds 1,600
stereo samples, int16 little-endian interleaved: 6,400 bytes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp.fifo import SampleFifo
from meetcap.dsp.framer import to_int16_le
from meetcap.dsp.normalize import Normalizer
from meetcap.frames import Frame

TRACK_CHANNELS = 2
TRACKS_FRAME_BYTES = FRAME_SAMPLES * TRACK_CHANNELS * 2  # 6,400


class TrackMaker:
    """Collects both lanes per render and hangs each frame's two-channel PCM on it.

    :meth:`process` gets every rendered stretch (the same samples the mix got, in order);
    :meth:`attach` gives the frames the framer made of the mix their ``tracks``. The
    two stay in step because both see every sample of the timeline exactly once.
    """

    def __init__(self, *, normalize: bool = True) -> None:
        self._normalizers = (Normalizer(enabled=normalize), Normalizer(enabled=normalize))
        self._pending = SampleFifo(np.float32, capacity=8 * FRAME_SAMPLES)  # interleaved
        self.clip_count = 0

    def set_normalize(self, enabled: bool) -> None:
        for normalizer in self._normalizers:
            normalizer.enabled = enabled

    def process(self, mic: np.ndarray, system: np.ndarray) -> None:
        both = np.empty((len(mic), TRACK_CHANNELS), np.float32)
        both[:, 0] = self._normalizers[0].process(mic)
        both[:, 1] = self._normalizers[1].process(system)
        self._pending.push(both.ravel())

    def attach(self, frames: list[Frame]) -> list[Frame]:
        if not frames:
            return frames
        take = min(len(frames) * FRAME_SAMPLES * TRACK_CHANNELS, len(self._pending))
        pcm, clipped = to_int16_le(self._pending.pop(take))
        self.clip_count += clipped
        out = []
        for i, frame in enumerate(frames):
            part = pcm[i * TRACKS_FRAME_BYTES : (i + 1) * TRACKS_FRAME_BYTES]
            if len(part) < TRACKS_FRAME_BYTES:  # cannot happen while both see every sample
                part += bytes(TRACKS_FRAME_BYTES - len(part))
            out.append(dataclasses.replace(frame, tracks=part))
        return out
