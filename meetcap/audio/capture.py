"""One input stream per source, feeding an :class:`AudioRing`: the capture dispatch.

:func:`make_capture` picks the backend a device's host API needs: WASAPI devices go to
windows_wasapi's :class:`WasapiCapture`, every other device to :class:`PortAudioCapture`
(Linux through linux_pulse's private ALSA pulse PCMs, macOS Core Audio). Every backend
has the shape of :class:`meetcap.audio.base.Capture`, and shares the ring and the
liveness rule of :class:`meetcap.audio.base.RingCapture`.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from meetcap.audio import windows_wasapi
from meetcap.audio.base import BLOCK_MS, AudioDevice, Capture, RingCapture
from meetcap.audio.lost_samples import LostSampleDetector
from meetcap.dsp import mixtrace
from meetcap.errors import DeviceError

if TYPE_CHECKING or sys.platform.startswith("linux"):
    # Only Linux opens PulseAudio sources (and keeps their ALSA config); every use of
    # linux_pulse below is behind a Linux check.
    from meetcap.audio import linux_pulse

__all__ = ["Capture", "PortAudioCapture", "make_capture"]


class PortAudioCapture(RingCapture):
    """A sounddevice ``InputStream`` (Linux through ALSA pulse PCMs, macOS Core Audio)."""

    def __init__(self, device: AudioDevice) -> None:
        super().__init__(device)
        self._stream = None
        self._counted = False  # counted in linux_pulse's open streams
        # Samples the server never delivered become silence in the ring, so the lane
        # keeps its place against the other (meetcap/audio/lost_samples.py).
        self.lost_samples = LostSampleDetector(device.rate_hz)
        self._trace = mixtrace.enabled()  # opt-in (MEETCAP_MIXTRACE)

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        now = time.monotonic()
        if self._trace:
            mixtrace.write("C", self.device.kind, now, frames, int(status.input_overflow))
        silence = self.lost_samples.on_block(frames, now, status.input_overflow)
        if silence:
            self.ring.write_silence(silence)
        self._on_block(indata, status.input_overflow)

    def _start(self) -> None:
        import sounddevice as sd

        self.lost_samples = LostSampleDetector(self.device.rate_hz)  # a new stream counts afresh
        try:
            if _is_pulse(self.device):
                with linux_pulse.stream_slot(self.device) as index:
                    self._stream = self._new_stream(sd, index)
                self._counted = True
            else:
                self._stream = self._new_stream(sd, _portaudio_index(sd, self.device))
        except (sd.PortAudioError, ValueError) as exc:
            raise DeviceError(
                f"cannot open {self.device.name!r} ({self.device.id}): {exc}"
            ) from exc

    def _new_stream(self, sd, index: int):
        stream = sd.InputStream(
            device=index,
            samplerate=self.device.rate_hz,
            channels=self.device.channels,
            dtype="float32",
            blocksize=self.device.rate_hz * BLOCK_MS // 1000,
            callback=self._callback,
        )
        try:
            stream.start()
        except BaseException:
            stream.close()
            raise
        return stream

    def _stream_active(self) -> bool:
        return self._stream is not None and self._stream.active

    def _stop(self) -> None:
        stream, self._stream = self._stream, None
        try:
            if stream is not None:
                stream.abort()
                stream.close()
        except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone anyway
            pass
        finally:
            if self._counted:  # only ever True for a PulseAudio source, on Linux
                self._counted = False
                linux_pulse.release_stream()


def _is_pulse(device: AudioDevice) -> bool:
    """A PulseAudio source, opened through its private ALSA PCM (Linux only)."""
    return sys.platform.startswith("linux") and device.host_api == linux_pulse.HOST_API


def _portaudio_index(sd, device: AudioDevice) -> int:
    """The PortAudio index of an input device named exactly ``device.portaudio_name``."""
    for index, info in enumerate(sd.query_devices()):
        if info["name"] == device.portaudio_name and info["max_input_channels"] > 0:
            return index
    raise DeviceError(
        f"{device.name!r} ({device.id}) is not connected any more; "
        "run `meetcap devices` to see the devices there are"
    )


def make_capture(device: AudioDevice) -> Capture:
    """A capture for ``device`` with the backend its host API needs (not opened yet)."""
    if device.host_api == windows_wasapi.HOST_API:
        return windows_wasapi.WasapiCapture(device)
    return PortAudioCapture(device)
