"""Speech detection is a setting of the AudioManager, switched live; a broken model is
reported and the audio keeps flowing.

Driven by a synthetic capture that plays espeak-ng speech on the worker's clock, on a
fixed device list, so no sound server is needed (the real-device VAD test is in
test_capture_pulseaudio.py); the Silero model is real.
"""

from __future__ import annotations

import time

import pytest
import soxr

from meetcap.audio.devices import AudioDevice
from meetcap.audio.events import SOURCE_VAD, AudioEventKind
from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.errors import ModelError
from tests.audio.helpers import SYNTHETIC_MIC, FrameCollector, SyntheticCapture, synthetic_devices
from tests.support.speech import PLAY_RATE_HZ


def speech_capture(speech):
    def factory(device: AudioDevice) -> SyntheticCapture:
        return SyntheticCapture(device, soxr.resample(speech.samples, PLAY_RATE_HZ, device.rate_hz))

    return factory


def test_vad_runs_only_while_it_is_switched_on_and_switches_live_synthetic_capture(speech_files):
    settings = CaptureSettings(mic_device_id=SYNTHETIC_MIC.id)
    manager = AudioManager(settings, capture_factory=speech_capture(speech_files["mic"]),
                           lister=synthetic_devices)
    first, second = FrameCollector(), FrameCollector()
    subscriptions = [manager.subscribe(first, name="first"),
                     manager.subscribe(second, name="second")]
    try:
        time.sleep(2.5)  # the file's voice starts 0.5 s in
        before = len(first.frames)
        manager.set_vad(True)
        assert settings.vad is True, "the settings object says what capture does"
        time.sleep(3.0)
        manager.set_vad(False)
        during = len(first.frames)
        time.sleep(2.0)
    finally:
        for subscription in subscriptions:
            manager.unsubscribe(subscription)
        manager.close()
    flags = [f.speech for f in first.frames]
    assert not any(flags[:before]), "no VAD verdicts before it was switched on"
    assert sum(flags[before:during]) >= 10, "speech marked while the VAD was on"
    # Frames already rendered when it was switched off may still carry its verdicts.
    assert not any(flags[during + 5 :]), "no VAD verdicts after it was switched off"
    by_seq = {f.seq: f.speech for f in second.frames}
    assert all(by_seq[f.seq] == f.speech for f in first.frames if f.seq in by_seq), \
        "every subscriber gets the same frames, speech marks included"


@pytest.mark.parametrize("live", [False, True], ids=["at-start", "switched-on-live"])
def test_a_broken_vad_model_is_reported_and_audio_keeps_flowing_synthetic_capture(
    tmp_path, live
):
    bad_model = tmp_path / "silero_vad.onnx"
    bad_model.write_bytes(b"this is not an onnx model")
    settings = CaptureSettings(mic_device_id=SYNTHETIC_MIC.id, vad=not live,
                               vad_model_path=str(bad_model))
    manager = AudioManager(settings, capture_factory=SyntheticCapture, lister=synthetic_devices)
    collector = FrameCollector()
    manager.add_event_listener(collector.on_event)
    subscription = manager.subscribe(collector, name="collector")
    try:
        if live:
            assert collector.wait_for(lambda: len(collector.frames) >= 3, 5)
            manager.set_vad(True)
        assert collector.wait_for(
            lambda: collector.first_event(AudioEventKind.ERROR, SOURCE_VAD), 5
        ), collector.events
        count = len(collector.frames)
        time.sleep(0.6)
    finally:
        manager.unsubscribe(subscription)
        manager.close()
    _, event = collector.first_event(AudioEventKind.ERROR, SOURCE_VAD)
    assert isinstance(event.exception, ModelError)
    assert str(bad_model) in event.message, "the message names the file at fault"
    assert len(collector.frames) > count + 3, "frames keep flowing without the VAD"
    assert not any(f.speech for f in collector.frames)
    assert [f.seq for f in collector.frames] == list(range(len(collector.frames))), "gapless"
