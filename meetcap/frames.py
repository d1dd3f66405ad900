"""The unit of audio that leaves the pipeline: one numbered 100 ms frame."""

from __future__ import annotations

from dataclasses import dataclass

from meetcap.constants import FRAME_BYTES

# Who spoke in a frame (meetcap.dsp.speakers): two bits, "you" the mic lane, "others" the
# system lane; both set is double talk, neither is nobody.
SPEAKER_NOBODY = 0
SPEAKER_YOU = 1
SPEAKER_OTHERS = 2
SPEAKER_BOTH = SPEAKER_YOU | SPEAKER_OTHERS
SPEAKER_NAMES = {SPEAKER_NOBODY: "nobody", SPEAKER_YOU: "you", SPEAKER_OTHERS: "others",
                 SPEAKER_BOTH: "both"}


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
    speaker: int | None = None  # SPEAKER_*; None when nobody decided (no per-lane VAD ran)
    # Tracks mode: the mic and system lanes as two channels of the same 100 ms, int16 LE
    # interleaved (6,400 bytes, meetcap.dsp.tracks); None otherwise.
    tracks: bytes | None = None

    def __post_init__(self) -> None:
        if len(self.pcm) != FRAME_BYTES:
            raise ValueError(f"a frame holds exactly {FRAME_BYTES} bytes, got {len(self.pcm)}")
        if self.seq < 0:
            raise ValueError(f"frame sequence numbers start at 0, got {self.seq}")
        if self.tracks is not None and len(self.tracks) != 2 * FRAME_BYTES:
            raise ValueError(
                f"a frame's tracks hold {2 * FRAME_BYTES} bytes, got {len(self.tracks)}"
            )
        if self.speaker is not None and self.speaker not in SPEAKER_NAMES:
            raise ValueError(
                f"speaker is one of {sorted(SPEAKER_NAMES)} or None, got {self.speaker}"
            )
