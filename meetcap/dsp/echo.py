"""Echo cancellation of the mic lane, with the system lane as the far-end reference.

::

    both lanes --> EchoPathEstimator --> EchoScore (delay, level, verdict)
    mic, system --> WebRTC AEC3 (pywebrtc-audio) ----------------------> "deep" output
    system --> delay line (the score's delay) --+                              |
    mic -----------------------> LinearEchoCanceller --> "linear" output       |
                                                              v                v
        the person talks (Geigel, or AEC3 let a voice through)? linear : deep
                                           --> [noise suppressor] --> the mic lane

Why (bench/echo.py measures it, docs/figures.md has the figures): WebRTC's AEC3
(pywebrtc-audio, livekit's AudioProcessingModule, aec-audio-processing) removes 50+ dB
of echo on the rig, but its suppressor also cuts the person's own voice during double
talk (correlation with the clean voice 0.60-0.84, -3.3 to -6.3 dB), and none of the
three lets the suppressor be turned down. A linear adaptive filter removes only what
the system audio explains, so the voice passes untouched, but it removes less. So both
run: AEC3's output while only the far end plays; the linear filter's while the person
talks (the microphone is louder than any echo could be: the linear filter's Geigel
test, trusted once the score measured the echo at -10 dB or lower; or AEC3 keeps more
than 1 % of the microphone's power and the linear output is not far louder),
crossfaded over 10 ms and held 100 ms. (AEC3's verdict alone came late on the first
syllable after a pause: AEC3 cuts it before it lets the voice through.) The linear
filter is short (80 ms) so it converges within a second; the bulk delay is taken out
first by delaying its reference by the delay the echo score measured, and it holds
still while the person talks. Noise suppression (optional) is WebRTC's too, after the canceller.

Cost: the linear filter skips its FFTs while nothing played in its span, and AEC3
rests once the system lane has been silent for REST_AFTER_S (0.6 s: the last echo is
in; the microphone passes). When sound comes again, AEC3 is first given the last
PRIME_S (1 s) of what it skipped, so it resumes where it would have been had it run
on (bit for bit after a shorter rest). Without that it resumed with the sound from
before the pause where the next echo lines up (on one rig recording it removed 31.6 dB
instead of 40.8 in the half second after a 2.5 s pause), which is why it used to rest
only after 2 s. While resting, a whole rendered block is passed in a few array
operations (_rest_unit).
AEC3 delivers 8 ms late and the noise suppressor 6 ms more (dsp/noise.py); the lane is
delayed by the sum, ``latency_samples``, whether each is on or off (the chain delays the
system lane as much), so turning either on or off never shifts a lane, and nothing held
in a delay is lost.
"""

from __future__ import annotations

import functools
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.delay import DelayLine  # noqa: F401 (also imported from here)
from meetcap.dsp.echo_score import MAX_DELAY_MS, EchoPathEstimator, EchoScore
from meetcap.dsp.linear_aec import BLOCK, SILENT_FAR, LinearEchoCanceller
from meetcap.dsp.noise import LaneNoiseSuppressor
from meetcap.errors import ConfigError

if TYPE_CHECKING:  # imported when first turned on (a wheel with a native library)
    from pywebrtc_audio import EchoCanceller

# The filter starts this much before the measured echo delay (the estimate may be a few
# ms late, and the room's first reflection may come before the loudest) ...
PRE_DELAY_MS = 20.0
# ... and spans this much: 80 ms of the echo and its tail. Short converges fast; the
# bulk delay is taken out by the delay line.
LINEAR_BLOCK = 2 * BLOCK  # 20 ms: half the numpy calls per second of 10 ms blocks
FILTER_PARTITIONS = 4
_SPAN = FILTER_PARTITIONS * LINEAR_BLOCK
# AEC3 keeps more than this share of the microphone's power: the person is talking.
# (With only the far end playing it keeps ~-50 dB; with a voice, within a few dB of it.)
TALK_POWER_RATIO = 0.01
LINEAR_POWER_RATIO = 0.25
HOLD_BLOCKS = 10  # the linear output stays 100 ms after the voice stops
# The linear filter's Geigel test (a mic louder than half the far end's peak) says the
# person talks only while the measured echo is at least this far below the far end
# (its threshold is -6 dB; 4 dB of margin for peaks against the RMS level measured).
GEIGEL_TRUST_DB = -10.0
# AEC3 rests after this much silence on the system lane: longer than the longest echo
# delay the score looks for (MAX_DELAY_MS) and a room's tail, so the last echo is in.
REST_AFTER_S = 0.6
REST_AFTER_SAMPLES = int(REST_AFTER_S * SAMPLE_RATE_HZ)
# When sound comes again, AEC3 is first given the last PRIME_S of what it skipped
# (longer than its render history and delay search), in one call.
PRIME_S = 1.0
PRIME_BLOCKS = int(PRIME_S * SAMPLE_RATE_HZ) // LINEAR_BLOCK


