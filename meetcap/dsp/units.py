"""Decibel and time conversions shared by the DSP stages.

Every level in meetcap is in dBFS: 0 dBFS is a float sample of magnitude 1.0 (int16
full scale). Silence reads as :data:`meetcap.levels.SILENCE_DBFS`, never ``-inf``, so
meters stay finite for JSON and arithmetic.
"""

from __future__ import annotations

import math

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.levels import SILENCE_DBFS

# Below this power (-120 dBFS) a level reads as the meter floor.
_FLOOR_POWER = 10.0 ** (SILENCE_DBFS / 10.0)


def db_to_gain(gain_db: float) -> float:
    """Linear amplitude factor for ``gain_db`` (``-inf`` gives 0.0)."""
    if gain_db == -math.inf:
        return 0.0
    return 10.0 ** (gain_db / 20.0)


def gain_to_db(gain: float) -> float:
    """Decibels of a linear amplitude factor, floored at ``SILENCE_DBFS``."""
    if gain <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 20.0 * math.log10(gain))


def amplitude_dbfs(amplitude: float) -> float:
    """dBFS of a peak amplitude, floored at ``SILENCE_DBFS``."""
    return gain_to_db(abs(amplitude))


def power_dbfs(mean_square: float) -> float:
    """dBFS of a mean-square value (RMS level), floored at ``SILENCE_DBFS``."""
    if mean_square <= _FLOOR_POWER:
        return SILENCE_DBFS
    return 10.0 * math.log10(mean_square)


def dbfs_to_power(level_dbfs: float) -> float:
    """Mean-square value of an RMS level in dBFS."""
    return 10.0 ** (level_dbfs / 10.0)


def ms_to_samples(duration_ms: float, rate_hz: float = SAMPLE_RATE_HZ) -> int:
    """Whole samples in ``duration_ms`` at ``rate_hz`` (rounded to nearest)."""
    return int(round(duration_ms * rate_hz / 1000.0))


def s_to_samples(duration_s: float, rate_hz: float = SAMPLE_RATE_HZ) -> int:
    """Whole samples in ``duration_s`` at ``rate_hz`` (rounded to nearest)."""
    return int(round(duration_s * rate_hz))
