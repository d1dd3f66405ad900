"""Peak and RMS meters over fixed windows, and clip counting on raw device samples.

Meters work on fixed windows of the 16 kHz timeline (100 ms by default, one frame),
not on whatever block size the caller happens to render, so the numbers a user sees do
not depend on the worker's timing.
"""

from __future__ import annotations

import numpy as np

from meetcap.constants import FRAME_MS, SAMPLE_RATE_HZ
from meetcap.dsp.units import amplitude_dbfs, ms_to_samples, power_dbfs
from meetcap.levels import SILENCE_DBFS

METER_WINDOW_MS = FRAME_MS
# A float sample at or beyond the largest int16 value (32767/32768 = -0.0003 dBFS) is
# clipped: that is what a 16-bit converter at its rail delivers through PortAudio.
CLIP_LEVEL = 32767.0 / 32768.0


def count_clips(block: np.ndarray) -> int:
    """Number of samples (over all channels) at or beyond full scale in a raw device block.

    Cheap on clean input: one max and one min, and a full count only when they hit the rail.
    """
    if block.size == 0:
        return 0
    if block.max() < CLIP_LEVEL and block.min() > -CLIP_LEVEL:
        return 0
    return int(np.count_nonzero(np.abs(block) >= CLIP_LEVEL))


_NO_WINDOWS = np.zeros(0, dtype=np.float64)
_NO_WINDOWS.flags.writeable = False


class WindowStats:
    """Cuts a stream into fixed windows and reports mean square and peak of each.

    ``feed(block)`` returns ``(mean_squares, peaks)`` for the windows completed by this
    block (possibly none); a partial window waits in a buffer for the next call. Blocks
    shorter than a window (the usual render) cost one copy; the statistics are computed
    once per window.
    """

    def __init__(self, window_samples: int) -> None:
        if window_samples < 1:
            raise ValueError(f"a window holds at least one sample, got {window_samples}")
        self.window_samples = window_samples
        self._buffer = np.zeros(window_samples, dtype=np.float32)
        self._fill = 0

    def reset(self) -> None:
        self._fill = 0

    def feed(
        self, block: np.ndarray, *, with_peaks: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """``with_peaks=False``: the peaks come back empty, not computed (a caller that
        needs only the mean squares, such as HealthTracker, saves two reductions)."""
        w = self.window_samples
        n = len(block)
        fill = self._fill
        if fill + n < w:  # the common case: the block only extends the open window
            self._buffer[fill : fill + n] = block
            self._fill = fill + n
            return _NO_WINDOWS, _NO_WINDOWS
        if fill == 0 and n == w:  # exactly one window (the chain works in 100 ms units)
            mean_square = float(np.dot(block, block)) / w
            if not with_peaks:
                return np.array([mean_square]), _NO_WINDOWS
            peak = max(float(block.max()), -float(block.min()))
            return np.array([mean_square]), np.array([peak])
        head = w - fill
        self._buffer[fill:] = block[:head]
        rest = block[head:]
        full = len(rest) // w
        grid = self._buffer[None, :]
        if full:
            grid = np.concatenate([grid, rest[: full * w].reshape(full, w)])
        grid = grid.astype(np.float64)
        mean_squares = np.einsum("ij,ij->i", grid, grid) / w
        peaks = np.maximum(grid.max(axis=1), -grid.min(axis=1)) if with_peaks else _NO_WINDOWS
        tail = rest[full * w :]
        self._buffer[: len(tail)] = tail
        self._fill = len(tail)
        return mean_squares, peaks


class LevelMeter:
    """Peak and RMS in dBFS of the latest complete meter window of a 16 kHz stream.

    Call :meth:`process` with every block; read :attr:`peak_dbfs` and :attr:`rms_dbfs`
    whenever a display wants them.
    """

    def __init__(self, window_ms: float = METER_WINDOW_MS, sample_rate_hz: int = SAMPLE_RATE_HZ):
        self._windows = WindowStats(ms_to_samples(window_ms, sample_rate_hz))
        self.peak_dbfs = SILENCE_DBFS
        self.rms_dbfs = SILENCE_DBFS

    def reset(self) -> None:
        """Back to the floor (a stopped source shows no level)."""
        self._windows.reset()
        self.peak_dbfs = SILENCE_DBFS
        self.rms_dbfs = SILENCE_DBFS

    def process(self, block: np.ndarray) -> np.ndarray:
        """Meter ``block``; returns the mean squares of the windows it completed."""
        mean_squares, peaks = self._windows.feed(block)
        if len(mean_squares):
            self.rms_dbfs = power_dbfs(float(mean_squares[-1]))
            self.peak_dbfs = amplitude_dbfs(float(peaks[-1]))
        return mean_squares
