"""The shared types at the bottom of the audio package: what every platform module and
the dispatch on top of them agree on.

    AudioDevice, DeviceKind   one capture source, with an id stable across restarts
    Capture                   what the pipeline worker needs from a source's capture
    RingCapture               the ring, the counters and the liveness rule every backend shares
    BLOCK_MS, STALL_S, ...    the timing every backend keeps to

The audio callback only copies into the ring and counts; device loss is decided
outside the callback, by the worker: PortAudio's ALSA host API does not always report
an unplugged PulseAudio source as an error, often the callbacks just stop. So a stream
that is active but has delivered nothing for ``STALL_S`` is treated as lost.

Imports nothing from meetcap.audio but the ring buffer: the platform modules
(linux_pulse, windows_wasapi, macos, portaudio_list) import this, and devices.py and
capture.py, which pick a platform, import them (tests/audio/test_layering.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from meetcap.audio.ringbuffer import AudioRing

DeviceKind = Literal["mic", "loopback"]


@dataclass(frozen=True, slots=True)
class AudioDevice:
    """One capture source.

    ``id`` is what settings store and the CLI takes (``--mic``/``--system``): built
    from the OS's name for the device (``pulse:<source name>``, ``wasapi:loopback:<name>``,
    ``coreaudio:<name>``), so it survives restarts and hot-plugs. ``name`` is what a
    person recognises. ``kind`` is "mic" or "loopback" (system audio). ``portaudio_name``
    is what the capture backend opens; ``rate_hz``/``channels`` are the format it is
    opened with (the device's own rate, at most 2 channels).
    """

    id: str
    name: str
    kind: DeviceKind
    default: bool
    host_api: str
    portaudio_name: str
    rate_hz: int = 48_000
    channels: int = 1

    def to_json(self) -> dict[str, object]:
        """The fields ``meetcap devices --json`` prints."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "default": self.default,
            "host_api": self.host_api,
            "rate_hz": self.rate_hz,
            "channels": self.channels,
        }


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
