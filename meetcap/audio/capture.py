"""One input stream per source, feeding an :class:`AudioRing`.

Every backend has the same shape (:class:`Capture`): ``open``, ``read`` (drain the
ring, on the worker thread), ``pending_frames``, ``overruns``, ``is_lost`` and
``close``. The audio callback only copies into the ring and counts; device loss is
decided outside the callback, by the worker: PortAudio's ALSA host API does not always
report an unplugged PulseAudio source as an error, often the callbacks just stop. So a
stream that is active but has delivered nothing for ``STALL_S`` is treated as lost.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np

from meetcap.audio import linux_pulse
from meetcap.audio.devices import AudioDevice
from meetcap.audio.ringbuffer import AudioRing
from meetcap.errors import DeviceError

# PortAudio delivers every 10-20 ms here; 1 s of nothing is far outside normal jitter,
# yet early enough for the "device lost" warning to appear at once for a person.
STALL_S = 1.0
# A new PulseAudio record stream starts delivering once the source's current cycle
# ends: a monitor of a sink whose players asked for big buffers (paplay: 2 s) delivers
# its first block 0.6-1.9 s after opening here (0.2 s with a 20 ms player). So a freshly
# opened stream gets longer before it counts as lost.
STARTUP_GRACE_S = 3.0
RING_SECONDS = 4  # the worker drains every ~20 ms; 4 s absorbs any stall of the worker
BLOCK_MS = 20  # small blocks keep the mixer's 100 ms margin comfortable (dsp/mixer.py)


class Capture(Protocol):
    """What the pipeline worker needs from a source's capture (any backend, or a test's
    synthetic source). Only ``read``/``pending_frames`` may run concurrently with the
    audio thread; the worker calls everything else."""

    device: AudioDevice

    def open(self) -> None:
        """Start capturing; DeviceError (with the cause) if the device refuses."""

    def read(self) -> np.ndarray:
        """Everything captured since the last read: float32 ``(frames, channels)``."""

    def pending_frames(self) -> int:
        """How many frames ``read`` would return now."""

    @property
    def overruns(self) -> int:
        """Blocks lost so far (device overflow or ring full)."""

    def is_lost(self, now: float) -> bool:
        """True once the stream died or stopped delivering (``now``: time.monotonic())."""

    def close(self) -> None:
        """Stop and release the device; safe to call twice, and on a vanished device."""


class RingCapture:
    """The part every backend shares: the ring, the counters, the liveness rule.

    Subclasses open their stream in ``_start`` with :meth:`_on_block` as the (body of
    the) callback, and implement ``_stop`` and ``_stream_active``.
    """

    # WASAPI loopback delivers no callbacks at all while nothing plays, so for it a
    # silence is not a loss (subclasses say so); loss then shows as a dead stream or
    # the device leaving the list.
    stall_means_lost = True

    def __init__(self, device: AudioDevice) -> None:
        self.device = device
        self.ring = AudioRing(device.rate_hz * RING_SECONDS, device.channels)
        self.input_overflows = 0  # written by the audio thread only
        self._last_block = 0.0  # 0.0 until the first block arrives
        self._opened_at = 0.0
        self._open = False

    # -- audio thread

    def _on_block(self, block: np.ndarray, overflowed: bool) -> None:
        # The audio thread: copy, count, return. No locks, no logging, no allocation.
        if overflowed:
            self.input_overflows += 1
        self.ring.write(block)
        self._last_block = time.monotonic()

    # -- worker thread

    @property
    def overruns(self) -> int:
        return self.ring.overruns + self.input_overflows

    def pending_frames(self) -> int:
        return self.ring.available()

    def read(self) -> np.ndarray:
        return self.ring.read()

    def open(self) -> None:
        self._start()
        self._open = True
        self._opened_at = time.monotonic()

    def is_lost(self, now: float) -> bool:
        if not self._open or not self._stream_active():
            return True
        if not self.stall_means_lost:
            return False
        if self._last_block == 0.0:
            return now - self._opened_at > STARTUP_GRACE_S
        return now - self._last_block > STALL_S

    def close(self) -> None:
        if self._open:
            self._open = False
            self._stop()

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        raise NotImplementedError

    def _stream_active(self) -> bool:
        raise NotImplementedError


class PortAudioCapture(RingCapture):
    """A sounddevice ``InputStream`` (Linux through ALSA pulse PCMs, macOS Core Audio)."""

    def __init__(self, device: AudioDevice) -> None:
        super().__init__(device)
        self._stream = None
        self._counted = False  # counted in linux_pulse's open streams

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        self._on_block(indata, status.input_overflow)

    def _start(self) -> None:
        import sounddevice as sd

        try:
            if self.device.host_api == linux_pulse.HOST_API:
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
            if self._counted:
                self._counted = False
                linux_pulse.release_stream()


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
    from meetcap.audio import windows_wasapi

    if device.host_api == windows_wasapi.HOST_API:
        return windows_wasapi.WasapiCapture(device)
    return PortAudioCapture(device)
