"""One PortAudio input stream per source, feeding an :class:`AudioRing`.

The callback only copies and counts. Device loss is decided outside the callback, by
the worker: PortAudio's ALSA host API does not always report an unplugged PulseAudio
source as an error; often the callbacks just stop. So a stream that is active but has
delivered nothing for ``STALL_S`` is treated as lost.
"""

from __future__ import annotations

import time

import numpy as np

from meetcap.audio import linux_pulse
from meetcap.audio.devices import AudioDevice
from meetcap.audio.ringbuffer import AudioRing
from meetcap.errors import DeviceError

# PortAudio delivers every 10-20 ms here; 1 s of nothing is far outside normal jitter,
# yet early enough for the "device lost" warning to appear at once for a person.
STALL_S = 1.0
# PulseAudio through the ALSA plugin takes 0.8-1.4 s to deliver the first block here
# (measured), so a freshly opened stream gets longer before it counts as lost.
STARTUP_GRACE_S = 3.0
RING_SECONDS = 4  # the worker drains every ~20 ms; 4 s absorbs any stall of the worker
BLOCK_MS = 20  # small blocks keep the mixer's 100 ms margin comfortable (dsp/mixer.py)


class SourceCapture:
    """Capture from one device into a ring buffer; the worker drains it with ``read``."""

    def __init__(self, device: AudioDevice) -> None:
        self.device = device
        self.ring = AudioRing(device.rate_hz * RING_SECONDS, device.channels)
        self.input_overflows = 0
        self._last_callback = 0.0  # 0.0 until the first block arrives
        self._opened_at = 0.0
        self._stream = None

    @property
    def overruns(self) -> int:
        return self.ring.overruns + self.input_overflows

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        # PortAudio's thread: copy, count, return. No locks, logging or allocation.
        if status.input_overflow:
            self.input_overflows += 1
        self.ring.write(indata)
        self._last_callback = time.monotonic()

    def open(self) -> None:
        """Open and start the stream; DeviceError with the cause if the device refuses."""
        import sounddevice as sd

        linux_pulse.rescan_if_idle()
        try:
            self._stream = sd.InputStream(
                device=self.device.portaudio_name,
                samplerate=self.device.rate_hz,
                channels=self.device.channels,
                dtype="float32",
                blocksize=self.device.rate_hz * BLOCK_MS // 1000,
                callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise DeviceError(f"cannot open {self.device.name!r} ({self.device.id}): {exc}") from exc
        linux_pulse.open_streams += 1
        self._opened_at = time.monotonic()

    def read(self) -> np.ndarray:
        return self.ring.read()

    def is_lost(self, now: float | None = None) -> bool:
        """True when the stream died or stopped delivering for STALL_S."""
        if self._stream is None:
            return True
        now = time.monotonic() if now is None else now
        if not self._stream.active:
            return True
        if self._last_callback == 0.0:
            return now - self._opened_at > STARTUP_GRACE_S
        return now - self._last_callback > STALL_S

    def close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        linux_pulse.open_streams -= 1
        try:
            stream.abort()
            stream.close()
        except Exception:  # noqa: BLE001 - a vanished device may fail to close; it is gone anyway
            pass
