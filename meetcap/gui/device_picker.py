"""A device picker: the names people recognise, system-audio (loopback) sources marked.

Both strips list every capture source (a person may well want to record a monitor as
their "microphone"), the strip's own kind first. The list is rebuilt whenever the
devices change; the pick survives the rebuild, and a picked device that disappears
stays in the list marked "disconnected", so nobody's choice is silently replaced.
"""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QSizePolicy, QWidget

from meetcap.audio.devices import AudioDevice, DeviceKind
from meetcap.gui import icons

NO_DEVICE_LABEL = "None (don't record this)"


def device_label(device: AudioDevice) -> str:
    """What the list shows for a device."""
    label = device.name
    if device.kind == "loopback":
        label += "  (system audio)"
    if device.default:
        label += "  · default"
    return label


class DevicePicker(QComboBox):
    """``device_changed(str | None)`` fires when a person picks (never on a refresh)."""

    device_changed = Signal(object)

    def __init__(self, kind: DeviceKind, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.kind = kind
        self._current_id: str | None = None
        self._devices: tuple[AudioDevice, ...] = ()
        self._names: dict[str, str] = {}  # every id ever listed -> its name (for "disconnected")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumContentsLength(24)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.activated.connect(self._on_activated)
        self._rebuild()

    def current_id(self) -> str | None:
        """The picked device id (None: nothing picked)."""
        return self._current_id

    def devices(self) -> tuple[AudioDevice, ...]:
        return self._devices

    def set_current_id(self, device_id: str | None) -> None:
        """Select a device (from settings) without emitting ``device_changed``."""
        self._current_id = device_id or None
        self._rebuild()

    def set_devices(self, devices: Sequence[AudioDevice]) -> None:
        """Show a new device list, keeping the pick."""
        self._devices = tuple(devices)
        self._names.update({d.id: d.name for d in self._devices})
        self._rebuild()

    def is_current_connected(self) -> bool:
        return self._current_id is not None and any(d.id == self._current_id for d in self._devices)

    def _ordered(self) -> list[AudioDevice]:
        return sorted(self._devices, key=lambda d: (d.kind != self.kind, not d.default, d.name))

    def _rebuild(self) -> None:
        self.blockSignals(True)
        try:
            self.clear()
            self.addItem(NO_DEVICE_LABEL, None)
            previous_kind: str | None = None
            for device in self._ordered():
                if previous_kind is not None and device.kind != previous_kind:
                    self.insertSeparator(self.count())
                previous_kind = device.kind
                glyph = "speaker" if device.kind == "loopback" else "mic"
                self.addItem(icons.icon(glyph), device_label(device), device.id)
                self.setItemData(self.count() - 1, f"id: {device.id}", Qt.ItemDataRole.ToolTipRole)
            if self._current_id is not None and not self.is_current_connected():
                name = self._names.get(self._current_id, self._current_id)
                self.addItem(f"{name}  (disconnected)", self._current_id)
            index = self.findData(self._current_id) if self._current_id is not None else 0
            self.setCurrentIndex(max(0, index))
        finally:
            self.blockSignals(False)

    def _on_activated(self, index: int) -> None:
        device_id = self.itemData(index)
        if device_id == self._current_id:
            return
        self._current_id = device_id
        self._rebuild()  # drops a "disconnected" entry the person moved away from
        self.device_changed.emit(device_id)
