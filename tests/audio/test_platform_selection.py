"""Device selection and capture plumbing on the platforms that cannot run here.

Windows (PyAudioWPatch) and macOS (Core Audio) are faked at the edge: a fake
pyaudiowpatch module and fake PortAudio device lists; every test here says so in its
name. Linux's pure parts are tested on pactl's own output in test_devices_pulseaudio.py.
"""

from __future__ import annotations

import sys
import time
import types

import numpy as np
import pytest

from meetcap.audio import macos, windows_wasapi
from meetcap.audio.base import STALL_S, STARTUP_GRACE_S
from meetcap.audio.capture import make_capture
from meetcap.audio.devices import default_device, find_device, loopback_guidance
from meetcap.errors import DeviceError

WASAPI_DEVICES = [
    {"index": 0, "name": "Microphone (Realtek)", "hostApi": 1, "maxInputChannels": 2,
     "defaultSampleRate": 48000.0},
    {"index": 1, "name": "Speakers (Realtek)", "hostApi": 1, "maxInputChannels": 0,
     "defaultSampleRate": 48000.0},
    {"index": 2, "name": "Speakers (Realtek) 2 [Loopback]", "hostApi": 1,
     "maxInputChannels": 2, "defaultSampleRate": 44100.0, "isLoopbackDevice": True},
    {"index": 3, "name": "Speakers (Realtek) [Loopback]", "hostApi": 1,
     "maxInputChannels": 2, "defaultSampleRate": 48000.0, "isLoopbackDevice": True},
    {"index": 4, "name": "Headset (USB) [Loopback]", "hostApi": 1,
     "maxInputChannels": 2, "defaultSampleRate": 44100.0, "isLoopbackDevice": True},
    {"index": 5, "name": "Microphone (MME)", "hostApi": 0, "maxInputChannels": 2,
     "defaultSampleRate": 44100.0},
]


class FakeStream:
    """What PyAudioWPatch's open() returns; the test plays PortAudio's thread."""

    def __init__(self, callback, **kwargs) -> None:
        self.callback = callback
        self.kwargs = kwargs
        self.active = True
        self.closed = False

    def is_active(self) -> bool:
        return self.active

    def stop_stream(self) -> None:
        self.active = False

    def close(self) -> None:
        self.closed = True


def fake_pyaudiowpatch() -> types.SimpleNamespace:
    """A stand-in for the pyaudiowpatch module (fake: it only exists on Windows)."""
    module = types.SimpleNamespace(
        paWASAPI=13, paFloat32=1, paContinue=0, paInputOverflow=2, streams=[], terminated=0,
    )

    class PyAudio:
        def get_host_api_info_by_type(self, kind):
            assert kind == module.paWASAPI
            return {"index": 1, "defaultInputDevice": 0, "defaultOutputDevice": 1}

        def get_device_info_by_index(self, index):
            return WASAPI_DEVICES[index]

        def get_device_count(self):
            return len(WASAPI_DEVICES)

        def open(self, *, stream_callback, **kwargs):
            stream = FakeStream(stream_callback, **kwargs)
            module.streams.append(stream)
            return stream

        def terminate(self):
            module.terminated += 1

    module.PyAudio = PyAudio
    return module


def test_windows_loopback_selection_picks_the_default_outputs_twin_with_fake_pyaudiowpatch():
    devices = windows_wasapi.list_devices(fake_pyaudiowpatch())
    assert {d.name for d in devices} == {
        "Microphone (Realtek)", "Speakers (Realtek) [Loopback]",
        "Speakers (Realtek) 2 [Loopback]", "Headset (USB) [Loopback]",
    }, "only WASAPI inputs and loopbacks; MME duplicates and plain outputs are left out"
    assert default_device("loopback", devices).name == "Speakers (Realtek) [Loopback]"
    assert default_device("mic", devices).name == "Microphone (Realtek)"
    assert {d.kind for d in devices if "[Loopback]" in d.name} == {"loopback"}
    assert all(d.id.startswith("wasapi:") and d.id.endswith(d.name) for d in devices), \
        "ids are built from names, not PortAudio indexes"
    assert find_device("wasapi:loopback:Headset (USB) [Loopback]", devices).rate_hz == 44100


