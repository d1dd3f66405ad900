"""The VAD runs only while a subscriber asked for it; a broken model is reported.

Driven by a synthetic capture that plays espeak-ng speech on the worker's clock (the
real-device VAD test is in test_capture_pulseaudio.py); the Silero model is real.
"""

from __future__ import annotations

import time

import soxr

from meetcap.audio.devices import AudioDevice
from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.errors import ModelError
from tests.audio.helpers import FrameCollector, SyntheticCapture
from tests.support.pulse import MIC_ID
from tests.support.speech import PLAY_RATE_HZ


def speech_capture(speech):
    def factory(device: AudioDevice) -> SyntheticCapture:
        return SyntheticCapture(device, soxr.resample(speech.samples, PLAY_RATE_HZ, device.rate_hz))

    return factory


def test_vad_runs_only_while_a_subscriber_asks_for_it_synthetic_capture(pulse, speech_files):
    manager = AudioManager(CaptureSettings(mic_device_id=MIC_ID),
                           capture_factory=speech_capture(speech_files["mic"]))
    plain = FrameCollector()
    plain_sub = manager.subscribe(plain, name="plain")  # no VAD asked for
    try:
        time.sleep(2.5)  # the file's voice starts 0.5 s in
        before = len(plain.frames)
        vad_sub = manager.subscribe(lambda f: None, vad=True, name="wants-vad")
        time.sleep(3.0)
        manager.unsubscribe(vad_sub)
        during = len(plain.frames)
        time.sleep(2.0)
    finally:
        manager.unsubscribe(plain_sub)
        manager.close()
    flags = [f.speech for f in plain.frames]
    assert not any(flags[:before]), "no VAD verdicts before anyone asked"
    assert sum(flags[before:during]) >= 10, "speech marked while a subscriber wanted the VAD"
    # Frames already in flight when the VAD subscriber left may still carry its verdicts.
    assert not any(flags[during + 5 :]), "no VAD verdicts after the last one left"


def test_a_broken_vad_model_is_reported_and_audio_keeps_flowing_synthetic_capture(pulse, tmp_path):
    bad_model = tmp_path / "silero_vad.onnx"
    bad_model.write_bytes(b"this is not an onnx model")
    manager = AudioManager(CaptureSettings(mic_device_id=MIC_ID, vad_model_path=str(bad_model)),
                           capture_factory=SyntheticCapture)
    collector = FrameCollector()
    manager.add_event_listener(collector.on_event)
    subscription = manager.subscribe(collector, vad=True, name="wants-vad")
    try:
        assert collector.wait_for(lambda: collector.first_event("error", "vad"), 5)
        count = len(collector.frames)
        time.sleep(0.6)
    finally:
        manager.unsubscribe(subscription)
        manager.close()
    _, event = collector.first_event("error", "vad")
    assert isinstance(event.exception, ModelError)
    assert str(bad_model) in event.message, "the message names the file at fault"
    assert len(collector.frames) > count + 3, "frames keep flowing without the VAD"
    assert not any(f.speech for f in collector.frames)
