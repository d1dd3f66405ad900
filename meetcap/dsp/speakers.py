"""Who spoke in each frame: you (the mic lane), others (the system lane), both, or nobody.

Each lane gets its own Silero VAD (:class:`~meetcap.dsp.vad.VadStream` with the gate, so
silence and room noise cost nothing). The system lane's verdict is "others". The mic
lane's verdict is "you" only where the mic's sound is not explained by the system's:
without headphones the speakers' sound reaches the mic 50-200 ms later and the mic's
VAD hears the remote voice there too. :class:`EchoRule` decides that per 32 ms window
from the two lanes' energies (cheap, and it works with and without an echo canceller:
with the canceller on the mic lane is its output, whose residual echo the rule learns
as a smaller coupling):

- ``P`` = the loudest system window of the last ``ECHO_SPAN_WINDOWS`` (256 ms, longer
  than any laptop's speaker-to-mic delay): the most the echo can carry now;
- while the system lane is active, the rule learns the coupling ``c`` = the 85th
  percentile over the last ~20 s of (mic energy / ``P``), from windows where the mic is
  quieter than ``P`` (louder is never pure echo), so double talk hardly moves it;
- the mic window is the person's own sound when its energy exceeds ``OWN_MARGIN`` (6 dB)
  times ``c * P``; "you" is a mic speech verdict with own sound within the last
  ``OWN_HOLD_WINDOWS`` (320 ms, the VAD's own hangover).

The frame label is per frame, like the speech flag: "you" when at least half of the
frame's samples are "you", "others" likewise, both bits may be set.
"""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp.fifo import SampleFifo
from meetcap.dsp.vad import WINDOW_SAMPLES, VadStream
from meetcap.frames import SPEAKER_OTHERS, SPEAKER_YOU, Frame

ECHO_SPAN_WINDOWS = 8
ECHO_LEAD_WINDOWS = 0  # measured: a lead of 2-3 windows cost double talk more than it won
OWN_MARGIN = 10 ** (6 / 10)
COUPLING_QUANTILE = 0.85
OWN_HOLD_WINDOWS = 10
_COUPLING_HISTORY = 625  # active system windows (~20 s)
_COUPLING_START = 0.1  # -10 dB until it has been measured: a laptop's speakers, roughly
_SYSTEM_ACTIVE_POWER = 10 ** (-60 / 10)  # mean square of a -60 dBFS window


class EchoRule:
    """Per window: is the mic's sound the person's own, or what the speakers put there?

    The system window that explains a mic window may come up to ECHO_SPAN_WINDOWS before
    it (the speakers' delay) or up to ECHO_LEAD_WINDOWS after it (two capture streams
    whose latencies differ: the mic lane can run a few tens of ms ahead of the system
    lane), so a window is judged once the ECHO_LEAD_WINDOWS after it are in.
    """

    def __init__(self) -> None:
        self._system = deque([0.0] * ECHO_SPAN_WINDOWS, maxlen=ECHO_SPAN_WINDOWS)
        self._waiting: deque[tuple[float, float]] = deque()  # (mic, system) not yet judged
        self._ratios: deque[float] = deque(maxlen=_COUPLING_HISTORY)
        self._since_own = OWN_HOLD_WINDOWS  # windows since the last own window
        self._active_seen = 0
        self.coupling = _COUPLING_START

    def own(
        self, mic_power: np.ndarray, system_power: np.ndarray, *, final: bool = False
    ) -> np.ndarray:
        """One flag per window judged now (in order; the last ECHO_LEAD_WINDOWS wait for
        what follows, unless ``final``): own sound heard within the last OWN_HOLD_WINDOWS."""
        self._waiting.extend(zip(map(float, mic_power), map(float, system_power), strict=True))
        count = len(self._waiting) if final else max(0, len(self._waiting) - ECHO_LEAD_WINDOWS)
        out = np.zeros(count, dtype=bool)
        for i in range(count):
            mic, system = self._waiting.popleft()
            self._system.append(system)
            ahead = max((w[1] for w in list(self._waiting)[:ECHO_LEAD_WINDOWS]), default=0.0)
            reach = max(max(self._system), ahead)
            # A mic louder than the speakers' own signal is not pure echo (no room
            # returns more than it gets): such windows never teach the coupling.
            if reach > _SYSTEM_ACTIVE_POWER and mic < reach:
                self._ratios.append(mic / reach)
                self._active_seen += 1
                if len(self._ratios) >= 10 and self._active_seen % 8 == 0:  # ~4 times a second
                    self.coupling = float(np.quantile(self._ratios, COUPLING_QUANTILE))
            if mic > OWN_MARGIN * self.coupling * reach:
                self._since_own = 0
            else:
                self._since_own += 1
            out[i] = self._since_own < OWN_HOLD_WINDOWS
        return out


