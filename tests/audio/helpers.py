"""Helpers for the audio tests: collect frames, a synthetic capture on a fixed device
list (no sound server), align signals."""

from __future__ import annotations

import threading
import time

import numpy as np
import soxr

from meetcap.audio.devices import AudioDevice
from meetcap.audio.events import AudioEvent, AudioEventKind
from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.frames import Frame
from tests.support.pulse import MIC_SINK, SPEAKER_SINK
from tests.support.speech import PLAY_RATE_HZ


class FrameCollector:
    """A frame listener that keeps everything, and the events, with arrival times."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self.events: list[tuple[float, AudioEvent]] = []
        self.lock = threading.Lock()

    def __call__(self, frame: Frame) -> None:
        with self.lock:
            self.frames.append(frame)

    def on_event(self, event: AudioEvent) -> None:
        with self.lock:
            self.events.append((time.time(), event))

    def samples(self) -> np.ndarray:
        with self.lock:
            pcm = b"".join(f.pcm for f in self.frames)
        return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0

    def first_event(self, kind: AudioEventKind, source: str, health: str | None = None):
        with self.lock:
            for at, event in self.events:
                if event.kind == kind and event.source == source and (
                    health is None or (event.health is not None and event.health.value == health)
                ):
                    return at, event
        return None

    def wait_for(self, predicate, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return False


# The one device a synthetic session lists: with ``capture_factory=SyntheticCapture`` and
# ``lister=synthetic_devices``, an AudioManager runs without any sound server.
SYNTHETIC_MIC = AudioDevice(
    id="synthetic:mic", name="Synthetic microphone", kind="mic", default=True,
    host_api="synthetic", portaudio_name="synthetic mic", rate_hz=48_000, channels=1,
)


def synthetic_devices() -> list[AudioDevice]:
    """A device lister for AudioManager(lister=...): only :data:`SYNTHETIC_MIC`."""
    return [SYNTHETIC_MIC]


class SyntheticCapture:
    """Stands in for a device capture, behind the same interface: delivers ``signal``
    (mono float32 at the device's rate, looped; default a 440 Hz sine) in real time and
    is never lost. For tests that open capture hundreds of times or need exact input.

    Counts how many captures are open at once across the process, which must never
    exceed one per source: two would mean a stop and a start overlapped.
    """

    lock = threading.Lock()
    opened = 0
    open_now = 0
    most_open = 0

    def __init__(self, device: AudioDevice, signal: np.ndarray | None = None) -> None:
        self.device = device
        self.overruns = 0
        if signal is None:
            t = np.arange(device.rate_hz) / device.rate_hz
            signal = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        self._signal = signal
        self._t0 = 0.0
        self._delivered = 0

    def open(self) -> None:
        with SyntheticCapture.lock:
            SyntheticCapture.opened += 1
            SyntheticCapture.open_now += 1
            SyntheticCapture.most_open = max(SyntheticCapture.most_open, SyntheticCapture.open_now)
        self._t0 = time.monotonic()

    def pending_frames(self) -> int:
        return max(int((time.monotonic() - self._t0) * self.device.rate_hz) - self._delivered, 0)

    def read(self) -> np.ndarray:
        positions = np.arange(self._delivered, self._delivered + self.pending_frames())
        self._delivered += len(positions)
        block = self._signal[positions % len(self._signal)]
        return np.repeat(block[:, None], self.device.channels, axis=1).astype(np.float32)

    def is_lost(self, now: float) -> bool:
        return False

    def close(self) -> None:
        with SyntheticCapture.lock:
            SyntheticCapture.open_now -= 1


def to_16k(samples: np.ndarray, rate_hz: int) -> np.ndarray:
    return soxr.resample(samples, rate_hz, SAMPLE_RATE_HZ).astype(np.float32)


def best_lag(recorded: np.ndarray, reference: np.ndarray) -> int:
    """The offset of ``reference`` inside ``recorded`` (FFT cross-correlation)."""
    n = len(recorded) + len(reference)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(corr[: len(recorded)]))
    return lag


def place(reference: np.ndarray, lag: int, length: int) -> np.ndarray:
    out = np.zeros(length, np.float32)
    end = min(length, lag + len(reference))
    out[lag:end] = reference[: end - lag]
    return out


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def rms_db(x: np.ndarray) -> float:
    return 20 * np.log10(float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) + 1e-12)


def fractional_lag(recorded: np.ndarray, reference: np.ndarray) -> float:
    """The offset of ``reference`` inside ``recorded`` to a fraction of a sample: the
    cross-correlation peak, refined by a parabola through it and its neighbours."""
    n = len(recorded) + len(reference)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(reference, size)), size)
    lag = int(np.argmax(corr[: len(recorded)]))
    if 0 < lag < len(recorded) - 1:
        left, mid, right = corr[lag - 1], corr[lag], corr[lag + 1]
        bend = left - 2 * mid + right
        if bend < 0:
            return float(lag + 0.5 * (left - right) / bend)  # not float32: callers add epochs
    return float(lag)


def place_fractional(reference: np.ndarray, lag: float, length: int) -> np.ndarray:
    """``reference`` delayed by ``lag`` samples (any real number) in ``length`` samples:
    an exact band-limited delay (a linear phase in the frequency domain)."""
    size = 1 << (length + len(reference) - 1).bit_length()
    spectrum = np.fft.rfft(reference.astype(np.float64), size)
    spectrum *= np.exp(-2j * np.pi * np.fft.rfftfreq(size) * lag)
    return np.fft.irfft(spectrum, size)[:length]


def fixed_delay_fit(recorded: np.ndarray, voices: list[np.ndarray]) -> tuple[float, list[float]]:
    """How much of ``recorded`` the ``voices`` explain, each at ONE fixed delay (a
    fraction of a sample allowed) and one gain for the whole recording: R^2 of the
    least-squares fit, and the delays found (samples).

    A mixer that warps time (drops or repeats samples, or reads at a wandering rate)
    moves a voice against its one delay and the fit falls; a 1 ms wander at 16 kHz already
    costs the speech most of its high-frequency fit. Gains are free, so level does not
    count, only time.
    """
    lags = [fractional_lag(recorded, v) for v in voices]
    design = np.stack([place_fractional(v, lag, len(recorded)) for v, lag in
                       zip(voices, lags, strict=True)], axis=1)
    target = recorded.astype(np.float64)
    gains, *_ = np.linalg.lstsq(design, target, rcond=None)
    residual = target - design @ gains
    return 1.0 - float(residual @ residual) / float(target @ target), lags


def voice_match(channel: np.ndarray, voice: np.ndarray) -> float:
    """How well ``voice`` explains the channel: the median over its loud half-seconds of
    the correlation at the best lag near the overall one (so the mixer's drift
    correction, which can move a lane by a few ms, does not count against the channel)."""
    lag = best_lag(channel, voice)
    step, slack = 8000, 320  # 0.5 s pieces, +-20 ms
    figures = []
    for start in range(0, len(voice) - step, step):
        piece = voice[start : start + step]
        if np.sqrt(np.mean(piece**2)) < 0.02:
            continue
        at = lag + start
        if at - slack < 0 or at + step + slack > len(channel):
            continue
        best = max(
            float(np.corrcoef(channel[at + d : at + d + step], piece)[0, 1])
            for d in range(-slack, slack + 1, 4)
        )
        figures.append(best)
    return float(np.median(figures)) if figures else 0.0


def tracks_voice_figures(data: np.ndarray, speech_files) -> dict[tuple[int, str], float]:
    """``voice_match`` of each channel (0, 1) of a two-track recording with the "mic" and
    the "system" voice of ``speech_files``, keyed (channel, voice name)."""
    voices = {name: to_16k(speech_files[name].samples, PLAY_RATE_HZ) for name in ("mic", "system")}
    return {
        (channel, name): voice_match(data[:, channel], voice)
        for channel in (0, 1) for name, voice in voices.items()
    }


def play_voices_once_frames_flow(pulse, speech_files, out, proc) -> list:
    """Wait until ``proc`` (a `meetcap record --out out`) has written 16 frames (the
    devices open in ~1 s), then play the mic voice into the microphone's sink and the
    system voice into the speakers'; the players, for the caller to wait on."""
    deadline = time.monotonic() + 20
    while not (out.exists() and out.stat().st_size > 44 + 16 * 6400):
        assert time.monotonic() < deadline and proc.poll() is None, "no frames written"
        time.sleep(0.05)
    return [pulse.play(speech_files["mic"].path, MIC_SINK),
            pulse.play(speech_files["system"].path, SPEAKER_SINK)]


def local_delays(lane: np.ndarray, voice: np.ndarray, lag: float, *, window_s: float = 2.0,
                 search_s: float = 0.4) -> list[tuple[float, float]]:
    """Where ``voice`` sits in each ``window_s`` of ``lane`` against its one delay ``lag``
    (samples, from :func:`fixed_delay_fit`): (window start s, extra delay in samples;
    positive: later). Windows with too little of the voice to place are left out."""
    placed = place(voice, max(0, round(lag)), len(lane))
    window, search = int(window_s * SAMPLE_RATE_HZ), int(search_s * SAMPLE_RATE_HZ)
    found = []
    for start in range(search, len(lane) - window - search, window):
        seg = lane[start : start + window]
        ref = placed[start - search : start + window + search]
        if rms_db(seg) < -45 or rms_db(ref) < -45:
            continue
        found.append((start / SAMPLE_RATE_HZ, float(search - best_lag(ref, seg))))
    return found


def fit_outside_moves(lane: np.ndarray, voice: np.ndarray, lag: float,
                      delays: list[tuple[float, float]], *,
                      window_s: float = 2.0) -> tuple[float, float]:
    """``lane`` judged where it did not move: R^2 of the windows (from
    :func:`local_delays`) whose voice sits at the same place as in the windows either
    side, each at that place (one gain for all), and the share of the windows that is."""
    window = int(window_s * SAMPLE_RATE_HZ)
    found = dict(delays)
    kept_lane, kept_voice = [], []
    placed_at: dict[float, np.ndarray] = {}
    for t, delay in delays:
        neighbours = [found.get(round(t - window_s, 6)), found.get(round(t + window_s, 6))]
        if any(n is None or abs(n - delay) > 1 for n in neighbours):
            continue
        start = round(t * SAMPLE_RATE_HZ)
        kept_lane.append(lane[start : start + window])
        if delay not in placed_at:  # the voice at its fractional place, moved by delay
            placed_at[delay] = place_fractional(voice, lag + delay, len(lane))
        kept_voice.append(placed_at[delay][start : start + window])
    if not kept_lane:
        return 0.0, 0.0
    y, x = np.concatenate(kept_lane).astype(np.float64), np.concatenate(kept_voice)
    gain = float(x @ y) / float(x @ x)
    residual = y - gain * x
    return 1.0 - float(residual @ residual) / float(y @ y), len(kept_lane) / len(delays)


def lanes_in_step(mic: list[tuple[float, float]], system: list[tuple[float, float]],
                  *, tolerance: float = 3.0) -> tuple[float, float]:
    """How the mic's place moved against the system's, window by window (from
    :func:`local_delays`): the share of common windows within ``tolerance`` samples of
    the usual difference, and the longest stretch out of it (s)."""
    system_at = dict(system)
    common = [(t, d - system_at[t]) for t, d in mic if t in system_at]
    if not common:
        return 0.0, float("inf")
    usual = float(np.median([d for _, d in common]))
    out = [abs(d - usual) > tolerance for _, d in common]
    longest = run = 0
    for is_out in out:
        run = run + 1 if is_out else 0
        longest = max(longest, run)
    step = common[1][0] - common[0][0] if len(common) > 1 else 0.0
    return 1.0 - sum(out) / len(out), longest * step


def watch_lost_samples(monkeypatch, raw: dict | None = None) -> dict:
    """Each lane's LostSampleDetector (of the capture the manager opened last), by lane
    ("mic"/"system"); with ``raw``, everything each capture handed to the pipeline (its
    first channel), by lane."""
    from meetcap.audio.capture import PortAudioCapture

    found = {}
    start, read = PortAudioCapture._start, PortAudioCapture.read

    def lane_of(capture) -> str:
        return "mic" if capture.device.kind == "mic" else "system"

    def watched(capture):
        start(capture)
        found[lane_of(capture)] = capture.lost_samples

    def recorded(capture):
        block = read(capture)
        raw.setdefault(lane_of(capture), []).append(block[:, 0].copy())
        return block

    monkeypatch.setattr(PortAudioCapture, "_start", watched)
    if raw is not None:
        monkeypatch.setattr(PortAudioCapture, "read", recorded)
    return found


def voices_start_apart_ms(raw: dict, detectors: dict, voices: dict, session_start: float,
                          timeline_lags: dict, *, search_s: float | None = None) -> tuple:
    """Where each lane's voice starts, two ways (ms, mic minus system). First when the
    server handed the voice's first sample over (found in what the capture delivered,
    timed by the capture's count against the clock): the rig (two paplay processes
    started one after the other) and the server. Then how much later than that it sits
    in the timeline (``timeline_lags``: samples from timeline sample 0, which is
    ``session_start``, wall clock): what the lanes' start adds. Third, each voice's place
    (s) in its capture's stream and in the timeline."""
    wall_minus_mono = time.time() - time.monotonic()
    delivered, placed, found = {}, {}, {}
    for name, voice in voices.items():
        stream = to_16k(np.concatenate(raw[name]), detectors[name].rate_hz)
        if search_s is not None:
            stream = stream[: int(search_s * SAMPLE_RATE_HZ)]
        in_stream = best_lag(stream, voice)
        found[name] = (in_stream / SAMPLE_RATE_HZ, timeline_lags[name] / SAMPLE_RATE_HZ)
        frame = round(in_stream * detectors[name].rate_hz / SAMPLE_RATE_HZ)
        delivered[name] = detectors[name].delivered_at(frame) + wall_minus_mono
        placed[name] = session_start + timeline_lags[name] / SAMPLE_RATE_HZ - delivered[name]
    return ((delivered["mic"] - delivered["system"]) * 1000,
            (placed["mic"] - placed["system"]) * 1000, found)
