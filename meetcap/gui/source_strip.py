"""One capture source's strip: device picker, gain, mute, meter, numbers and health."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from meetcap.audio.devices import AudioDevice, DeviceKind
from meetcap.gui.device_picker import DevicePicker
from meetcap.gui.gain_control import GainControl
from meetcap.gui.level_meter import LevelMeter
from meetcap.gui.status_text import StatusLine, describe_source, format_dbfs
from meetcap.gui.widgets import Card, StatusLabel
from meetcap.levels import SourceLevels


class SourceStrip(Card):
    """The controls and meter of ``source`` ("mic" or "system").

    Signals carry what a person did: ``device_picked(source, id | None)``,
    ``gain_changed(source, gain_db)``, ``mute_toggled(source, muted)``. The window feeds
    it levels: :meth:`show_levels` + :meth:`tick` at display rate, :meth:`refresh_text`
    a few times a second.
    """

    device_picked = Signal(str, object)
    gain_changed = Signal(str, float)
    mute_toggled = Signal(str, bool)

    def __init__(self, source: str, title: str, kind: DeviceKind,
                 parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.source = source
        self.health = StatusLabel(self)
        self.header.addWidget(self.health)

        self.picker = DevicePicker(kind, self)
        self.picker.setAccessibleName(f"{title} device")
        self.mute_button = QPushButton("Mute", self)
        self.mute_button.setCheckable(True)
        self.mute_button.setFixedWidth(84)
        self.mute_button.setToolTip(f"Leave {title.lower()} out of the recording")
        row = QHBoxLayout()
        row.setSpacing(10)
        row.addWidget(self.picker, 1)
        row.addWidget(self.mute_button)
        self.body.addLayout(row)

        self.gain = GainControl(self)
        self.body.addWidget(self.gain)
        self.meter = LevelMeter(self)
        self.body.addWidget(self.meter)
        self.numbers = QLabel(self)
        self.numbers.setObjectName("numbers")
        self.numbers.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.body.addWidget(self.numbers)

        self.picker.device_changed.connect(self._on_device)
        self.gain.gain_db_changed.connect(self._on_gain)
        self.mute_button.toggled.connect(self._on_mute)
        self._numbers_shown: tuple[str, str] | None = None
        self.refresh_text(SourceLevels(source), recording=False)

    # -- settings in

    def apply_settings(self, device_id: str | None, gain_db: float, muted: bool) -> None:
        """Show saved settings (emits nothing)."""
        self.picker.set_current_id(device_id)
        self.gain.set_gain_db(gain_db)
        self.mute_button.blockSignals(True)
        self.mute_button.setChecked(muted)
        self.mute_button.blockSignals(False)
        self._label_mute(muted)

    def set_devices(self, devices: Sequence[AudioDevice]) -> None:
        self.picker.set_devices(devices)

    @property
    def muted(self) -> bool:
        return self.mute_button.isChecked()

    # -- levels in

    def show_levels(self, levels: SourceLevels, now_s: float) -> None:
        self.meter.show_levels(levels, now_s)

    def refresh_text(self, levels: SourceLevels, *, recording: bool) -> StatusLine:
        """Update the numbers and the health line (a few times a second)."""
        shown = (format_dbfs(levels.peak_dbfs), format_dbfs(levels.rms_dbfs))
        if not recording:
            shown = ("  -- ", "  -- ")
        if shown != self._numbers_shown:
            self._numbers_shown = shown
            self.numbers.setText(f"peak {shown[0]}   rms {shown[1]}  dBFS")
        line = describe_source(
            levels, user_muted=self.muted, has_device=self.picker.current_id() is not None,
            recording=recording,
        )
        self.health.show_line(line)
        return line

    def _on_device(self, device_id: str | None) -> None:
        self.device_picked.emit(self.source, device_id)

    def _on_gain(self, gain_db: float) -> None:
        self.gain_changed.emit(self.source, gain_db)

    def _on_mute(self, muted: bool) -> None:
        self._label_mute(muted)
        self.mute_toggled.emit(self.source, muted)

    def _label_mute(self, muted: bool) -> None:
        self.mute_button.setText("Unmute" if muted else "Mute")