@functools.cache
def _webrtc_available() -> bool:
    try:
        import pywebrtc_audio  # noqa: F401
    except ImportError:
        return False
    return True


@functools.cache
def aec3_latency_samples() -> int:
    """How late WebRTC's AEC3 delivers (measured once: a noise burst through a fresh
    instance with a silent reference; 127-128 samples at 16 kHz with pywebrtc-audio 0.2).
    0 without pywebrtc-audio (then nothing is cancelled and nothing needs delaying)."""
    try:
        from pywebrtc_audio import EchoCanceller
    except ImportError:
        return 0

    probe = np.random.default_rng(7).standard_normal(BLOCK * 40).astype(np.float32) * 0.1
    canceller = EchoCanceller(SAMPLE_RATE_HZ, 1, 0)
    silent = np.zeros(BLOCK, np.float32)
    out = np.concatenate([canceller.process(probe[i : i + BLOCK], silent)
                          for i in range(0, len(probe), BLOCK)])
    lags = range(0, 4 * BLOCK)
    return max(lags, key=lambda lag: float(np.dot(out[lag:], probe[: len(probe) - lag])))


class MicEchoCanceller:
    """The mic lane's echo stage: always scores the echo path; cancels when ``enabled``.

    ``noise_suppression``: WebRTC's noise suppressor after the canceller. Both are
    pywebrtc-audio's, imported when first turned on.
    """

    def __init__(self, *, enabled: bool = False, noise_suppression: bool = False) -> None:
        self.estimator = EchoPathEstimator()
        aec3_latency = aec3_latency_samples()
        # Noise suppression (on or off) at its own fixed delay, after the canceller.
        self._noise = LaneNoiseSuppressor(noise_suppression)
        # The whole stage's delay, constant: what the chain delays the system lane by.
        self.latency_samples = aec3_latency + self._noise.delay
        self._max_delay = int(MAX_DELAY_MS * SAMPLE_RATE_HZ / 1000)
        self._far_history = np.zeros(self._max_delay + LINEAR_BLOCK, np.float32)
        self._bulk = 0  # samples the linear filter's reference is delayed by
        self._pre = int(PRE_DELAY_MS * SAMPLE_RATE_HZ / 1000)
        # The lane out, delayed by AEC3's latency (also with cancellation off).
        self._aec3_latency = aec3_latency
        self._mic_delay = DelayLine(aec3_latency)
        self._linear_delay = DelayLine(aec3_latency)
        self._linear = LinearEchoCanceller(FILTER_PARTITIONS, LINEAR_BLOCK)
        self._aec3: EchoCanceller | None = None
        self._hold = 0
        self._weight = 1.0  # of the linear output in the last block
        self._resting = False  # AEC3 rests while nothing plays (see _cancel)
        self._geigel_trusted = False  # see _follow_delay
        self._talk_streak = 0  # 10 ms blocks in a row AEC3 let a voice through (_choose)
        # (near, far) LINEAR_BLOCKs AEC3 skipped while resting, the last PRIME_S of them.
        self._skipped: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=PRIME_BLOCKS)
        self._quiet_samples = 0  # how long the system lane has been silent
        self.enabled = False
        self.set_enabled(enabled)

    @property
    def score(self) -> EchoScore:
        return self.estimator.score

    @property
    def noise_suppression(self) -> bool:
        return self._noise.enabled

    @property
    def available(self) -> bool:
        """pywebrtc-audio (WebRTC AEC3) can be loaded here."""
        return _webrtc_available()

    def set_enabled(self, enabled: bool) -> None:
        """Cancel from now on (the filters start fresh), or stop cancelling.
        ConfigError if pywebrtc-audio is not installed."""
        if enabled and not self.enabled:
            if not self.available:
                raise ConfigError(
                    "echo cancellation needs the pywebrtc-audio package, which is not "
                    "installed here: pip install pywebrtc-audio (or turn it off)")
            from pywebrtc_audio import EchoCanceller

            self._aec3 = EchoCanceller(SAMPLE_RATE_HZ, 1, 0)
            self._linear.reset()
            # What the off state still held in its delay comes out first (no sample lost).
            self._linear_delay = self._mic_delay
            self._mic_delay = DelayLine(self._aec3_latency)
            self._bulk = 0
            self._weight, self._hold, self._resting = 1.0, 0, False
            self._quiet_samples = 0
            self._skipped.clear()
            self._talk_streak = 0
        elif not enabled and self.enabled:
            self._aec3 = None
            self._mic_delay = self._linear_delay
            self._linear_delay = DelayLine(self._aec3_latency)
        self.enabled = enabled

    def set_noise_suppression(self, enabled: bool) -> None:
        """On or off from the next sample, crossfaded at the same delay (dsp/noise.py):
        the lane never moves. ConfigError without pywebrtc-audio."""
        self._noise.set_enabled(enabled)

    def process(self, mic: np.ndarray, far: np.ndarray,
                observed: np.ndarray | None = None, *, score: bool = True) -> np.ndarray:
        """Both lanes of one rendered block (same length); returns the mic lane to mix,
        ``latency_samples`` late. ``observed``: the mic as the device gave it, for the
        score (the chain cancels the lane after its gain; a muted mic still scores);
        ``score=False`` while there is no mic (the lane only plays out what it holds)."""
        if score:
            self.estimator.process(mic if observed is None else observed, far)
        if not self.enabled:
            self._far_history = np.concatenate((self._far_history, far))[-len(self._far_history):]
            return self._noise.process(self._mic_delay.process(mic))
        self._follow_delay()
        if self._rests_through(mic, far):
            return self._noise.process(self._rest_unit(mic, far))
        out = np.empty(len(mic), np.float32)
        for start in range(0, len(mic), LINEAR_BLOCK):
            near = mic[start : start + LINEAR_BLOCK]
            ref = far[start : start + LINEAR_BLOCK]
            short = LINEAR_BLOCK - len(near)
            if short:  # the last piece of a session: pad (the state no longer matters)
                near = np.concatenate((near, np.zeros(short, np.float32)))
                ref = np.concatenate((ref, np.zeros(short, np.float32)))
            block = self._cancel(np.ascontiguousarray(near, np.float32),
                                 np.ascontiguousarray(ref, np.float32))
            out[start : start + LINEAR_BLOCK - short] = block[: LINEAR_BLOCK - short]
        return self._noise.process(out)

    def _cancel(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """One LINEAR_BLOCK: the linear filter and AEC3 once each, the choice per 10 ms."""
        aec3 = self._aec3
        assert aec3 is not None, "only called while enabled"
        self._far_history = np.concatenate((self._far_history[LINEAR_BLOCK:], far))
        end = len(self._far_history) - self._bulk
        # Held still while the person talks (the last verdict: AEC3 runs 8 ms behind):
        # it must not learn their voice as echo.
        linear = self._linear.process(near, self._far_history[end - LINEAR_BLOCK : end],
                                      adapt=self._hold == 0)
        linear = self._linear_delay.process(linear)  # to AEC3's (later) timing
        # Nothing played for REST_AFTER_S (longer than any echo delay and its tail): no
        # echo can arrive, and both outputs would be the microphone itself (the linear
        # filter passes it untouched then). AEC3 rests (while the person talks and the
        # other side listens, often half a meeting); the last PRIME_S of what it skips
        # is kept and given to it when sound comes again (_wake).
        if float(np.abs(far).max()) < SILENT_FAR:
            self._quiet_samples += LINEAR_BLOCK
        else:
            self._quiet_samples = 0
        quiet = self._quiet_samples >= REST_AFTER_SAMPLES
        if self._resting and quiet:
            self._skipped.append((near.copy(), far.copy()))
            return linear
        if self._resting:
            self._wake(aec3)
        # Both 10 ms blocks in one call: the same output as two calls (AEC3 works in
        # 10 ms blocks inside), one crossing into the native library instead of two.
        deep = aec3.process(near, far)
        out = np.empty(LINEAR_BLOCK, np.float32)
        if quiet:  # crossfade to the microphone, then rest
            ramp = np.linspace(self._weight, 1.0, BLOCK, dtype=np.float32)
            out[:BLOCK] = ramp * linear[:BLOCK] + (1.0 - ramp) * deep[:BLOCK]
            out[BLOCK:] = linear[BLOCK:]
            self._weight, self._hold, self._resting = 1.0, 0, True
            return out
        for at in range(0, LINEAR_BLOCK, BLOCK):
            part = slice(at, at + BLOCK)
            out[part] = self._choose(near[part], deep[part], linear[part])
        return out

    def _rests_through(self, mic: np.ndarray, far: np.ndarray) -> bool:
        """AEC3 rests and stays resting for the whole block (nothing plays in it)."""
        return (self._resting and self._quiet_samples >= REST_AFTER_SAMPLES
                and len(mic) % LINEAR_BLOCK == 0 and len(far) > 0
                and float(np.abs(far).max()) < SILENT_FAR)

    def _rest_unit(self, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
        """A whole rendered block while AEC3 rests and the system lane stays silent: the
        same lane and state as _cancel block by block (tests/dsp/test_echo.py compares
        them), without its per-block calls (half a meeting runs through here)."""
        n = len(mic)
        joined = np.concatenate((self._far_history, far))
        self._far_history = joined[n:]
        end = len(joined) - self._bulk
        linear = self._linear.pass_silence(mic, joined[end - n : end])
        self._quiet_samples += n
        near, far = np.array(mic, np.float32), np.array(far, np.float32)
        self._skipped.extend((near[at : at + LINEAR_BLOCK], far[at : at + LINEAR_BLOCK])
                             for at in range(0, n, LINEAR_BLOCK))
        return self._linear_delay.process(linear)

    def _wake(self, aec3: EchoCanceller) -> None:
        """Sound again after a rest: AEC3 first gets the last PRIME_S it skipped, in one
        call (its output dropped: the lane played the microphone then), so it resumes
        with the recent past in its buffers, where it would be had it never rested (bit
        for bit when the rest was shorter than PRIME_S). Without this, it resumed with
        the sound from before the pause where the echo of the next sound should line up,
        and on the rig removed up to ~10 dB less for the next second or so."""
        if self._skipped:
            aec3.process(np.concatenate([near for near, _ in self._skipped]),
                         np.concatenate([far for _, far in self._skipped]))
            self._skipped.clear()
        self._resting = False

    def _choose(self, near: np.ndarray, deep: np.ndarray, linear: np.ndarray) -> np.ndarray:
        # The person talks when the microphone is louder than any echo of what played
        # could be (the linear filter's Geigel test, on this block, once the echo score
        # has measured an echo path well below its threshold: it catches the first
        # syllable after a pause, which AEC3's suppressor cuts before letting the voice
        # through; on the rig that cost up to 16 dB on such a syllable and took double
        # talk from 0.99 to 0.89), or when AEC3 lets through a real share of the
        # microphone AND the linear filter's output is not much louder than AEC3's (a
        # share of AEC3 output next to a far louder linear one is an echo AEC3 removes
        # better).
        if self._linear.double_talk and self._geigel_trusted:
            talking = True
        else:
            deep_power = float(np.dot(deep, deep))
            talking = (deep_power > TALK_POWER_RATIO * float(np.dot(near, near)) + 1e-7
                       and deep_power > LINEAR_POWER_RATIO * float(np.dot(linear, linear)))
            self._talk_streak = self._talk_streak + 1 if talking else 0
            # An echo that starts after a pause: AEC3 passes its first 10-20 ms before it
            # suppresses it, which read as the person talking and held the (weaker)
            # linear output 100 ms: on the rig the 2.4 s after such a pause kept 17 dB
            # of ERLE instead of 39 (tests/dsp/test_echo.py). While the echo is
            # arriving, one block is not enough (a voice is still caught by Geigel or
            # in the next block).
            if talking and self._talk_streak < 2 and self._linear.echo_arriving:
                talking = False
        if talking:
            self._hold = HOLD_BLOCKS
        elif self._hold > 0:
            self._hold -= 1
        weight = 1.0 if self._hold > 0 else 0.0
        if weight == self._weight:
            mixed = linear if weight else deep
        else:
            ramp = np.linspace(self._weight, weight, BLOCK, dtype=np.float32)
            mixed = ramp * linear + (1.0 - ramp) * deep
        self._weight = weight
        return mixed

    def _follow_delay(self) -> None:
        score = self.estimator.score
        # Geigel's "louder than any echo could be" holds only where the echo is well
        # below the far end (speakers turned up reach the mic at -6 dB or louder: every
        # echo would read as the person talking) and its delay is in the filter's span.
        self._geigel_trusted = score.reaches_mic and score.level_db <= GEIGEL_TRUST_DB
        if not score.reaches_mic:
            return
        delay = int(score.delay_ms * SAMPLE_RATE_HZ / 1000)
        position = delay - self._bulk  # where the echo sits inside the linear filter
        if self._pre // 2 <= position <= _SPAN - 2 * self._pre:
            return
        bulk = max(0, min(self._max_delay, delay - self._pre))
        if bulk != self._bulk:
            self._bulk = bulk
            self._linear.reset()
