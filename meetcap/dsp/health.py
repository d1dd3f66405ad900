"""Health of one source (or of the mix): muted, silent, clipping, overrun, lost, stopped.

Time is counted in samples of the 16 kHz timeline the tracker has observed, never the
wall clock, so the same audio always gives the same verdicts (and tests are exact).

Rules (most urgent first, as in :class:`meetcap.levels.Health`):

- LOST: the capture layer said the device vanished (:meth:`HealthTracker.mark_lost`).
- STOPPED: the source is not capturing (never started, or stopped).
- MUTED: the device delivered exact digital zeros for ``muted_after_s`` (1 s): what an
  OS or hardware mute produces. Reported with the first block that completes 1 s of
  zeros: through :class:`meetcap.dsp.chain.MixChain` (100 ms units behind a 100 ms
  mixer margin) about 1.2 s after the zeros start, well within 2 s. Samples the device
  did not deliver at all (the mixer filled them) neither extend nor break a run of
  zeros: they say nothing about the device's mute.
- SILENT: every 100 ms window was below ``silence_dbfs`` (-60 dBFS RMS) for
  ``silent_after_s`` (10 s). Undelivered stretches count as silence here: a loopback
  that sends nothing is silent to the listener.
- CLIPPING: a raw device sample hit full scale in the last ``clip_hold_s`` (1 s).
- OVERRUN: the capture callback lost blocks in the last ``overrun_hold_s`` (5 s).
- OK otherwise.
"""

from __future__ import annotations

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.meter import METER_WINDOW_MS, WindowStats
from meetcap.dsp.units import dbfs_to_power, ms_to_samples, s_to_samples
from meetcap.levels import SILENCE_DBFS, Health, SourceLevels

DEFAULT_SILENT_AFTER_S = 10.0
DEFAULT_SILENCE_DBFS = -60.0
DEFAULT_MUTED_AFTER_S = 1.0
DEFAULT_CLIP_HOLD_S = 1.0
DEFAULT_OVERRUN_HOLD_S = 5.0


