"""AudioManager's pub/sub under concurrent subscribe/unsubscribe.

These tests drive the manager with a synthetic capture (a sine generated on the
worker's clock) in place of PortAudio, because they open and close capture hundreds of
times, on a fixed device list (the manager's ``lister``): they need no sound server.
Everything above the capture and the listing is the manager's own code path, the one
the app uses; the real devices are covered in test_capture_pulseaudio.py.
"""

from __future__ import annotations

import random
import threading
import time

from meetcap.audio.manager import AudioManager, CaptureSettings
from tests.audio.helpers import SYNTHETIC_MIC, SyntheticCapture, synthetic_devices


def synthetic_manager() -> AudioManager:
    return AudioManager(CaptureSettings(mic_device_id=SYNTHETIC_MIC.id),
                        capture_factory=SyntheticCapture, lister=synthetic_devices)


def test_racing_subscribers_never_lose_the_audio_of_a_live_subscriber_synthetic_capture():
    manager = synthetic_manager()
    SyntheticCapture.most_open = SyntheticCapture.opened = 0
    # One long-lived consumer (the "ambient session") must receive frames throughout,
    # while other consumers (the "badge") start and stop as fast as they can, from
    # several threads; every few rounds a churner stays for half a second, and must get
    # frames in that time, gapless.
    steady: list[int] = []
    errors: list[BaseException] = []
    long_lived: list[list[int]] = []
    all_received: list[list[int]] = []
    stop = threading.Event()

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for round_no in range(10_000):
                if stop.is_set():
                    break
                received: list[int] = []
                sub = manager.subscribe(lambda f, r=received: r.append(f.seq), name=f"churn{seed}")
                stays = round_no % 8 == 7
                time.sleep(0.5 if stays else rng.uniform(0, 0.03))
                manager.unsubscribe(sub)  # returns once every frame was delivered
                all_received.append(received)
                if stays:
                    long_lived.append(received)
                time.sleep(rng.uniform(0, 0.06))  # now and then nobody is subscribed
        except BaseException as exc:  # noqa: BLE001 - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # churners alone: capture starts and stops again and again
    sessions_alone = SyntheticCapture.opened
    steady_sub = manager.subscribe(lambda f: steady.append(f.seq), name="steady")
    running_throughout = True
    for _ in range(30):
        time.sleep(0.1)
        running_throughout &= manager.running
    frames_mid = len(steady)
    time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join()
    manager.unsubscribe(steady_sub)
    manager.close()
    assert not errors
    assert running_throughout, "capture never stopped while the steady subscriber was there"
    assert manager.running is False
    assert SyntheticCapture.open_now == 0, "the last unsubscribe closes the device"
    assert SyntheticCapture.most_open == 1, "a stop and a start never overlapped"
    # The steady subscriber kept receiving, gapless, from one capture session.
    assert len(steady) - frames_mid >= 8, "frames kept flowing while others churned"
    assert steady == list(range(steady[0], steady[0] + len(steady)))
    assert len(steady) >= 30
    # Every churner got a gapless run, and every one that stayed half a second got audio.
    print(f"{len(all_received)} churning subscriptions, {sessions_alone} capture sessions")
    assert len(all_received) > 50 and sessions_alone >= 5, "the churners really churned"
    for received in filter(None, all_received):
        assert received == list(range(received[0], received[0] + len(received)))
    assert long_lived and all(len(r) >= 2 for r in long_lived), [len(r) for r in long_lived]


def test_a_slow_listener_does_not_stall_the_others_synthetic_capture():
    manager = synthetic_manager()
    fast: list[int] = []
    slow: list[int] = []
    sub_fast = manager.subscribe(lambda f: fast.append(f.seq), name="fast")
    sub_slow = manager.subscribe(lambda f: (time.sleep(0.25), slow.append(f.seq)), name="slow")
    time.sleep(1.5)
    fast_during, slow_during = len(fast), len(slow)
    manager.unsubscribe(sub_fast)
    manager.unsubscribe(sub_slow)  # waits until the slow one has had every frame
    manager.close()
    assert fast_during >= 11, "the fast listener got frames in real time"
    assert slow_during <= fast_during - 4, "the slow one really lagged behind"
    assert slow == list(range(len(slow))) and len(slow) >= fast_during, "nothing dropped"


def test_a_listener_can_unsubscribe_itself_and_capture_stops_synthetic_capture():
    manager = synthetic_manager()
    received: list[int] = []
    done = threading.Event()
    holder: dict[str, object] = {}

    def listener(frame) -> None:
        received.append(frame.seq)
        if len(received) == 5:
            manager.unsubscribe(holder["sub"])  # from its own delivery thread
            done.set()

    holder["sub"] = manager.subscribe(listener, name="self-stopper")
    try:
        assert done.wait(10), "the listener got its frames and unsubscribed without deadlock"
        assert manager.running is False
        assert received[:5] == [0, 1, 2, 3, 4]
    finally:
        manager.close()
