"""Helpers of the GUI tests: settings records and what a meter shows."""

from __future__ import annotations

from meetcap.gui.level_meter import LevelMeter
from meetcap.gui.settings import SettingsStore
from meetcap.session import SessionSettings

_CAPTURE_FIELDS = {"mic_device_id", "system_device_id", "gain_db", "muted", "vad", "normalize"}


def app_settings(**fields) -> SessionSettings:
    """The app's settings record: the app's defaults with ``fields`` changed (capture
    fields by their CaptureSettings names, the rest by SessionSettings names)."""
    settings = SettingsStore.defaults()
    for name, value in fields.items():
        setattr(settings.capture if name in _CAPTURE_FIELDS else settings, name, value)
    return settings


def rms_extent_px(meter: LevelMeter) -> float:
    """How long the meter's RMS bar is drawn right now, in pixels."""
    return meter.x_for_dbfs(meter.ballistics.rms_dbfs) - meter.bar_rect().x()
