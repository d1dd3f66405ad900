"""Which 32 ms windows cannot hold speech, so the Silero VAD need not run on them.

The VAD bounds the chain's speed (each window is one ~0.1 ms model run, a whole lane of
them ~3 % of a core), and in a meeting much of each lane is digital silence (a meeting
app's output between sentences, a muted mic) or a steady room noise far below any voice.
:class:`VadGate` marks such windows *quiet*; :class:`meetcap.dsp.vad.VadStream` skips a
quiet window only when skipping cannot change a verdict:

- **Digital silence / near-silence**: the window's peak is below ``silence_peak_dbfs``
  (-70 dBFS). Measured on espeak-ng speech scaled down: at -60 dBFS peak Silero still
  calls 31 % of the windows speech, at -70 dBFS its highest probability was 0.03.
- **Steady noise far below speech**: the window's energy is within ``steady_db`` (3 dB)
  of the tracked noise floor, that floor is below ``floor_max_dbfs`` (-45 dBFS RMS, at
  least 25 dB under the -20 dBFS the normaliser brings speech to), and the window has no
  onset inside it (its four 8 ms quarters within ``steady_db`` of each other). A voice
  that does not lift a window 3 dB over the noise is below the noise.

The stream adds the conditions that make a skip safe (see VadStream): it is not inside
a speech segment or a pending start, the last probability it computed was far below the
threshold, and the next ``LOOKAHEAD_WINDOWS`` windows are quiet too. So the model always
runs on the windows just before anything that is not quiet, with its own verdicts: they
bring its recurrent state back to where a model that never skipped would be (Silero's
state forgets within a few windows). tests/dsp/test_vad_gate.py checks that the verdicts
with and without the gate are identical, window for window, on recorded speech with
silences and room noise between the sentences.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from meetcap.dsp.units import dbfs_to_power

DEFAULT_SILENCE_PEAK_DBFS = -70.0
DEFAULT_FLOOR_MAX_DBFS = -55.0
DEFAULT_STEADY_DB = 3.0
# The floor is the quietest of the last 3 s of windows that are not near-silent: it
# follows a room that gets louder within 3 s, a sentence never lifts it above the pauses
# inside it, and digital silence (a muted mic) does not drag it to zero.
FLOOR_WINDOWS = 94
# After this many idle windows (quiet, no speech under way) the model's state restarts
# before the next window that is not idle, from the REPLAY_WINDOWS windows before it, so
# that the model's work inside the idle run is never needed: 160 ms and 128 ms.
RESYNC_AFTER_WINDOWS = 5
REPLAY_WINDOWS = 4
# How far the stream looks ahead to know whether an idle run will be that long.
LOOKAHEAD_WINDOWS = RESYNC_AFTER_WINDOWS - 1


class VadGate:
    """Per-window "cannot be speech" flags for one continuous 16 kHz stream.

    Call :meth:`quiet` on every window of the stream exactly once, in order (the noise
    floor it tracks depends on all of them); :meth:`reset` for a new stream.
    """

    def __init__(
        self,
        *,
        silence_peak_dbfs: float = DEFAULT_SILENCE_PEAK_DBFS,
        floor_max_dbfs: float = DEFAULT_FLOOR_MAX_DBFS,
        steady_db: float = DEFAULT_STEADY_DB,
    ) -> None:
        self._silence_peak = float(10 ** (silence_peak_dbfs / 20))
        self._floor_max = dbfs_to_power(floor_max_dbfs)
        self._steady = 10 ** (steady_db / 10)
        self.reset()

    def reset(self) -> None:
        self._recent: deque[float] = deque(maxlen=FLOOR_WINDOWS)  # mean squares
        self._floor = math.inf  # min(self._recent), kept as windows come and go

    def quiet(self, windows: np.ndarray) -> np.ndarray:
        """One flag per row of ``windows`` ((n, 512) float32): True where it cannot be speech."""
        n = windows.shape[0]
        if n == 0:
            return np.zeros(0, dtype=bool)
        peaks = np.abs(windows).max(axis=1)
        quarters = np.einsum("ijk,ijk->ij", *(windows.reshape(n, 4, -1),) * 2) / (
            windows.shape[1] // 4
        )
        powers = quarters.mean(axis=1)
        flags = peaks < self._silence_peak
        steady = quarters.max(axis=1) <= self._steady * np.maximum(quarters.min(axis=1), 1e-20)
        recent, floor = self._recent, self._floor
        for i in range(n):  # the floor is sequential; ~31 windows a second
            if flags[i]:
                continue  # near-silent: quiet, and not part of the noise floor
            power = float(powers[i])
            # min(recent) only when the window leaving was the floor; else one compare.
            leaving = recent[0] if len(recent) == FLOOR_WINDOWS else math.inf
            recent.append(power)
            floor = min(recent) if leaving == floor else min(floor, power)
            if steady[i] and floor <= self._floor_max and power <= self._steady * floor:
                flags[i] = True
        self._floor = floor
        return flags