class SpeakerDetector:
    """Per-lane VADs and the echo rule; per-sample speech verdicts and per-frame labels.

    Feed the two lanes with :meth:`process` (same length each call; a lane that is not
    there is zeros); it returns the speech verdicts (anyone speaking) of the samples now
    decided, for the framer, and queues the speaker codes of the same samples, which
    :meth:`label` puts on the frames the framer makes of them. ``delay_samples`` delays
    the lanes to line up with the mix after the normaliser's look-ahead.
    """

    def __init__(
        self, model_path: str | None = None, *, batch_windows: int = 1, delay_samples: int = 0
    ) -> None:
        self._vads = {
            "mic": VadStream(model_path, batch_windows=batch_windows, gate=True),
            "system": VadStream(model_path, batch_windows=batch_windows, gate=True),
        }
        self._delay = int(delay_samples)
        self._codes = SampleFifo(np.uint8, capacity=4 * FRAME_SAMPLES)
        self.reset()

    def load(self) -> None:
        for vad in self._vads.values():
            vad.load()

    @property
    def windows_run(self) -> int:
        return sum(vad.windows_run for vad in self._vads.values())

    @property
    def windows_skipped(self) -> int:
        return sum(vad.windows_skipped for vad in self._vads.values())

    def reset(self) -> None:
        """A new stream (the queued codes of earlier samples stay for :meth:`label`)."""
        for vad in self._vads.values():
            vad.reset()
        self._echo = EchoRule()
        self._held = {name: np.zeros(self._delay, np.float32) for name in self._vads}
        self._energy = {name: SampleFifo(np.float32, 4 * WINDOW_SAMPLES) for name in self._vads}
        self._verdicts = {name: SampleFifo(np.bool_, 4 * FRAME_SAMPLES) for name in self._vads}
        self._own = SampleFifo(np.bool_, 4 * FRAME_SAMPLES)
        self._last_own = False

    def _delayed(self, name: str, samples: np.ndarray) -> np.ndarray:
        if not self._delay:
            return samples
        joined = np.concatenate((self._held[name], samples))
        self._held[name] = joined[len(samples) :]
        return joined[: len(samples)]

    def process(self, mic: np.ndarray, system: np.ndarray) -> np.ndarray:
        """Both lanes' next samples in; speech verdicts (bool per sample) out, possibly
        for fewer or more samples than went in (the VADs hold some back)."""
        lanes = {"mic": self._delayed("mic", mic), "system": self._delayed("system", system)}
        for name, samples in lanes.items():
            self._energy[name].push(samples)
            self._verdicts[name].push(self._vads[name].process(samples))
        self._judge_echo(final=False)
        return self._combine()

    def flush(self) -> np.ndarray:
        """Decide everything held back (end of the stream), then :meth:`reset`."""
        for name, vad in self._vads.items():
            self._verdicts[name].push(vad.flush())
        self._judge_echo(final=True)
        verdicts = self._combine()
        self.reset()
        return verdicts

    def _judge_echo(self, final: bool) -> None:
        count = min(len(self._energy["mic"]), len(self._energy["system"])) // WINDOW_SAMPLES
        if count:
            power = {
                name: np.square(
                    fifo.pop(count * WINDOW_SAMPLES).reshape(count, WINDOW_SAMPLES)
                ).mean(axis=1)
                for name, fifo in self._energy.items()
            }
        else:
            power = {"mic": np.zeros(0), "system": np.zeros(0)}
        own = self._echo.own(power["mic"], power["system"], final=final)
        if len(own):
            self._own.push(np.repeat(own, WINDOW_SAMPLES))
            self._last_own = bool(own[-1])
        if final:  # the last partial window goes as the one before it
            rest = len(self._energy["mic"])
            self._own.push_value(self._last_own, rest)
            for fifo in self._energy.values():
                fifo.clear()

    def _combine(self) -> np.ndarray:
        mic, system = self._verdicts["mic"], self._verdicts["system"]
        n = min(len(mic), len(system), len(self._own))
        if not n:
            return np.zeros(0, dtype=bool)
        others = system.pop(n)
        you = mic.pop(n) & self._own.pop(n)
        codes = you.astype(np.uint8) * SPEAKER_YOU | others.astype(np.uint8) * SPEAKER_OTHERS
        self._codes.push(codes)
        return you | others

    def label(self, frames: list[Frame]) -> list[Frame]:
        """The frames with ``speaker`` set from the queued codes (in order; a frame the
        codes do not cover, made while the detector was off, keeps speaker None)."""
        out = []
        for frame in frames:
            take = min(FRAME_SAMPLES, len(self._codes))
            if not take:
                out.append(frame)
                continue
            codes = self._codes.pop(take)
            you = 2 * np.count_nonzero(codes & SPEAKER_YOU) >= FRAME_SAMPLES
            others = 2 * np.count_nonzero(codes & SPEAKER_OTHERS) >= FRAME_SAMPLES
            speaker = (SPEAKER_YOU if you else 0) | (SPEAKER_OTHERS if others else 0)
            out.append(dataclasses.replace(frame, speaker=speaker))
        return out
