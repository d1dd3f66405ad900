"""macOS: CoreAudio has no loopback input, so system audio needs a virtual device.

Virtual loopback drivers (BlackHole, Loopback, Soundflower...) and aggregate devices
built on them show up as input devices; we recognise them by name and offer them as
system audio. When there is none, the app shows :data:`LOOPBACK_GUIDANCE` (through
:func:`meetcap.audio.devices.loopback_guidance`). A native
ScreenCaptureKit / process-tap helper is a later step.
Tested here with fake device lists only (tests/audio/test_platform_selection.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meetcap.audio.base import AudioDevice
from meetcap.audio.portaudio_list import devices_from_portaudio, list_portaudio_devices

HOST_API = "Core Audio"
ID_PREFIX = "coreaudio:"
# Lower-case name fragments of the virtual devices people route meeting audio through.
# "aggregate"/"multi-output": the devices Audio MIDI Setup creates around BlackHole.
LOOPBACK_NAME_HINTS = (
    "blackhole", "loopback", "soundflower", "vb-cable", "ishowu", "background music",
    "aggregate", "multi-output",
)

LOOPBACK_GUIDANCE = (
    "No system-audio device found. macOS cannot record what your speakers play without a "
    "virtual loopback device:\n"
    "1. Install BlackHole (2ch), e.g. `brew install blackhole-2ch`.\n"
    "2. In Audio MIDI Setup, create a Multi-Output Device with your speakers/headphones "
    "and BlackHole 2ch, and make it your sound output (so you still hear the meeting).\n"
    "3. In meetcap, pick BlackHole 2ch as the system audio source."
)


def devices_from_coreaudio(
    entries: Sequence[dict[str, Any]], default_input: int
) -> list[AudioDevice]:
    """Input devices from ``sounddevice.query_devices()`` entries, loopback ones marked."""
    return devices_from_portaudio(
        entries, default_input, id_prefix=ID_PREFIX, host_api=HOST_API,
        loopback_hints=LOOPBACK_NAME_HINTS,
    )


def list_devices() -> list[AudioDevice]:  # pragma: no cover - macOS only
    return list_portaudio_devices(id_prefix=ID_PREFIX, loopback_hints=LOOPBACK_NAME_HINTS)
