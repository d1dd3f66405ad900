"""Noise suppression of the mic lane at a fixed delay, on or off, switchable mid-stream.

WebRTC's noise suppressor (pywebrtc-audio) delivers ``ns_delay_samples()`` (96 samples,
6 ms at 16 kHz: its analysis window overlaps the previous frame by that much) late.
Like the echo canceller's latency, the lane is delayed by the same whether suppression
is on or off, and the chain delays the system lane by as much, so:

- the two lanes stay aligned in the mix, the tracks and who-spoke, on or off;
- switching never moves the lane on the timeline: both the suppressed lane and the
  plain delayed lane sit at the same delay, and a switch crossfades between the two
  over ``FADE_SAMPLES`` (10 ms; the same audio at the same instant, so no comb and no
  click). No sample is inserted or dropped, so nothing captured is lost and frame
  times stay right.

Why not change the system lane's delay at the switch instead (insert or drop 96
samples)? Dropping loses captured audio unless it happens to be silent, inserting puts
6 ms that were never captured into both lanes, and either moves everything after it 6 ms
against the session clock. A constant 6 ms more latency costs nothing a user notices
(frames already leave ~0.2 s after capture).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.delay import DelayLine
from meetcap.errors import ConfigError

if TYPE_CHECKING:  # imported when first turned on (a wheel with a native library)
    from pywebrtc_audio import NoiseSuppressor

BLOCK = SAMPLE_RATE_HZ // 100  # WebRTC processes 10 ms blocks
SUPPRESSION_LEVEL = 1  # WebRTC's "moderate" (0 mild .. 3 very high)
FADE_SAMPLES = BLOCK  # crossfade between the plain and the suppressed lane on a switch


def webrtc_available() -> bool:
    try:
        import pywebrtc_audio  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def ns_delay_samples() -> int:
    """How late WebRTC's noise suppressor delivers (measured once, as the echo
    canceller's latency is: a noise burst through a fresh instance; 96 samples at 16 kHz
    with pywebrtc-audio 0.2). 0 without pywebrtc-audio (it can then not be turned on)."""
    try:
        from pywebrtc_audio import NoiseSuppressor
    except ImportError:
        return 0
    probe = np.random.default_rng(7).standard_normal(BLOCK * 40).astype(np.float32) * 0.1
    suppressor = NoiseSuppressor(SAMPLE_RATE_HZ, 1, SUPPRESSION_LEVEL)
    out = np.concatenate([suppressor.process(probe[i : i + BLOCK].copy())
                          for i in range(0, len(probe), BLOCK)])
    lags = range(0, 4 * BLOCK)
    return max(lags, key=lambda lag: float(np.dot(out[lag:], probe[: len(probe) - lag])))


class LaneNoiseSuppressor:
    """The mic lane through WebRTC's noise suppressor, ``delay`` samples late, on or off.

    Positions below count output samples since this object was made (the lane's
    timeline). The plain lane ``raw`` is the input delayed by ``delay``; the suppressor's
    output, from the position at which it was started, is aligned with it (its first
    ``delay`` outputs are its empty start state, never used). The output is
    ``w * suppressed + (1 - w) * raw`` with ``w`` ramping 0 -> 1 after a switch on (once
    the suppressor has one block behind it) and 1 -> 0 after a switch off (the
    suppressor keeps running until the ramp ends, then it is dropped).
    """

    def __init__(self, enabled: bool = False) -> None:
        self.delay = ns_delay_samples()
        self._raw = DelayLine(self.delay)
        self._suppressor: NoiseSuppressor | None = None
        self._carry = np.zeros(0, np.float32)  # input not yet a whole block
        self._made = np.zeros(0, np.float32)  # suppressed samples not yet output
        self._made_until = 0  # position after the last suppressed sample made
        self._position = 0  # position of the next output sample
        self._ramp = (0, 0.0, 0.0)  # (position it starts at, weight from, weight to)
        self.set_enabled(enabled)

    @property
    def enabled(self) -> bool:
        """Suppression is on (or fading in), as last set."""
        return self._suppressor is not None and self._ramp[2] == 1.0

    def set_enabled(self, enabled: bool) -> None:
        """On or off from the next sample; ConfigError without pywebrtc-audio."""
        if enabled == self.enabled:
            return
        now = self._position
        if enabled and self._suppressor is None:
            if not webrtc_available():
                raise ConfigError(
                    "noise suppression needs the pywebrtc-audio package, which is not "
                    "installed here: pip install pywebrtc-audio (or turn it off)")
            from pywebrtc_audio import NoiseSuppressor

            self._suppressor = NoiseSuppressor(SAMPLE_RATE_HZ, 1, SUPPRESSION_LEVEL)
            self._carry = np.zeros(0, np.float32)
            self._made = np.zeros(0, np.float32)
            self._made_until = now
            # A fresh suppressor's first ``delay`` outputs are its empty state: the plain
            # lane plays until it has a whole block behind it, then the fade starts.
            self._ramp = (now + max(BLOCK, self.delay), 0.0, 1.0)
        else:  # reversing a fade that is under way: from the weight it reached
            self._ramp = (now, self._weights(now, 1)[0], 1.0 if enabled else 0.0)

    def _weights(self, start: int, n: int) -> np.ndarray:
        at, w_from, w_to = self._ramp
        progress = np.clip((np.arange(start, start + n) - at) / FADE_SAMPLES, 0.0, 1.0)
        return (w_from + (w_to - w_from) * progress).astype(np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """One stretch of the lane (any length); returns as many samples, ``delay`` late."""
        start = self._position
        n = len(samples)
        self._position += n
        raw = self._raw.process(samples)
        suppressor = self._suppressor
        if suppressor is None:
            return raw
        joined = np.concatenate((self._carry, samples)).astype(np.float32, copy=False)
        whole = len(joined) - len(joined) % BLOCK
        made = [self._made] + [suppressor.process(np.ascontiguousarray(joined[i : i + BLOCK]))
                               for i in range(0, whole, BLOCK)]
        self._carry = joined[whole:]
        self._made_until += whole
        self._made = np.concatenate(made) if len(made) > 1 else self._made
        # The suppressed samples for this stretch. The chain renders whole 100 ms units,
        # so all of them are made; only the end of a session (finish() renders odd
        # lengths) can leave up to a block not yet made: those few ms play plain.
        made_from = self._made_until - len(self._made)
        lo, hi = max(start, made_from), min(start + n, self._made_until)
        out = raw.copy()
        at, _, w_to = self._ramp
        if hi > lo:
            sup = self._made[lo - made_from : hi - made_from]
            if w_to == 1.0 and lo >= at + FADE_SAMPLES:  # faded in: no weights to apply
                out[lo - start : hi - start] = sup
            else:
                w = self._weights(lo, hi - lo)
                out[lo - start : hi - start] = w * sup + (1.0 - w) * raw[lo - start : hi - start]
        self._made = self._made[max(0, start + n - made_from):]
        if w_to == 0.0 and self._position >= at + FADE_SAMPLES:
            self._suppressor = None  # faded out: the plain lane alone from here
            self._carry = np.zeros(0, np.float32)
            self._made = np.zeros(0, np.float32)
        return out
