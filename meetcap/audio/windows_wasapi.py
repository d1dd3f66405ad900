"""Windows: microphones and system audio through WASAPI, with PyAudioWPatch.

Stock sounddevice cannot open WASAPI loopback yet (its issue #510: PortAudio merged it
but has not released it). PyAudioWPatch is a PortAudio fork on PyPI that lists a
loopback twin of every output device ("Speakers (Realtek) [Loopback]"); it is a
Windows-only dependency, imported lazily. Every WASAPI device, microphones included,
is opened through it, so one process never loads two PortAudio libraries.

Only the selection logic and the capture plumbing are tested here, with a fake module
(tests/audio/test_platform_selection.py); real capture is verified on Windows only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from meetcap.audio.base import BLOCK_MS, AudioDevice, RingCapture
from meetcap.errors import DeviceError

HOST_API = "Windows WASAPI"
ID_PREFIX = "wasapi:"
INSTALL_HINT = "system audio on Windows needs PyAudioWPatch: pip install PyAudioWPatch"


def import_pyaudiowpatch() -> Any:  # pragma: no cover - Windows only
    try:
        import pyaudiowpatch
    except ImportError as exc:
        raise DeviceError(INSTALL_HINT) from exc
    return pyaudiowpatch


def _device_id(name: str, loopback: bool) -> str:
    return f"{ID_PREFIX}{'loopback' if loopback else 'mic'}:{name}"


def devices_from_pyaudio(pa: Any, pyaudio_module: Any) -> list[AudioDevice]:
    """Microphones and loopback devices of the WASAPI host API, from a PyAudio instance.

    The default loopback device is the loopback twin of the default output (where
    meeting apps play by default): PyAudioWPatch names it "<output name> [Loopback]".
    Ids are built from names, never from PortAudio indexes.
    """
    try:
        wasapi = pa.get_host_api_info_by_type(pyaudio_module.paWASAPI)
    except OSError as exc:
        raise DeviceError("WASAPI is not available on this system") from exc
    default_in = wasapi.get("defaultInputDevice", -1)
    default_out_index = wasapi.get("defaultOutputDevice", -1)
    infos = [pa.get_device_info_by_index(i) for i in range(pa.get_device_count())]
    inputs = [
        (index, info) for index, info in enumerate(infos)
        if info["hostApi"] == wasapi["index"] and info["maxInputChannels"] >= 1
    ]
    default_loopback = None
    if 0 <= default_out_index < len(infos):
        out_name = infos[default_out_index]["name"]
        twins = [info["name"] for _, info in inputs
                 if info.get("isLoopbackDevice") and info["name"].startswith(out_name)]
        exact = f"{out_name} [Loopback]"
        default_loopback = exact if exact in twins else (twins[0] if twins else None)
    devices = []
    for index, info in inputs:
        loopback = bool(info.get("isLoopbackDevice"))
        name = info["name"]
        devices.append(
            AudioDevice(
                id=_device_id(name, loopback),
                name=name,
                kind="loopback" if loopback else "mic",
                default=name == default_loopback if loopback else index == default_in,
                host_api=HOST_API,
                portaudio_name=name,
                rate_hz=int(info["defaultSampleRate"]),
                channels=min(int(info["maxInputChannels"]), 2),
            )
        )
    return devices


def list_devices(pyaudio_module: Any = None) -> list[AudioDevice]:
    """Every WASAPI capture device, loopback twins of the outputs included."""
    module = pyaudio_module or import_pyaudiowpatch()
    pa = module.PyAudio()
    try:
        return devices_from_pyaudio(pa, module)
    finally:
        pa.terminate()


class WasapiCapture(RingCapture):
    """A PyAudioWPatch input stream (microphone or loopback) feeding the ring.

    ``pyaudio_module`` is for tests (a fake); by default PyAudioWPatch is imported.
    """

    def __init__(self, device: AudioDevice, pyaudio_module: Any = None) -> None:
        super().__init__(device)
        # A loopback stream gets no callbacks at all while nothing plays: not a loss.
        self.stall_means_lost = device.kind != "loopback"
        self._module = pyaudio_module
        self._pa: Any = None
        self._stream: Any = None
        self._overflow_flag = 0
        self._continue: Any = None

    def _pa_callback(self, in_data: bytes, frame_count: int, time_info: Any, status: int):
        # PortAudio's thread: view the bytes as float32 frames, copy, count, return.
        block = np.frombuffer(in_data, dtype=np.float32).reshape(frame_count, -1)
        self._on_block(block, bool(status & self._overflow_flag))
        return (None, self._continue)

    def _find_index(self) -> int:
        loopback = self.device.kind == "loopback"
        for index in range(self._pa.get_device_count()):
            info = self._pa.get_device_info_by_index(index)
            if info["name"] == self.device.portaudio_name and bool(
                info.get("isLoopbackDevice")
            ) == loopback and info["maxInputChannels"] > 0:
                return index
        raise DeviceError(
            f"{self.device.name!r} ({self.device.id}) is not connected any more; "
            "run `meetcap devices` to see the devices there are"
        )

    def _start(self) -> None:
        module = self._module or import_pyaudiowpatch()
        self._overflow_flag = module.paInputOverflow
        self._continue = module.paContinue
        self._pa = module.PyAudio()
        try:
            self._stream = self._pa.open(
                format=module.paFloat32,
                channels=self.device.channels,
                rate=self.device.rate_hz,
                frames_per_buffer=self.device.rate_hz * BLOCK_MS // 1000,
                input=True,
                input_device_index=self._find_index(),
                stream_callback=self._pa_callback,
            )
        except (OSError, ValueError) as exc:
            self._pa.terminate()
            self._pa = None
            raise DeviceError(
                f"cannot open {self.device.name!r} ({self.device.id}): {exc}"
            ) from exc
        except BaseException:
            self._pa.terminate()
            self._pa = None
            raise

    def _stream_active(self) -> bool:
        try:
            return self._stream is not None and bool(self._stream.is_active())
        except OSError:  # the device vanished under the stream
            return False

    def _stop(self) -> None:
        stream, pa, self._stream, self._pa = self._stream, self._pa, None, None
        try:
            if stream is not None:
                stream.stop_stream()
                stream.close()
        except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone anyway
            pass
        finally:
            if pa is not None:
                pa.terminate()
