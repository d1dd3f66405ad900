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


def aligned_ncc(recorded: np.ndarray, voices: list[np.ndarray], lags: list[int], *,
                window: int = SAMPLE_RATE_HZ, slack: int = SAMPLE_RATE_HZ // 100) -> float:
    """How well the sum of ``voices`` (each placed at its lag) explains ``recorded``:
    the NCC of each ``window`` (1 s), weighted by the recording's energy there, with
    every voice free to sit up to ``slack`` samples (10 ms) off its lag in each window.

    The mixer's drift compensation drops or repeats single samples (dsp/mixer.py), so
    seconds into a recording a voice can sit a few samples off where it started, and
    one NCC over the whole recording falls on shifts no one can hear.
    """
    padded = [np.pad(place(v, lag, len(recorded)), slack) for v, lag in zip(voices, lags,
                                                                                 strict=True)]
    total = weight = 0.0
    for start in range(0, len(recorded) - window + 1, window):
        part = recorded[start : start + window]
        expected = np.zeros(window, np.float32)
        for voice in padded:
            around = voice[start : start + window + 2 * slack]
            shift = int(np.argmax(np.correlate(around, part, "valid")))
            expected += around[shift : shift + window]
        energy = float(np.dot(part, part))
        total += energy * ncc(part, expected)
        weight += energy
    return total / (weight + 1e-12)
