"""What the audio side tells the people and the programs above it: :class:`AudioEvent`.

Qt-free and free of any capture code, so the app, the CLI and the session core can
import the vocabulary without importing the worker that emits it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from meetcap.levels import Health

SOURCE_VAD = "vad"  # the ``source`` of VAD errors


class AudioEventKind(enum.Enum):
    """What an :class:`AudioEvent` reports."""

    HEALTH = "health"  # a source's (or the mix's) health changed: see ``health``
    DEVICE_LOST = "device_lost"  # a device vanished or stopped delivering
    DEVICE_RESTORED = "device_restored"  # a lost device is capturing again
    DEVICE_SWITCHED = "device_switched"  # set_device() opened the new device
    ERROR = "error"  # something failed: ``exception`` holds it (ModelError, DeviceError...)


@dataclass(frozen=True, slots=True)
class AudioEvent:
    """Something a person should hear about.

    ``source`` is "mic", "system", "mix", :data:`SOURCE_VAD` or None; ``message`` is a
    sentence fit to show; ``health`` is set for health, loss and restore events;
    ``exception`` for errors (e.g. a ModelError when the VAD model cannot be loaded:
    frames keep flowing, marked speech=False).
    """

    kind: AudioEventKind
    source: str | None
    message: str
    health: Health | None = None
    exception: BaseException | None = None
