"""The echo score: how strongly the system audio (the speakers) reaches the microphone.

Both lanes sit on one 16 kHz timeline after the mixer, so whatever of the speakers'
sound the microphone picks up is the system lane, delayed (the speaker-to-mic path plus
the difference of the two devices' latencies, tens to a few hundred ms) and quieter.
Every ``UPDATE_S`` the estimator cross-correlates the last ``WINDOW_S`` of both lanes
over delays 0..``MAX_DELAY_MS`` and reads, at the strongest peak:

- ``delay_ms``: where the echo sits (the echo canceller aligns its reference with it);
- ``level_db``: the echo's level relative to the system audio (the least-squares gain
  of the delayed system lane in the mic lane, in dB): -15 dB is a laptop's speakers,
  below ~-45 dB nothing a person would hear;
- whether the peak stands out of the correlation's noise (``SIGNIFICANCE``): near-end
  speech and room noise do not correlate with the system audio, an echo does.

A window counts only when the system audio is playing (above ``FAR_ACTIVE_DBFS``);
while it is quiet the last verdict stands (nothing can be told). The verdict: "reaches
the mic" once a window holds a significant echo above ``AUDIBLE_DB``, "clean" once a
window of playing system audio holds none (after a found echo: ``CLEAN_AFTER_WINDOWS``
such windows in a row). With a 2 s window updated every 0.5 s the
word is there ~2 s after the system audio starts to play.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ

WINDOW_S = 2.0
UPDATE_S = 0.5
MAX_DELAY_MS = 400.0
FAR_ACTIVE_DBFS = -50.0  # RMS of the system lane over the window: something is playing
AUDIBLE_DB = -45.0  # echo level (relative to the system audio) below which it is harmless
SIGNIFICANCE = 8.0  # the peak over the median |correlation| across delays
# A found echo is "clean" again only after this many windows without one in a row (3 s
# of system audio playing): a window of a fading voice can miss a real echo, and the
# canceller in "auto" must not switch off and on with it (bench/echo_screenshot.py
# caught the word flipping).
CLEAN_AFTER_WINDOWS = 6
# An echo explains at least this share (correlation coefficient) of the microphone in a
# window, at the same delay (within STEADY_DELAY_MS) in two windows in a row: two
# different voices talking at once correlate at 0.05-0.15, at wandering delays
# (tests/audio/test_tracks_pulseaudio.py saw "auto" turn on for a clean mic before).
EXPLAINED_SHARE = 0.3
CLEAR_SHARE = 0.6  # explains this much: an echo at once (only the far end is talking)
STEADY_DELAY_MS = 2.0

DECIMATE = 4

REACHES_MIC = "reaches the mic"
CLEAN = "clean"
UNKNOWN = "not measured yet"


@dataclass(frozen=True, slots=True)
class EchoScore:
    """The latest reading: ``verdict`` is one of "reaches the mic", "clean", or "not
    measured yet" (no system audio played since the estimator started)."""

    verdict: str = UNKNOWN
    level_db: float = -math.inf
    delay_ms: float = 0.0

    @property
    def reaches_mic(self) -> bool:
        return self.verdict == REACHES_MIC