class HealthTracker:
    """Turns a source's observed samples and capture events into a :class:`Health`.

    The owner calls :meth:`start` when capture (re)opens, :meth:`observe` with the
    source's pre-gain 16 kHz contribution to every rendered block, :meth:`note_clips`
    with the clip count of every raw device block, and :meth:`snapshot` to publish.
    Clip and overrun totals survive a restart of the source (totals since capture began).
    """

    def __init__(
        self,
        source: str,
        *,
        silent_after_s: float = DEFAULT_SILENT_AFTER_S,
        silence_dbfs: float = DEFAULT_SILENCE_DBFS,
        muted_after_s: float = DEFAULT_MUTED_AFTER_S,
        clip_hold_s: float = DEFAULT_CLIP_HOLD_S,
        overrun_hold_s: float = DEFAULT_OVERRUN_HOLD_S,
        window_ms: float = METER_WINDOW_MS,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        if silent_after_s <= 0 or muted_after_s <= 0:
            raise ValueError("silent_after_s and muted_after_s must be positive seconds")
        self.source = source
        self._rate = sample_rate_hz
        self._silent_after = s_to_samples(silent_after_s, sample_rate_hz)
        self._silence_power = dbfs_to_power(silence_dbfs)
        self._muted_after = s_to_samples(muted_after_s, sample_rate_hz)
        self._clip_hold = s_to_samples(clip_hold_s, sample_rate_hz)
        self._overrun_hold = s_to_samples(overrun_hold_s, sample_rate_hz)
        self._window = ms_to_samples(window_ms, sample_rate_hz)
        self._windows = WindowStats(self._window)
        self.now = 0  # samples observed: this tracker's clock
        self.active = False
        self.lost = False
        self._lost_at = 0
        self.clip_count = 0
        self._last_clip_at: int | None = None
        self._overruns_before = 0  # totals of earlier openings of the source
        self._overruns_stream = 0  # the capture layer's count for the current opening
        self._last_overrun_at: int | None = None
        self._zero_run = 0
        self._silent_run = 0
        self._state = Health.STOPPED
        self._since = 0

    # --- capture events -------------------------------------------------------------

    def start(self) -> None:
        """The source (re)opened: clear LOST and the runs; keep the totals."""
        self.active = True
        self.lost = False
        self._overruns_before += self._overruns_stream
        self._overruns_stream = 0
        self._zero_run = 0
        self._silent_run = 0
        self._windows.reset()

    def stop(self) -> None:
        """The source stopped capturing (health STOPPED unless it was lost)."""
        self.active = False

    def mark_lost(self) -> None:
        """The device vanished; health reads LOST until :meth:`start` is called again."""
        if not self.lost:
            self.lost = True
            self._lost_at = self.now

    def note_clips(self, count: int) -> None:
        """Add the clip count of one raw device block."""
        if count > 0:
            self.clip_count += count
            self._last_clip_at = self.now

    def set_overruns(self, count: int) -> None:
        """The capture layer's running overrun total for the current opening of the source."""
        if count < 0:
            raise ValueError(f"an overrun count cannot be negative, got {count}")
        if count > self._overruns_stream:
            self._last_overrun_at = self.now
        self._overruns_stream = count

    @property
    def overruns(self) -> int:
        return self._overruns_before + self._overruns_stream

    # --- signal ---------------------------------------------------------------------

    def observe(
        self,
        block: np.ndarray,
        delivered: slice | None = None,
        window_mean_squares: np.ndarray | None = None,
    ) -> None:
        """Account for one rendered block of this source (pre-gain, 16 kHz).

        ``delivered`` marks the part that really came from the device; the rest of
        ``block`` was filled with zeros because the device delivered nothing.
        ``window_mean_squares``: pass what a :class:`LevelMeter` fed with exactly the same
        stream returned for this block, to save computing it twice.
        """
        self.now += len(block)
        if window_mean_squares is None:
            window_mean_squares, _ = self._windows.feed(block, with_peaks=False)
        mean_squares = window_mean_squares
        k = len(mean_squares)
        if k == 1:  # the chain's case: one 100 ms window per unit
            if mean_squares[0] >= self._silence_power:
                self._silent_run = 0
            else:
                self._silent_run += self._window
        elif k:
            loud = np.flatnonzero(mean_squares >= self._silence_power)
            if len(loud):
                self._silent_run = (k - 1 - int(loud[-1])) * self._window
            else:
                self._silent_run += k * self._window
        real = block if delivered is None else block[delivered]
        if len(real):
            if real[-1] != 0.0:  # live audio: settled without scanning the block
                self._zero_run = 0
                return
            nonzero = np.flatnonzero(real)
            if len(nonzero):
                self._zero_run = len(real) - 1 - int(nonzero[-1])
            else:
                self._zero_run += len(real)

    def idle(self, n_samples: int) -> None:
        """Let ``n_samples`` of timeline pass while the source is stopped or lost."""
        self.now += n_samples

    # --- verdict --------------------------------------------------------------------

    def health(self) -> Health:
        """The current verdict (see the module docstring for the rules)."""
        if self.lost:
            return Health.LOST
        if not self.active:
            return Health.STOPPED
        if self._zero_run >= self._muted_after:
            return Health.MUTED
        if self._silent_run >= self._silent_after:
            return Health.SILENT
        if self._last_clip_at is not None and self.now - self._last_clip_at < self._clip_hold:
            return Health.CLIPPING
        if (
            self._last_overrun_at is not None
            and self.now - self._last_overrun_at < self._overrun_hold
        ):
            return Health.OVERRUN
        return Health.OK

    def snapshot(
        self,
        peak_dbfs: float = SILENCE_DBFS,
        rms_dbfs: float = SILENCE_DBFS,
        speech: bool = False,
        **extra: object,
    ) -> SourceLevels:
        """Build the published levels; the meter values come from the caller's meter.
        ``extra``: more SourceLevels fields (echo score, drift correction), set at once
        rather than by a dataclasses.replace per field group (the worker builds these
        10 times a second)."""
        health = self.health()
        if health != self._state:
            self._state = health
            self._since = self.now
        if health is Health.MUTED:
            problem_samples = self._zero_run  # the problem began when the zeros began
        elif health is Health.SILENT:
            problem_samples = self._silent_run
        elif health is Health.LOST:
            problem_samples = self.now - self._lost_at
        else:
            problem_samples = self.now - self._since
        if not self.active:
            peak_dbfs = rms_dbfs = SILENCE_DBFS
        return SourceLevels(
            source=self.source,
            peak_dbfs=peak_dbfs,
            rms_dbfs=rms_dbfs,
            clip_count=self.clip_count,
            overruns=self.overruns,
            health=health,
            problem_for_s=problem_samples / self._rate,
            speech=speech,
            **extra,  # type: ignore[arg-type]
        )
