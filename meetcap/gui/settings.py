"""The app's settings in QSettings: :class:`SessionSettings` saved and loaded.

Everything a person sets is saved as they change it and restored at the next start:
devices, gains, mutes, server URL and token, VAD and normalisation, the local copy
folder, live transcription and noise suppression on or off. The record itself is Qt-free
(meetcap/session/settings.py, shared with the CLI); this module only maps it to
QSettings keys. Values are stored as plain strings and
parsed back defensively: a settings file edited by hand (or written by another version)
gives defaults, never a crash.

Tests and the benchmark pass their own file (:meth:`SettingsStore.at_path`), so they
never touch the user's settings.
"""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QSettings

from meetcap.audio.manager import CaptureSettings
from meetcap.constants import CAPTURE_SOURCES
from meetcap.dsp.gain import GAIN_MAX_DB
from meetcap.session.settings import SessionSettings

ORGANIZATION = "meetcap"
APPLICATION = "meetcap"
# Stored as a device id when a person picked "None" on purpose (a missing key means
# "never chosen": the system's default device is picked then).
NO_DEVICE = "none"


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
    """Reads and writes :class:`SessionSettings` in a QSettings store. A fresh store
    gives the app's defaults: speech detection on (the CLI's default is off)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.qsettings = qsettings or QSettings(ORGANIZATION, APPLICATION)

    @classmethod
    def at_path(cls, path: str | Path) -> SettingsStore:
        """A store in an INI file of its own (tests, benchmarks, portable installs)."""
        return cls(QSettings(str(path), QSettings.Format.IniFormat))

    @property
    def location(self) -> str:
        return self.qsettings.fileName()

    @staticmethod
    def defaults() -> SessionSettings:
        """What a person who never changed anything gets: the system's default devices
        (picked once listed), 0 dB, speech detection and normalisation on, the built-in
        server."""
        return SessionSettings(capture=CaptureSettings(vad=True, normalize=True))

    def load(self) -> SessionSettings:
        q = self.qsettings
        settings = self.defaults()
        capture = settings.capture
        for source in CAPTURE_SOURCES:
            raw = q.value(f"devices/{source}")
            if raw is not None:
                text = str(raw)
                settings.set_device_id(source, "" if text == NO_DEVICE else text)
            capture.gain_db[source] = _to_gain(q.value(f"gain_db/{source}", "0"))
            capture.muted[source] = _to_bool(q.value(f"muted/{source}"), False)
        capture.vad = _to_bool(q.value("processing/vad"), True)
        capture.normalize = _to_bool(q.value("processing/normalize"), True)
        capture.tracks = _to_bool(q.value("processing/tracks"), False)
        echo = str(q.value("processing/echo_cancel") or "auto")
        capture.echo_cancel = echo if echo in ("auto", "on", "off") else "auto"
        capture.noise_suppress = _to_bool(q.value("processing/noise_suppress"), False)
        settings.server_url = str(q.value("server/url", "") or "")
        settings.token = str(q.value("server/token", "") or "")
        settings.local_copy = str(q.value("storage/local_copy_dir", "") or "")
        settings.transcribe = _to_bool(q.value("transcription/enabled"), True)
        settings.partials = _to_bool(q.value("transcription/partials"), True)
        return settings

    def save(self, settings: SessionSettings) -> None:
        q = self.qsettings
        capture = settings.capture
        for source in CAPTURE_SOURCES:
            device_id = settings.device_id(source)
            if device_id is None:
                q.remove(f"devices/{source}")
            else:
                q.setValue(f"devices/{source}", device_id or NO_DEVICE)
            q.setValue(f"gain_db/{source}", repr(float(capture.gain_db.get(source, 0.0))))
            q.setValue(f"muted/{source}", "true" if capture.muted.get(source) else "false")
        q.setValue("server/url", settings.server_url)
        q.setValue("server/token", settings.token)
        q.setValue("processing/vad", "true" if capture.vad else "false")
        q.setValue("processing/normalize", "true" if capture.normalize else "false")
        q.setValue("processing/tracks", "true" if capture.tracks else "false")
        q.setValue("processing/echo_cancel", capture.echo_cancel)
        q.setValue("processing/noise_suppress", "true" if capture.noise_suppress else "false")
        q.setValue("storage/local_copy_dir", settings.local_copy)
        q.setValue("transcription/enabled", "true" if settings.transcribe else "false")
        q.setValue("transcription/partials", "true" if settings.partials else "false")
        q.sync()
