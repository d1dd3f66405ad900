"""Seeded synthetic frames and the client-side log of what was submitted (Jepsen style)."""

from __future__ import annotations

import hashlib
import random

from meetcap.constants import FRAME_BYTES
from meetcap.frames import Frame


def synthetic_frames(count: int, seed: int = 1, start_seq: int = 0, t0: float = 1.7e9):
    """``count`` frames of seeded random PCM (reproducible from ``seed`` alone)."""
    rng = random.Random(seed)
    for seq in range(start_seq, start_seq + count):
        yield Frame(seq=seq, pcm=rng.randbytes(FRAME_BYTES), capture_time=t0 + seq / 10,
                    speech=bool(seq % 3 == 0))


class SubmitLog:
    """Each submitted frame's seq and SHA-256, and the running SHA-256 of all PCM."""

    def __init__(self) -> None:
        self.hashes: dict[int, str] = {}
        self._all = hashlib.sha256()

    def record(self, frame: Frame) -> None:
        assert frame.seq == len(self.hashes), "frames must be logged in order"
        self.hashes[frame.seq] = hashlib.sha256(frame.pcm).hexdigest()
        self._all.update(frame.pcm)

    @property
    def sha256(self) -> str:
        return self._all.hexdigest()

    def __len__(self) -> int:
        return len(self.hashes)
