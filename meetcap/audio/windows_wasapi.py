"""Windows: system audio through WASAPI loopback, with PyAudioWPatch.

Stock sounddevice cannot open WASAPI loopback yet (its issue #510: PortAudio merged it
but has not released it). PyAudioWPatch is a PortAudio fork on PyPI that lists a
loopback twin of every output device; it is a Windows-only dependency, imported lazily.
Only the selection logic below is tested here (with a fake module, see
tests/audio/test_platforms.py); capture on Windows is verified on Windows only.
"""

from __future__ import annotations

from typing import Any

from meetcap.audio.devices import AudioDevice
from meetcap.errors import DeviceError

HOST_API = "Windows WASAPI"


def devices_from_pyaudio(pa: Any, pyaudio_module: Any) -> list[AudioDevice]:
    """Microphones and loopback devices of the WASAPI host API, from a PyAudio instance.

    The default loopback device is the loopback twin of the default output, which is
    where meeting apps play by default.
    """
    try:
        wasapi = pa.get_host_api_info_by_type(pyaudio_module.paWASAPI)
    except OSError as exc:
        raise DeviceError("WASAPI is not available on this system") from exc
    default_in = wasapi.get("defaultInputDevice", -1)
    default_out = pa.get_device_info_by_index(wasapi["defaultOutputDevice"])
    devices = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        if info["hostApi"] != wasapi["index"] or info["maxInputChannels"] < 1:
            continue
        loopback = bool(info.get("isLoopbackDevice"))
        name = info["name"]
        devices.append(
            AudioDevice(
                id=f"wasapi:{'loopback' if loopback else 'mic'}:{name}",
                name=name,
                kind="loopback" if loopback else "mic",
                default=(name.startswith(default_out["name"]) if loopback else index == default_in),
                host_api=HOST_API,
                portaudio_name=name,
                rate_hz=int(info["defaultSampleRate"]),
                channels=min(int(info["maxInputChannels"]), 2),
            )
        )
    return devices


def list_devices() -> list[AudioDevice]:  # pragma: no cover - Windows only
    try:
        import pyaudiowpatch as pyaudio
    except ImportError as exc:
        raise DeviceError(
            "system audio on Windows needs PyAudioWPatch: pip install PyAudioWPatch"
        ) from exc
    pa = pyaudio.PyAudio()
    try:
        return devices_from_pyaudio(pa, pyaudio)
    finally:
        pa.terminate()
