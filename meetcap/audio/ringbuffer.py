"""A single-producer single-consumer ring of float32 audio frames.

The producer is the PortAudio callback, which must never block, lock or allocate
(sounddevice's callback contract): ``write`` copies into preallocated memory and, when
the consumer has fallen too far behind, counts an overrun instead of waiting. The
consumer is the pipeline worker. The two only share two integers, each written by one
side; under the GIL an int store is atomic, so no lock is needed.
"""

from __future__ import annotations

import numpy as np


class AudioRing:
    """``capacity`` frames of ``channels`` float32 samples."""

    def __init__(self, capacity: int, channels: int) -> None:
        self._data = np.zeros((capacity, channels), dtype=np.float32)
        self._capacity = capacity
        self._written = 0  # total frames written: only the producer stores it
        self._read = 0  # total frames read: only the consumer stores it
        self.overruns = 0  # blocks dropped because the ring was full (producer only)

    @property
    def channels(self) -> int:
        return self._data.shape[1]

    def available(self) -> int:
        return self._written - self._read

    def write(self, block: np.ndarray) -> bool:
        """Copy a (frames, channels) block in; False (and an overrun) if it does not fit."""
        n = block.shape[0]
        if n > self._capacity - (self._written - self._read):
            self.overruns += 1
            return False
        start = self._written % self._capacity
        first = min(n, self._capacity - start)
        self._data[start : start + first] = block[:first]
        if first < n:
            self._data[: n - first] = block[first:]
        self._written += n  # publish only after the copy is complete
        return True

    def write_silence(self, n: int) -> bool:
        """Write ``n`` frames of zeros (in place of samples the server lost); False (and
        an overrun) if they do not fit."""
        if n > self._capacity - (self._written - self._read):
            self.overruns += 1
            return False
        start = self._written % self._capacity
        first = min(n, self._capacity - start)
        self._data[start : start + first] = 0.0
        self._data[: n - first] = 0.0
        self._written += n
        return True

    def read(self) -> np.ndarray:
        """Everything available, as a new array (consumer side; allocation is fine here)."""
        n = self._written - self._read
        start = self._read % self._capacity
        first = min(n, self._capacity - start)
        out = np.concatenate((self._data[start : start + first], self._data[: n - first]))
        self._read += n
        return out
