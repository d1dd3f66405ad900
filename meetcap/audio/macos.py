"""macOS: CoreAudio has no loopback input, so system audio needs a virtual device.

Virtual loopback drivers (BlackHole, Loopback, Soundflower...) show up as input devices;
we recognise them by name and offer them as system audio. When there is none, the app
shows :data:`LOOPBACK_GUIDANCE`. A native ScreenCaptureKit helper is a later step.
Tested here with fake device lists only (tests/audio/test_platforms.py).
"""

from __future__ import annotations

from typing import Any

from meetcap.audio.devices import AudioDevice

LOOPBACK_NAME_HINTS = ("blackhole", "loopback", "soundflower", "vb-cable", "ishowu", "background music")

LOOPBACK_GUIDANCE = (
    "No system-audio device found. macOS cannot record what your speakers play without a "
    "virtual loopback device:\n"
    "1. Install BlackHole (2ch), e.g. `brew install blackhole-2ch`.\n"
    "2. In Audio MIDI Setup, create a Multi-Output Device with your speakers/headphones "
    "and BlackHole 2ch, and make it your sound output (so you still hear the meeting).\n"
    "3. In meetcap, pick BlackHole 2ch as the system audio source."
)


def is_loopback_name(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in LOOPBACK_NAME_HINTS)


def devices_from_portaudio(entries: list[dict[str, Any]], default_input: int) -> list[AudioDevice]:
    """Input devices from sounddevice.query_devices() entries, loopback ones marked."""
    devices = []
    for index, info in enumerate(entries):
        if info.get("max_input_channels", 0) < 1:
            continue
        loopback = is_loopback_name(info["name"])
        devices.append(
            AudioDevice(
                id=f"coreaudio:{info['name']}",
                name=info["name"],
                kind="loopback" if loopback else "mic",
                default=index == default_input and not loopback,
                host_api="Core Audio",
                portaudio_name=info["name"],
                rate_hz=int(info.get("default_samplerate", 48_000)),
                channels=min(int(info["max_input_channels"]), 2),
            )
        )
    return devices


def loopback_guidance(devices: list[AudioDevice]) -> str | None:
    """The set-up steps to show when no loopback device exists, else None."""
    return None if any(d.kind == "loopback" for d in devices) else LOOPBACK_GUIDANCE


def list_devices() -> list[AudioDevice]:  # pragma: no cover - macOS only
    import sounddevice as sd

    return devices_from_portaudio(list(sd.query_devices()), sd.default.device[0])
