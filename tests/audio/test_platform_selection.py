"""Device selection on the platforms that cannot run here, with fake device lists."""

from __future__ import annotations


from meetcap.audio import linux_pulse, macos, windows_wasapi
from meetcap.audio.devices import default_device


class FakePyAudioWPatch:
    """The parts of PyAudioWPatch's PyAudio the selection reads (fake: Windows only)."""

    paWASAPI = 13

    def __init__(self) -> None:
        self.devices = [
            {"index": 0, "name": "Microphone (Realtek)", "hostApi": 1, "maxInputChannels": 2,
             "defaultSampleRate": 48000.0},
            {"index": 1, "name": "Speakers (Realtek)", "hostApi": 1, "maxInputChannels": 0,
             "defaultSampleRate": 48000.0},
            {"index": 2, "name": "Speakers (Realtek) [Loopback]", "hostApi": 1,
             "maxInputChannels": 2, "defaultSampleRate": 48000.0, "isLoopbackDevice": True},
            {"index": 3, "name": "Headset (USB) [Loopback]", "hostApi": 1,
             "maxInputChannels": 2, "defaultSampleRate": 44100.0, "isLoopbackDevice": True},
            {"index": 4, "name": "Microphone (MME)", "hostApi": 0, "maxInputChannels": 2,
             "defaultSampleRate": 44100.0},
        ]

    def get_host_api_info_by_type(self, kind):
        return {"index": 1, "defaultInputDevice": 0, "defaultOutputDevice": 1}

    def get_device_info_by_index(self, index):
        return self.devices[index]

    def get_device_count(self):
        return len(self.devices)


def test_windows_loopback_of_the_default_output_is_the_default_with_fake_pyaudiowpatch():
    devices = windows_wasapi.devices_from_pyaudio(FakePyAudioWPatch(), FakePyAudioWPatch)
    assert {d.name for d in devices} == {
        "Microphone (Realtek)", "Speakers (Realtek) [Loopback]", "Headset (USB) [Loopback]"
    }, "only WASAPI inputs and loopbacks; MME duplicates and outputs are left out"
    assert default_device("loopback", devices).name == "Speakers (Realtek) [Loopback]"
    assert default_device("mic", devices).name == "Microphone (Realtek)"
    assert all(d.id.startswith("wasapi:") for d in devices), "ids are names, not indexes"


def test_macos_blackhole_is_offered_as_system_audio_with_fake_device_list():
    entries = [
        {"name": "MacBook Pro Microphone", "max_input_channels": 1, "default_samplerate": 48000},
        {"name": "MacBook Pro Speakers", "max_input_channels": 0, "default_samplerate": 48000},
        {"name": "BlackHole 2ch", "max_input_channels": 2, "default_samplerate": 48000},
    ]
    devices = macos.devices_from_portaudio(entries, default_input=0)
    assert [(d.name, d.kind) for d in devices] == [
        ("MacBook Pro Microphone", "mic"), ("BlackHole 2ch", "loopback")
    ]
    assert macos.loopback_guidance(devices) is None


def test_macos_without_a_loopback_device_explains_how_to_route_meeting_audio_fake_list():
    devices = macos.devices_from_portaudio(
        [{"name": "MacBook Pro Microphone", "max_input_channels": 1}], default_input=0
    )
    guidance = macos.loopback_guidance(devices)
    assert "BlackHole" in guidance and "Multi-Output Device" in guidance


def test_linux_every_monitor_is_system_audio_and_ids_survive_a_restart():
    sources = [
        {"name": "alsa_input.usb-Headset.mono", "description": "USB Headset Microphone",
         "sample_specification": "s16le 1ch 48000Hz", "properties": {}},
        {"name": "alsa_output.pci.analog-stereo.monitor", "description": "Monitor of Built-in Audio",
         "sample_specification": "s16le 2ch 44100Hz", "properties": {"device.class": "monitor"}},
    ]
    first = linux_pulse.devices_from_pactl(sources, "alsa_input.usb-Headset.mono",
                                           "alsa_output.pci.analog-stereo")
    again = linux_pulse.devices_from_pactl(list(reversed(sources)), "", "")
    assert [(d.kind, d.default) for d in first] == [("mic", True), ("loopback", True)]
    assert {d.id for d in first} == {d.id for d in again}
    assert first[1].rate_hz == 44100 and first[1].channels == 2
    text = linux_pulse.alsa_config_text([s["name"] for s in sources])
    assert 'device "alsa_output.pci.analog-stereo.monitor"' in text and "type pulse" in text
