"""The audio sources a person can pick: microphones and system audio (loopback).

Ids are stable across restarts (they are built from the OS's source names, never from
PortAudio's indexes, which change with every hot-plug), so a saved choice comes back.
Each platform has its own module; this one picks the right one and gives them one shape
(the dispatch on top of them; the shared types are in base.py).
"""

from __future__ import annotations

import sys

from meetcap.audio import macos
from meetcap.audio.base import AudioDevice, DeviceKind
from meetcap.errors import DeviceError

# Each OS lists its devices with its own module. macos is also read on other systems (for
# its guidance text); linux_pulse is imported on Linux only.
if sys.platform.startswith("linux"):
    from meetcap.audio.linux_pulse import list_devices as _list_platform_devices
elif sys.platform == "win32":  # pragma: no cover - verified on Windows only
    from meetcap.audio.windows_wasapi import list_devices as _list_platform_devices
else:  # pragma: no cover - macOS
    from meetcap.audio.macos import list_devices as _list_platform_devices

# AudioDevice and DeviceKind live in base.py; most callers import them from here.
__all__ = [
    "AudioDevice", "DeviceKind", "default_device", "find_device", "list_devices",
    "loopback_guidance",
]


def list_devices() -> list[AudioDevice]:
    """Every capture source on this machine: microphones first, then loopback sources,
    defaults first within each. Raises DeviceError when the sound system cannot be asked.

    On Linux this may run a few ``pactl`` processes (tens of ms): call it off the GUI
    thread (:class:`meetcap.audio.watcher.DeviceWatcher` does).
    """
    devices = _list_platform_devices()
    return sorted(devices, key=lambda d: (d.kind != "mic", not d.default, d.name))


def find_device(device_id: str, devices: list[AudioDevice] | None = None) -> AudioDevice:
    """The device with this id; DeviceError naming the id and the way to list devices."""
    for device in devices if devices is not None else list_devices():
        if device.id == device_id:
            return device
    raise DeviceError(
        f"no audio device with id {device_id!r} is connected; "
        "run `meetcap devices` to see the ids of the devices there are"
    )


def default_device(
    kind: DeviceKind, devices: list[AudioDevice] | None = None
) -> AudioDevice | None:
    """The system's default device of this kind, else the first one, else None."""
    candidates = [d for d in (devices if devices is not None else list_devices()) if d.kind == kind]
    for device in candidates:
        if device.default:
            return device
    return candidates[0] if candidates else None


def loopback_guidance(devices: list[AudioDevice]) -> str | None:
    """What to tell a person when there is no system-audio (loopback) source, else None.

    On macOS: how to route meeting audio through BlackHole. Show it next to the system
    audio picker (the GUI) or under the device list (the CLI).
    """
    if any(d.kind == "loopback" for d in devices):
        return None
    if sys.platform == "darwin":
        return macos.LOOPBACK_GUIDANCE
    if sys.platform == "win32":  # pragma: no cover - Windows
        return ("No system-audio device found: WASAPI loopback needs PyAudioWPatch "
                "(pip install PyAudioWPatch) and an active output device.")
    return ("No system-audio source found: PulseAudio/PipeWire offer a \"Monitor of ...\" "
            "source for every output; check that an output device exists (`pactl list sinks`).")
