"""Loudness normalisation of the mix: a slow AGC followed by a look-ahead peak limiter.

- :class:`Agc` brings speech toward ``target_dbfs`` (-20 dBFS RMS) slowly (3 dB/s up,
  10 dB/s down) within ``min_gain_db``..``max_gain_db`` (-10..+20 dB). It measures the
  level only over 10 ms blocks louder than ``gate_dbfs`` (-50 dBFS), so silence and a
  quiet noise floor never pull the gain up ("pumping"): during a pause the gain holds.
- :class:`Limiter` guarantees ``|output| <= ceiling`` (-1 dBFS) for every sample, so the
  int16 conversion never clips whatever the gains and the sum did. It looks 5 ms ahead
  (the output is delayed by 79 samples), fades the gain down over those 5 ms before a
  peak, holds it for 20 ms and fades back up over 5 ms. Below the ceiling it is an exact
  (delayed) pass-through.

:class:`Normalizer` chains them. Switching normalisation off (``enabled = False``) glides
the AGC back to unity gain; the limiter stays on because the alternative for a hot mix is
hard clipping, and it never touches audio below -1 dBFS.
"""

from __future__ import annotations

import math

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.units import db_to_gain, dbfs_to_power, ms_to_samples

DEFAULT_TARGET_DBFS = -20.0
DEFAULT_MAX_GAIN_DB = 20.0
DEFAULT_MIN_GAIN_DB = -10.0
DEFAULT_GATE_DBFS = -50.0
DEFAULT_CEILING_DBFS = -1.0


