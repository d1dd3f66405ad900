"""The unit of audio that leaves the pipeline: one numbered 100 ms frame."""

from __future__ import annotations

from dataclasses import dataclass

from meetcap.constants import FRAME_BYTES


@dataclass(frozen=True, slots=True)
class Frame:
    """100 ms of speech-ready audio: 1,600 int16 little-endian mono samples at 16 kHz.

    ``seq`` counts from 0 within a capture session with no gaps, so the sample offset of
    a frame is ``seq * 1600``. ``capture_time`` is the wall-clock time (``time.time()``)
    of the frame's first sample. ``speech`` is the VAD's verdict, False when no VAD ran.
    """

    seq: int
    pcm: bytes
    capture_time: float
    speech: bool = False

    def __post_init__(self) -> None:
        if len(self.pcm) != FRAME_BYTES:
            raise ValueError(f"a frame holds exactly {FRAME_BYTES} bytes, got {len(self.pcm)}")
        if self.seq < 0:
            raise ValueError(f"frame sequence numbers start at 0, got {self.seq}")
