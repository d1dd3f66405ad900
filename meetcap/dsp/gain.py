"""Per-source gain in dB and mute, with short linear ramps so slider moves do not click."""

from __future__ import annotations

import math

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.units import db_to_gain, ms_to_samples
from meetcap.errors import ConfigError

GAIN_MAX_DB = 12.0
# At or below this a source is off: exact zeros, like mute. -60 dB is where a slider's
# bottom end is inaudible next to a normal source anyway.
GAIN_OFF_DB = -60.0
# 5 ms is short enough to feel instant and long enough to avoid "zipper" clicks
# (a 12 dB step over 80 samples at 16 kHz moves each sample by < 0.1 %).
DEFAULT_RAMP_MS = 5.0


def check_gain_db(gain_db: float) -> float:
    """Return ``gain_db`` if it is a valid source gain, else raise :class:`ConfigError`.

    Valid: ``-inf`` (off) up to +12 dB. Anything at or below -60 dB means off.
    """
    try:
        value = float(gain_db)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"a gain must be a number of dB, e.g. -6.0; got {gain_db!r}") from exc
    if math.isnan(value) or value > GAIN_MAX_DB:
        raise ConfigError(
            f"gain {gain_db!r} dB is out of range: use -inf (off) up to +{GAIN_MAX_DB:g} dB"
        )
    return value


class Gain:
    """Multiplies a 16 kHz block by a gain that the user can change at any time.

    ``process(block)`` returns a new float32 block (or the input itself at unity gain).
    Mute and gains at or below :data:`GAIN_OFF_DB` give exact zeros once the ramp ends.
    """

    def __init__(
        self,
        gain_db: float = 0.0,
        *,
        muted: bool = False,
        ramp_ms: float = DEFAULT_RAMP_MS,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        self._gain_db = check_gain_db(gain_db)
        self._muted = bool(muted)
        self._ramp_samples = max(1, ms_to_samples(ramp_ms, sample_rate_hz))
        self._current = self._target_linear()
        self._step = 0.0
        self._ramp_left = 0

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @property
    def muted(self) -> bool:
        return self._muted

    def set_gain_db(self, gain_db: float) -> None:
        """Change the gain; raises :class:`ConfigError` outside -inf..+12 dB."""
        self._gain_db = check_gain_db(gain_db)
        self._start_ramp()

    def set_muted(self, muted: bool) -> None:
        """Mute (exact zeros after the ramp) or unmute back to the current gain."""
        self._muted = bool(muted)
        self._start_ramp()

    def _target_linear(self) -> float:
        if self._muted or self._gain_db <= GAIN_OFF_DB:
            return 0.0
        return db_to_gain(self._gain_db)

    def _start_ramp(self) -> None:
        target = self._target_linear()
        if target == self._current:
            self._ramp_left = 0
            return
        self._step = (target - self._current) / self._ramp_samples
        self._ramp_left = self._ramp_samples

    def process(self, block: np.ndarray) -> np.ndarray:
        """Apply the gain to a 1-D float32 block."""
        n = len(block)
        if self._ramp_left == 0 or n == 0:
            return self._apply_steady(block)
        m = min(n, self._ramp_left)
        ramp = self._current + self._step * np.arange(1, m + 1, dtype=np.float64)
        out = np.empty(n, dtype=np.float32)
        out[:m] = block[:m] * ramp.astype(np.float32)
        self._ramp_left -= m
        if self._ramp_left == 0:
            # End exactly on the target so "off" really is 0.0, not 1e-17.
            self._current = self._target_linear()
            out[m:] = self._apply_steady(block[m:])
        else:
            self._current = float(ramp[-1])
        return out

    def _apply_steady(self, block: np.ndarray) -> np.ndarray:
        if self._current == 1.0:
            return block
        if self._current == 0.0:
            return np.zeros(len(block), dtype=np.float32)
        return block * np.float32(self._current)
