"""A growable first-in first-out buffer of samples, backed by one numpy array.

Pushing appends at the end, popping reads from the front; the live region is moved
back to the start of the array only when the end is reached, so each sample is copied
O(1) times on average and no Python list of blocks is ever joined.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


class SampleFifo:
    """FIFO of 1-D samples of one dtype. Not thread-safe: one owner drives it."""

    def __init__(self, dtype: npt.DTypeLike = np.float32, capacity: int = 16_384) -> None:
        self._buf = np.zeros(max(16, capacity), dtype=dtype)
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    def push(self, samples: np.ndarray) -> None:
        """Append ``samples`` (1-D, converted to the FIFO's dtype)."""
        n = len(samples)
        if n == 0:
            return
        if self._end + n > len(self._buf):
            self._make_room(n)
        self._buf[self._end : self._end + n] = samples
        self._end += n

    def push_value(self, value: object, count: int) -> None:
        """Append ``count`` copies of ``value`` without building an array first."""
        if count <= 0:
            return
        if self._end + count > len(self._buf):
            self._make_room(count)
        self._buf[self._end : self._end + count] = value
        self._end += count

    def peek(self, n: int) -> np.ndarray:
        """A view of the first ``n`` samples. Valid only until the next push."""
        if n > len(self):
            raise ValueError(f"asked for {n} samples, the FIFO holds {len(self)}")
        return self._buf[self._start : self._start + n]

    def pop(self, n: int) -> np.ndarray:
        """Remove the first ``n`` samples and return them as a view valid until the next push."""
        view = self.peek(n)
        self._start += n
        if self._start == self._end:
            self._start = self._end = 0
        return view

    def clear(self) -> None:
        """Forget every sample."""
        self._start = self._end = 0

    def _make_room(self, n: int) -> None:
        live = len(self)
        if live + n > len(self._buf):
            # Grow geometrically so a long burst costs amortised O(1) per sample.
            bigger = np.zeros(max(2 * len(self._buf), live + n), dtype=self._buf.dtype)
            bigger[:live] = self._buf[self._start : self._end]
            self._buf = bigger
        else:
            self._buf[:live] = self._buf[self._start : self._end]
        self._start, self._end = 0, live