def sliding_min(values: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = min(values[i : i + width])`` for every full window, in O(n).

    The van Herk / Gil-Werman method: prefix and suffix minima inside blocks of ``width``;
    any window spans at most two blocks, so two lookups give its minimum.
    """
    n = len(values)
    if width <= 1:
        return values.copy()
    blocks = -(-n // width)
    padded = np.full(blocks * width, np.inf)
    padded[:n] = values
    grid = padded.reshape(blocks, width)
    prefix = np.minimum.accumulate(grid, axis=1).ravel()
    suffix = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    count = n - width + 1
    return np.minimum(suffix[:count], prefix[width - 1 : width - 1 + count])


class Limiter:
    """Look-ahead peak limiter: every output sample is within +-ceiling, with smooth gain.

    For each sample n the needed gain is r[n] = min(1, ceiling / |x[n]|). The applied gain
    is g[n] = mean over k in [n-L+1, n] of m[k], with m[k] = min r[k-H .. k+L-1]. Each of
    those windows contains n, so g[n] <= r[n]: the ceiling holds exactly, while g moves
    only in straight ramps of L samples. The output is the input delayed by L - 1 samples.
    """

    def __init__(
        self,
        ceiling_dbfs: float = DEFAULT_CEILING_DBFS,
        *,
        lookahead_ms: float = 5.0,
        hold_ms: float = 20.0,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        if ceiling_dbfs > 0:
            raise ValueError(f"the limiter ceiling must be at or below 0 dBFS, got {ceiling_dbfs}")
        self.ceiling = db_to_gain(ceiling_dbfs)
        self._ramp = max(1, ms_to_samples(lookahead_ms, sample_rate_hz))
        self._hold = max(0, ms_to_samples(hold_ms, sample_rate_hz))
        self.latency_samples = self._ramp - 1
        self._pending = np.zeros(self.latency_samples, dtype=np.float32)
        self._history = np.ones(self._hold + 2 * self._ramp - 2)  # recent needed gains
        self._history_is_unity = True

    def process(self, block: np.ndarray) -> np.ndarray:
        """Limit a 1-D float32 block; returns as many samples, ``latency_samples`` late."""
        n = len(block)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        joined = np.concatenate([self._pending, block])
        out = joined[:n]
        self._pending = joined[n:]
        if self._history_is_unity and max(float(block.max()), -float(block.min())) <= self.ceiling:
            return out  # the common case: nothing near full scale, nothing to do
        magnitude = np.abs(block)
        needed = np.ones(n)
        hot = magnitude > self.ceiling
        needed[hot] = self.ceiling / magnitude[hot]
        needed_all = np.concatenate([self._history, needed])
        floor = sliding_min(needed_all, self._hold + self._ramp)
        sums = np.concatenate([[0.0], np.cumsum(floor)])
        gain = (sums[self._ramp :] - sums[: -self._ramp]) / self._ramp
        self._history = needed_all[len(needed_all) - len(self._history) :]
        self._history_is_unity = bool(self._history.min() >= 1.0)
        return (out * gain).astype(np.float32)


class Agc:
    """Slow automatic gain control toward a target speech level, gated against noise.

    The gain changes only at the end of each 10 ms block and by at most
    ``up_db_per_s`` / ``down_db_per_s`` per second, so steps are < 0.1 dB and inaudible.
    """

    def __init__(
        self,
        *,
        target_dbfs: float = DEFAULT_TARGET_DBFS,
        max_gain_db: float = DEFAULT_MAX_GAIN_DB,
        min_gain_db: float = DEFAULT_MIN_GAIN_DB,
        gate_dbfs: float = DEFAULT_GATE_DBFS,
        up_db_per_s: float = 3.0,
        down_db_per_s: float = 10.0,
        bypass_db_per_s: float = 40.0,
        level_time_s: float = 1.0,
        block_ms: float = 10.0,
        enabled: bool = True,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        self.target_dbfs = target_dbfs
        self.max_gain_db = max_gain_db
        self.min_gain_db = min_gain_db
        self.enabled = enabled
        self._gate_power = dbfs_to_power(gate_dbfs)
        self._block = max(1, ms_to_samples(block_ms, sample_rate_hz))
        block_s = self._block / sample_rate_hz
        self._up_step = up_db_per_s * block_s
        self._down_step = down_db_per_s * block_s
        self._bypass_step = bypass_db_per_s * block_s
        self._level_alpha = 1.0 - math.exp(-block_s / level_time_s)
        self._level_power = dbfs_to_power(target_dbfs)  # start at unity gain
        self.gain_db = 0.0
        self._fill = 0
        self._fill_sum_sq = 0.0

    def process(self, block: np.ndarray) -> np.ndarray:
        """Apply the gain to a 1-D float32 block; same length, no delay."""
        n = len(block)
        if n == 0:
            return block
        b = self._block
        if self._fill == 0 and n % b == 0:
            return self._process_whole_blocks(block)
        head = min(n, b - self._fill)
        full = (n - head) // b
        tail = n - head - full * b
        lengths = [head] + [b] * full + ([tail] if tail else [])
        gains = [self.gain_db]
        head_sum_sq = self._fill_sum_sq + float(np.dot(block[:head], block[:head]))
        if self._fill + head == b:
            powers = [head_sum_sq / b]
            if full:
                grid = block[head : head + full * b].reshape(full, b)
                powers.extend((np.einsum("ij,ij->i", grid, grid) / b).tolist())
            for power in powers:
                gains.append(self._update(power))
            self._fill = tail
            self._fill_sum_sq = float(np.dot(block[n - tail :], block[n - tail :]))
        else:
            self._fill += head
            self._fill_sum_sq = head_sum_sq
        gains = gains[: len(lengths)]  # the gain set by the last complete block starts the tail
        if all(g == 0.0 for g in gains):
            return block
        if len(gains) == 1:
            return block * np.float32(10.0 ** (gains[0] / 20.0))
        linear = np.power(10.0, np.asarray(gains) / 20.0).astype(np.float32)
        return block * np.repeat(linear, lengths)

    def _process_whole_blocks(self, block: np.ndarray) -> np.ndarray:
        """The chain's case: whole analysis blocks, so one gain per row of a grid."""
        grid = block.reshape(-1, self._block)
        powers = np.einsum("ij,ij->i", grid, grid) / self._block
        gains = [self.gain_db]
        for power in powers.tolist()[:-1]:
            gains.append(self._update(power))
        self._update(float(powers[-1]))  # sets the gain the next block starts with
        if all(g == 0.0 for g in gains):
            return block
        linear = np.power(10.0, np.asarray(gains) / 20.0).astype(np.float32)
        return (grid * linear[:, None]).ravel()

    def _update(self, power: float) -> float:
        if self.enabled:
            if power >= self._gate_power:
                self._level_power += self._level_alpha * (power - self._level_power)
            # The level never drops below the gate, so the log is always defined.
            wanted = self.target_dbfs - 10.0 * math.log10(self._level_power)
            wanted = min(self.max_gain_db, max(self.min_gain_db, wanted))
            up, down = self._up_step, self._down_step
        else:
            wanted = 0.0
            up = down = self._bypass_step
        if wanted > self.gain_db:
            self.gain_db = min(wanted, self.gain_db + up)
        else:
            self.gain_db = max(wanted, self.gain_db - down)
        return self.gain_db


class Normalizer:
    """The mix's loudness stage: :class:`Agc` (switchable) then :class:`Limiter` (always).

    ``process(block)`` returns the same number of samples, ``latency_samples`` late.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        target_dbfs: float = DEFAULT_TARGET_DBFS,
        max_gain_db: float = DEFAULT_MAX_GAIN_DB,
        gate_dbfs: float = DEFAULT_GATE_DBFS,
        ceiling_dbfs: float = DEFAULT_CEILING_DBFS,
        sample_rate_hz: int = SAMPLE_RATE_HZ,
    ) -> None:
        self.agc = Agc(
            target_dbfs=target_dbfs,
            max_gain_db=max_gain_db,
            gate_dbfs=gate_dbfs,
            enabled=enabled,
            sample_rate_hz=sample_rate_hz,
        )
        self.limiter = Limiter(ceiling_dbfs, sample_rate_hz=sample_rate_hz)
        self.latency_samples = self.limiter.latency_samples

    @property
    def enabled(self) -> bool:
        return self.agc.enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self.agc.enabled = bool(value)

    @property
    def gain_db(self) -> float:
        """The AGC's current gain (the limiter's momentary reduction is not included)."""
        return self.agc.gain_db

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.limiter.process(self.agc.process(block))
