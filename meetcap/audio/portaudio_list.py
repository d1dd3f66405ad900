"""Capture devices as PortAudio itself lists them.

Used where PortAudio sees every device by name (macOS Core Audio), and on Linux as the
fallback when pactl is missing. Loopback devices are recognised by name hints, since
PortAudio does not say which inputs carry system audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from meetcap.audio.base import AudioDevice


def devices_from_portaudio(
    entries: Sequence[dict[str, Any]],
    default_input: int,
    *,
    id_prefix: str,
    host_api: str,
    loopback_hints: Sequence[str],
) -> list[AudioDevice]:
    """Input devices from ``sounddevice.query_devices()`` entries (pure: testable with
    fake lists). The default input is the default microphone; a loopback device is
    never marked default (there is no OS notion of a default loopback here)."""
    devices = []
    for position, info in enumerate(entries):
        index = info.get("index", position)
        if info.get("max_input_channels", 0) < 1:
            continue
        lowered = info["name"].lower()
        loopback = any(hint in lowered for hint in loopback_hints)
        devices.append(
            AudioDevice(
                id=f"{id_prefix}{info['name']}",
                name=info["name"],
                kind="loopback" if loopback else "mic",
                default=index == default_input and not loopback,
                host_api=host_api,
                portaudio_name=info["name"],
                rate_hz=int(info.get("default_samplerate") or 48_000),
                channels=min(int(info["max_input_channels"]), 2),
            )
        )
    return devices


def list_portaudio_devices(*, id_prefix: str, loopback_hints: Sequence[str]) -> list[AudioDevice]:
    """The input devices of PortAudio's default host API (ids are names, so the same
    device listed by two host APIs would collide)."""
    import sounddevice as sd

    hostapi_index = sd.default.hostapi
    hostapi = sd.query_hostapis(hostapi_index)
    entries = [d for d in sd.query_devices() if d["hostapi"] == hostapi_index]
    default_input = hostapi.get("default_input_device", -1)
    host_api = hostapi["name"]
    return devices_from_portaudio(
        entries, default_input, id_prefix=id_prefix, host_api=host_api,
        loopback_hints=loopback_hints,
    )
