"""What a level meter shows between the pipeline's updates (no Qt here).

The pipeline publishes levels ten times a second (one 100 ms meter window per frame);
a meter repaints at display rate (30-60 fps). :class:`MeterBallistics` turns the
stepwise values into motion people read easily, after the way broadcast meters and
Friture behave:

* the RMS bar rises at once and falls smoothly (exponential release in dB), so
  speech reads as a steady bar instead of a flicker;
* the peak hold marks the highest peak, stays there ``peak_hold_s``, then falls with
  increasing speed (like something dropping), so a single loud word stays visible
  long enough to be noticed and then clears quickly;
* the clip indicator latches on the first clip and stays lit until a person clears it
  (or a new session starts): a clip that lasted one frame must not go unseen.

Time is passed in (``now_s``, seconds on any monotonic clock), so the behaviour is the
same at any frame rate and tests are exact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from meetcap.levels import SILENCE_DBFS

# The bottom of the meter scale: quieter than this shows as an empty bar.
METER_FLOOR_DBFS = -70.0
# Labelled ticks under the bar.
SCALE_TICKS_DBFS = (-60, -40, -30, -20, -12, -6, -3, 0)
# A post-gain peak this close to full scale counts as a clip even when no raw sample hit
# the rail: the gain pushed it there, and the mix's limiter will have to squash it.
CLIP_DBFS = -0.1

# IEC 60268-18 style deflection: (dB at the segment start, fraction there, fraction per dB).
# More of the bar goes to the top 20 dB, where speech and the decisions about gain live.
_IEC_SEGMENTS = (
    (-70.0, 0.000, 0.0025),
    (-60.0, 0.025, 0.005),
    (-50.0, 0.075, 0.0075),
    (-40.0, 0.150, 0.015),
    (-30.0, 0.300, 0.020),
    (-20.0, 0.500, 0.025),
)


def dbfs_to_fraction(dbfs: float) -> float:
    """How much of the meter's length a level fills, 0.0 (floor) to 1.0 (0 dBFS).

    Piecewise linear in dB (IEC 60268-18 style): -20 dBFS sits at half the length,
    -40 at 15 %, -60 at 2.5 %; anything at or above 0 dBFS fills the meter.
    """
    if math.isnan(dbfs) or dbfs <= METER_FLOOR_DBFS:
        return 0.0
    if dbfs >= 0.0:
        return 1.0
    for start_db, start_fraction, per_db in reversed(_IEC_SEGMENTS):
        if dbfs >= start_db:
            return start_fraction + (dbfs - start_db) * per_db
    return 0.0  # unreachable: the first segment starts at the floor


@dataclass(frozen=True)
class BallisticsConfig:
    """Timing of a meter, in seconds (and dB per second squared for the peak fall)."""

    # RMS rise time constant: 0 = at once. The pipeline's 100 ms meter window already
    # averages; smoothing the rise again would only make the bar lag the voice.
    attack_s: float = 0.0
    release_s: float = 0.25  # RMS fall time constant (in dB): a smooth, readable decay
    peak_hold_s: float = 1.5  # how long the peak mark stays put
    peak_fall_db_s2: float = 40.0  # then it falls with this acceleration


class MeterBallistics:
    """The displayed state of one meter: call :meth:`feed` with each new snapshot and
    :meth:`advance` once per repaint; read ``rms_dbfs``, ``peak_dbfs``,
    ``peak_hold_dbfs`` and ``clipped``."""

    def __init__(self, config: BallisticsConfig | None = None) -> None:
        self.config = config or BallisticsConfig()
        self.reset()

    def reset(self) -> None:
        """Back to an empty meter with the clip light off (a new session starts)."""
        self.rms_dbfs = SILENCE_DBFS
        self.peak_dbfs = SILENCE_DBFS
        self.peak_hold_dbfs = SILENCE_DBFS
        self.clipped = False
        self._target_rms = SILENCE_DBFS
        self._target_peak = SILENCE_DBFS
        self._clip_count_seen: int | None = None
        self._hold_until: float | None = None
        self._fall_speed_db_s = 0.0
        self._last_s: float | None = None

    def clear_clip(self) -> None:
        """Turn the latched clip light off (a person clicked it)."""
        self.clipped = False

    def feed(self, rms_dbfs: float, peak_dbfs: float, clip_count: int, now_s: float) -> None:
        """Take the latest snapshot. ``clip_count`` is the source's running total: any
        increase (or a peak at full scale) lights the clip indicator until cleared."""
        self._target_rms = _finite(rms_dbfs)
        self._target_peak = _finite(peak_dbfs)
        if self._clip_count_seen is not None and clip_count > self._clip_count_seen:
            self.clipped = True
        self._clip_count_seen = clip_count
        if self._target_peak >= CLIP_DBFS:
            self.clipped = True
        if self._target_peak >= self.peak_hold_dbfs:
            self.peak_hold_dbfs = self._target_peak
            self._hold_until = now_s + self.config.peak_hold_s
            self._fall_speed_db_s = 0.0

    def advance(self, now_s: float) -> bool:
        """Move the display on to ``now_s``; True when anything visible changed."""
        before = (self.rms_dbfs, self.peak_dbfs, self.peak_hold_dbfs, self.clipped)
        dt = 0.0 if self._last_s is None else max(0.0, now_s - self._last_s)
        self._last_s = now_s
        self.rms_dbfs = self._approach(self.rms_dbfs, self._target_rms, dt)
        # The instantaneous peak follows the same ballistics as the bar it overlays.
        self.peak_dbfs = self._approach(self.peak_dbfs, self._target_peak, dt)
        self._advance_hold(now_s, dt)
        after = (self.rms_dbfs, self.peak_dbfs, self.peak_hold_dbfs, self.clipped)
        # Sub-0.05 dB moves are invisible (well under a pixel): skip the repaint.
        return any(abs(a - b) > 0.05 for a, b in zip(after[:3], before[:3], strict=True)) or (
            after[3] != before[3]
        )

    def _approach(self, shown: float, target: float, dt: float) -> float:
        if dt <= 0.0:
            return shown
        tau = self.config.attack_s if target >= shown else self.config.release_s
        if tau <= 0.0:
            return target
        moved = shown + (target - shown) * (1.0 - math.exp(-dt / tau))
        # Within 0.01 dB, or both below the floor (nothing shows): arrive, so an idle
        # meter stops asking for repaints.
        if abs(moved - target) < 0.01 or (
            moved <= METER_FLOOR_DBFS and target <= METER_FLOOR_DBFS
        ):
            return target
        return moved

    def _advance_hold(self, now_s: float, dt: float) -> None:
        if self._hold_until is None or now_s < self._hold_until:
            return
        self._fall_speed_db_s += self.config.peak_fall_db_s2 * dt
        fallen = self.peak_hold_dbfs - self._fall_speed_db_s * dt
        landing = self._target_peak
        if fallen > landing and fallen > METER_FLOOR_DBFS:
            self.peak_hold_dbfs = fallen
            return
        self._fall_speed_db_s = 0.0
        if landing > METER_FLOOR_DBFS:
            # Fell onto the current peak: it becomes the held peak (as in Friture).
            self.peak_hold_dbfs = landing
            self._hold_until = now_s + self.config.peak_hold_s
        else:
            self.peak_hold_dbfs = SILENCE_DBFS
            self._hold_until = None


def _finite(dbfs: float) -> float:
    if math.isnan(dbfs) or dbfs < SILENCE_DBFS:
        return SILENCE_DBFS
    return dbfs