def test_windows_capture_copies_callback_blocks_into_the_ring_with_fake_pyaudiowpatch():
    module = fake_pyaudiowpatch()
    devices = windows_wasapi.list_devices(module)
    device = find_device("wasapi:loopback:Speakers (Realtek) [Loopback]", devices)
    capture = windows_wasapi.WasapiCapture(device, pyaudio_module=module)
    capture.open()
    stream = module.streams[-1]
    assert stream.kwargs["input_device_index"] == 3, "opened by name, the loopback twin"
    assert stream.kwargs["rate"] == 48000 and stream.kwargs["channels"] == 2
    block = np.linspace(-0.5, 0.5, 960 * 2, dtype=np.float32).reshape(960, 2)
    assert stream.callback(block.tobytes(), 960, {}, 0) == (None, module.paContinue)
    stream.callback(block.tobytes(), 960, {}, module.paInputOverflow)
    assert capture.pending_frames() == 1920
    np.testing.assert_array_equal(capture.read(), np.concatenate([block, block]))
    assert capture.overruns == 1, "PortAudio's input overflow flag is counted"
    capture.close()
    assert stream.closed and module.terminated >= 1


def test_windows_silent_loopback_is_not_lost_but_a_dead_stream_is_with_fake_pyaudiowpatch():
    module = fake_pyaudiowpatch()
    devices = windows_wasapi.list_devices(module)
    loopback = windows_wasapi.WasapiCapture(default_device("loopback", devices), module)
    mic = windows_wasapi.WasapiCapture(default_device("mic", devices), module)
    loopback.open()
    mic.open()
    later = time.monotonic() + STARTUP_GRACE_S + STALL_S + 1
    # WASAPI loopback sends no callbacks while nothing plays: that is silence, not loss.
    assert loopback.is_lost(later) is False
    assert mic.is_lost(later) is True, "a microphone that delivers nothing is lost"
    module.streams[0].active = False  # the device went away under the stream
    assert loopback.is_lost(time.monotonic()) is True
    loopback.close()
    mic.close()


def test_windows_capture_is_chosen_for_wasapi_devices_with_fake_pyaudiowpatch():
    devices = windows_wasapi.list_devices(fake_pyaudiowpatch())
    assert all(isinstance(make_capture(d), windows_wasapi.WasapiCapture) for d in devices)


def test_windows_without_pyaudiowpatch_says_how_to_install_it_fake_import(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyaudiowpatch", None)  # the import fails
    with pytest.raises(DeviceError, match="pip install PyAudioWPatch"):
        windows_wasapi.list_devices()


def test_macos_blackhole_and_aggregates_are_offered_as_system_audio_with_fake_device_list():
    entries = [
        {"name": "MacBook Pro Microphone", "max_input_channels": 1, "default_samplerate": 48000},
        {"name": "MacBook Pro Speakers", "max_input_channels": 0, "default_samplerate": 48000},
        {"name": "BlackHole 2ch", "max_input_channels": 2, "default_samplerate": 48000},
        {"name": "Meeting Aggregate Device", "max_input_channels": 4, "default_samplerate": 44100},
    ]
    devices = macos.devices_from_coreaudio(entries, default_input=0)
    assert [(d.name, d.kind) for d in devices] == [
        ("MacBook Pro Microphone", "mic"), ("BlackHole 2ch", "loopback"),
        ("Meeting Aggregate Device", "loopback"),
    ]
    assert devices[0].default and devices[2].channels == 2
    assert devices[1].id == "coreaudio:BlackHole 2ch"
    assert loopback_guidance(devices) is None


def test_macos_without_a_loopback_device_explains_how_to_route_meeting_audio_fake_list(
    monkeypatch,
):
    monkeypatch.setattr(sys, "platform", "darwin")
    devices = macos.devices_from_coreaudio(
        [{"name": "MacBook Pro Microphone", "max_input_channels": 1}], default_input=0
    )
    guidance = loopback_guidance(devices)
    assert guidance is not None
    assert "BlackHole" in guidance and "Multi-Output Device" in guidance
    assert "Audio MIDI Setup" in guidance
