"""AudioManager's pub/sub under concurrent subscribe/unsubscribe.

These tests drive the manager with a synthetic capture (a sine generated on the
worker's clock) in place of PortAudio, because they open and close capture hundreds of
times; the real devices are covered in test_capture_pulseaudio.py. Device listing stays
real (PulseAudio), so the manager's own code path is the one the app uses.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np

from meetcap.audio.devices import AudioDevice
from meetcap.audio.manager import AudioManager, CaptureSettings
from tests.support.pulse import MIC_ID


class SyntheticCapture:
    """Stands in for SourceCapture: delivers a 440 Hz sine in real time, never lost."""

    opened = 0
    open_now = 0
    lock = threading.Lock()

    def __init__(self, device: AudioDevice) -> None:
        self.device = device
        self.overruns = 0
        self._t0 = 0.0
        self._delivered = 0

    def open(self) -> None:
        with SyntheticCapture.lock:
            SyntheticCapture.opened += 1
            SyntheticCapture.open_now += 1
        self._t0 = time.monotonic()

    def read(self) -> np.ndarray:
        due = int((time.monotonic() - self._t0) * self.device.rate_hz) - self._delivered
        n = np.arange(self._delivered, self._delivered + max(due, 0))
        self._delivered += len(n)
        block = 0.3 * np.sin(2 * np.pi * 440 * n / self.device.rate_hz)
        return np.repeat(block[:, None], self.device.channels, axis=1).astype(np.float32)

    def is_lost(self, now: float | None = None) -> bool:
        return False

    def close(self) -> None:
        with SyntheticCapture.lock:
            SyntheticCapture.open_now -= 1


def test_racing_subscribers_never_lose_the_audio_of_a_live_subscriber_synthetic_capture(pulse):
    manager = AudioManager(CaptureSettings(mic_device_id=MIC_ID), open_source=SyntheticCapture)
    # One long-lived consumer (the "ambient session") must receive frames throughout,
    # while other consumers (the "badge") start and stop as fast as they can.
    steady: list[int] = []
    steady_sub = None
    errors: list[BaseException] = []
    stop = threading.Event()

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not stop.is_set():
                received: list[int] = []
                sub = manager.subscribe(lambda f: received.append(f.seq), name=f"churn{seed}")
                time.sleep(rng.uniform(0, 0.03))
                manager.unsubscribe(sub)
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    steady_sub = manager.subscribe(lambda f: steady.append(f.seq), name="steady")
    time.sleep(2.5)
    frames_mid = len(steady)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    manager.unsubscribe(steady_sub)
    assert not errors
    assert manager.running is False
    assert SyntheticCapture.open_now == 0, "the last unsubscribe closes the device"
    # The steady subscriber kept receiving, gapless, from one capture session.
    assert len(steady) - frames_mid >= 8, "frames kept flowing while others churned"
    assert steady == list(range(steady[0], steady[0] + len(steady)))
    assert len(steady) >= 30


def test_a_slow_listener_does_not_stall_the_others_synthetic_capture(pulse):
    manager = AudioManager(CaptureSettings(mic_device_id=MIC_ID), open_source=SyntheticCapture)
    fast: list[int] = []
    slow: list[int] = []
    sub_fast = manager.subscribe(lambda f: fast.append(f.seq), name="fast")
    sub_slow = manager.subscribe(lambda f: (time.sleep(0.5), slow.append(f.seq)), name="slow")
    time.sleep(2.0)
    fast_during = len(fast)
    manager.unsubscribe(sub_fast)
    manager.unsubscribe(sub_slow)  # waits until the slow one has had every frame
    assert fast_during >= 15, "the fast listener got frames in real time"
    assert slow == list(range(len(slow))) and len(slow) >= fast_during, "nothing dropped"