class EchoPathEstimator:
    """Feed both lanes block by block (:meth:`process`); read :attr:`score`."""

    def __init__(self, sample_rate_hz: int = SAMPLE_RATE_HZ) -> None:
        self._rate = sample_rate_hz
        self._window = int(WINDOW_S * sample_rate_hz)
        self._update = int(UPDATE_S * sample_rate_hz)
        self._max_delay = int(MAX_DELAY_MS * sample_rate_hz / 1000)
        # The far lane keeps max_delay more history: the echo of its oldest part. Blocks
        # are kept as they come and joined only when measured (twice a second): joining
        # a 2.4 s window on every 100 ms block cost ~5 ms of CPU a second.
        self._mic = np.zeros(self._window, np.float32)
        self._far = np.zeros(self._window + self._max_delay, np.float32)
        self._blocks: list[tuple[np.ndarray, np.ndarray]] = []
        self._filled = 0
        self._since_update = 0
        self._clean_windows = 0  # measured windows without an echo, in a row
        self._last_candidate_ms: float | None = None  # the last window's echo delay
        self.score = EchoScore()

    def process(self, mic: np.ndarray, far: np.ndarray) -> None:
        """One stretch of both lanes, the same length, aligned on the timeline."""
        n = len(mic)
        if n != len(far):
            raise ValueError(f"the lanes must be the same length, got {n} and {len(far)}")
        self._blocks.append((np.asarray(mic, np.float32), np.asarray(far, np.float32)))
        self._filled += n
        self._since_update += n
        if self._since_update >= self._update:
            self._since_update = 0
            self._join()
            if self._filled >= 2 * self._update:
                self._measure()

    def _join(self) -> None:
        mics = [self._mic, *(m for m, _ in self._blocks)]
        fars = [self._far, *(f for _, f in self._blocks)]
        self._blocks.clear()
        self._mic = np.concatenate(mics)[-len(self._mic):]
        self._far = np.concatenate(fars)[-len(self._far):]

    def _measure(self) -> None:
        recent_far = self._far[self._max_delay:]
        if not recent_far.any():
            # Digital silence (a meeting app between sentences): its RMS is 0, below the
            # threshold; found without the float64 copy, squares and mean (most of the
            # measurements on bench/pipeline.py's meeting audio).
            return
        recent_far = recent_far.astype(np.float64)
        far_rms = math.sqrt(float(np.mean(recent_far**2)))
        if far_rms <= 10 ** (FAR_ACTIVE_DBFS / 20):
            return  # nothing plays: nothing to tell; the last verdict stands
        # At 4 kHz (averages of DECIMATE samples): speech's energy is below 2 kHz, the
        # delay comes out to 0.25 ms (the canceller's filter has 20 ms of margin), and the
        # FFTs are 16x cheaper (at 16 kHz this cost ~18 ms of CPU a second).
        mic = _decimate(self._mic)
        far = _decimate(self._far)
        max_delay = self._max_delay // DECIMATE
        # corr[d] = sum_t mic[t] * far[max_delay + t - d], d = 0..max_delay: the mic
        # against the system lane d samples earlier (mic[t] pairs with far[max_delay + t]).
        size = correlation_size(len(mic), len(far), max_delay)
        cross = np.fft.irfft(np.fft.rfft(mic, size) * np.conj(np.fft.rfft(far, size)), size)
        # corr[d] = cross[(d - max_delay) mod size]: its last max_delay values, then cross[0].
        corr = np.concatenate((cross[size - max_delay :], cross[:1]))
        strength = np.abs(corr)
        peak = int(np.argmax(strength))
        magnitude = float(strength[peak])
        noise = float(np.median(strength)) + 1e-30
        delayed = far[max_delay - peak : len(far) - peak]
        energy = float(np.dot(delayed, delayed)) + 1e-30
        level_db = 20 * math.log10(max(magnitude / energy, 1e-12))
        delay_ms = peak * DECIMATE * 1000.0 / self._rate
        # How much of the microphone the delayed system audio explains (1: all of it).
        # Two people talking at once correlate a little at some delay; an echo a lot,
        # and always at the same delay.
        explained = magnitude / math.sqrt(energy * (float(np.dot(mic, mic)) + 1e-30))
        candidate = (magnitude / noise >= SIGNIFICANCE and level_db >= AUDIBLE_DB
                     and explained >= EXPLAINED_SHARE)
        steady = (self._last_candidate_ms is not None
                  and abs(delay_ms - self._last_candidate_ms) <= STEADY_DELAY_MS)
        self._last_candidate_ms = delay_ms if candidate else None
        if candidate and (steady or self.score.reaches_mic or explained >= CLEAR_SHARE):
            self._clean_windows = 0
            self.score = EchoScore(REACHES_MIC, level_db, delay_ms)
            return
        if level_db >= AUDIBLE_DB:
            # Not an echo here, but not proof of none: the person's voice may hide one
            # (double talk). Only a window where the system audio explains (almost)
            # nothing of the microphone counts as clean.
            return
        self._clean_windows += 1
        if self.score.reaches_mic and self._clean_windows < CLEAN_AFTER_WINDOWS:
            return  # one quiet window does not undo a found echo ("auto" would flap)
        self.score = EchoScore(CLEAN, level_db, delay_ms)


def correlation_size(mic_samples: int, far_samples: int, max_delay: int) -> int:
    """FFT size for the correlation above: the smallest 2^a 3^b 5^c that holds the far
    lane and the mic lane plus ``max_delay``.

    Only delays 0..max_delay are read; for those every product mic[t] * far[max_delay +
    t - d] indexes below that size, so no wrap-around of the circular correlation
    reaches them. The full linear correlation (a power of two over both lanes: 32,768
    here) gave the same values to rounding at 3.4x the FFT work (9,600 here): ~0.7 ms
    of CPU a second on bench/pipeline.py's meeting audio. tests/dsp/test_fast_paths.py
    compares the two.
    """
    size = max(far_samples, mic_samples + max_delay)
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


def _decimate(samples: np.ndarray) -> np.ndarray:
    """Averages of DECIMATE samples (the boxcar is anti-alias enough for a correlation)."""
    usable = len(samples) - len(samples) % DECIMATE
    wide = samples[:usable].astype(np.float64)
    # The same sums in the same order as reshape(-1, 4).mean(axis=1), bit for bit
    # (tests/dsp/test_fast_paths.py), at a tenth of the cost: numpy's reduction over a
    # 4-long axis pays its setup per row.
    total = wide[0::DECIMATE].copy()
    for phase in range(1, DECIMATE):
        total += wide[phase::DECIMATE]
    return total / DECIMATE
