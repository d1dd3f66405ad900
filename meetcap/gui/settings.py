"""The app's settings and their persistence in QSettings.

Everything a person sets is saved as they change it and restored at the next start:
devices, gains, mutes, server URL and token, VAD and normalisation, the local copy
folder. Values are stored as plain strings and parsed back defensively: a settings file
edited by hand (or written by another version) gives defaults, never a crash.

Tests and the benchmark pass their own file (:meth:`SettingsStore.at_path`), so they
never touch the user's settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QSettings

from meetcap.constants import CAPTURE_SOURCES
from meetcap.dsp.gain import GAIN_MAX_DB

ORGANIZATION = "meetcap"
APPLICATION = "meetcap"
# Stored as a device id when a person picked "None" on purpose (a missing key means
# "never chosen": the system's default device is picked then).
NO_DEVICE = "none"


@dataclass
class AppSettings:
    """What the app remembers. ``mic_device_id``/``system_device_id``: None = use the
    system default once devices are listed; ``""`` = a person chose none.
    ``server_url`` empty = the built-in local server. ``local_copy_dir`` empty = no
    local copy."""

    mic_device_id: str | None = None
    system_device_id: str | None = None
    gain_db: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in CAPTURE_SOURCES})
    muted: dict[str, bool] = field(default_factory=lambda: {s: False for s in CAPTURE_SOURCES})
    server_url: str = ""
    token: str = ""
    vad: bool = True
    normalize: bool = True
    local_copy_dir: str = ""

    def device_id(self, source: str) -> str | None:
        return getattr(self, f"{source}_device_id")

    def set_device_id(self, source: str, device_id: str | None) -> None:
        setattr(self, f"{source}_device_id", device_id)


def _to_bool(value: object, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    return default


def _to_gain(value: object) -> float:
    try:
        gain = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0
    if math.isnan(gain):
        return 0.0
    return min(gain, GAIN_MAX_DB)  # -inf (off) parses from "-inf"


class SettingsStore:
    """Reads and writes :class:`AppSettings` in a QSettings store."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.qsettings = qsettings or QSettings(ORGANIZATION, APPLICATION)

    @classmethod
    def at_path(cls, path: str | Path) -> SettingsStore:
        """A store in an INI file of its own (tests, benchmarks, portable installs)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    @property
    def location(self) -> str:
        return self.qsettings.fileName()

    def load(self) -> AppSettings:
        q = self.qsettings
        settings = AppSettings()
        for source in CAPTURE_SOURCES:
            raw = q.value(f"devices/{source}")
            if raw is not None:
                text = str(raw)
                settings.set_device_id(source, "" if text == NO_DEVICE else text)
            settings.gain_db[source] = _to_gain(q.value(f"gain_db/{source}", "0"))
            settings.muted[source] = _to_bool(q.value(f"muted/{source}"), False)
        settings.server_url = str(q.value("server/url", "") or "")
        settings.token = str(q.value("server/token", "") or "")
        settings.vad = _to_bool(q.value("processing/vad"), True)
        settings.normalize = _to_bool(q.value("processing/normalize"), True)
        settings.local_copy_dir = str(q.value("storage/local_copy_dir", "") or "")
        return settings

    def save(self, settings: AppSettings) -> None:
        q = self.qsettings
        for source in CAPTURE_SOURCES:
            device_id = settings.device_id(source)
            if device_id is None:
                q.remove(f"devices/{source}")
            else:
                q.setValue(f"devices/{source}", device_id or NO_DEVICE)
            q.setValue(f"gain_db/{source}", repr(float(settings.gain_db.get(source, 0.0))))
            q.setValue(f"muted/{source}", "true" if settings.muted.get(source) else "false")
        q.setValue("server/url", settings.server_url)
        q.setValue("server/token", settings.token)
        q.setValue("processing/vad", "true" if settings.vad else "false")
        q.setValue("processing/normalize", "true" if settings.normalize else "false")
        q.setValue("storage/local_copy_dir", settings.local_copy_dir)
        q.sync()
