"""A source's gain: a slider from off to +12 dB in 0.5 dB steps, with the value shown.

The lowest position is "off" (``-inf`` dB: exact zeros, as the DSP treats anything at or
below -60 dB). Double-click the slider to go back to 0 dB.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QWidget

from meetcap.dsp.gain import GAIN_MAX_DB, GAIN_OFF_DB

GAIN_STEP_DB = 0.5
_STEPS_PER_DB = round(1 / GAIN_STEP_DB)
_MIN_POS = round(GAIN_OFF_DB * _STEPS_PER_DB)
_MAX_POS = round(GAIN_MAX_DB * _STEPS_PER_DB)


def position_to_db(position: int) -> float:
    """Slider position -> gain in dB; the lowest position is off (-inf)."""
    if position <= _MIN_POS:
        return -math.inf
    return position / _STEPS_PER_DB


def db_to_position(gain_db: float) -> int:
    """Gain in dB -> the nearest slider position (clamped to the slider's range)."""
    if math.isnan(gain_db) or gain_db <= GAIN_OFF_DB:
        return _MIN_POS
    return max(_MIN_POS, min(_MAX_POS, round(gain_db * _STEPS_PER_DB)))


def format_gain(gain_db: float) -> str:
    if gain_db == -math.inf or gain_db <= GAIN_OFF_DB:
        return "off"
    if abs(gain_db) < GAIN_STEP_DB / 2:
        return "0.0 dB"
    return f"{gain_db:+.1f} dB"


class GainSlider(QSlider):
    """The slider itself: double-click resets to 0 dB."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(Qt.Orientation.Horizontal, parent)
        self.setRange(_MIN_POS, _MAX_POS)
        self.setSingleStep(1)  # arrow keys: 0.5 dB
        self.setPageStep(3 * _STEPS_PER_DB)  # page keys / clicks in the groove: 3 dB
        self.setValue(0)
        self.setToolTip("Gain, from off to +12 dB. Double-click for 0 dB.")

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self.setValue(0)
        event.accept()


class GainControl(QWidget):
    """Slider + value label. ``gain_db_changed(float)`` fires on every user change."""

    gain_db_changed = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.slider = GainSlider(self)
        self.value_label = QLabel(self)
        self.value_label.setObjectName("numbers")
        self.value_label.setMinimumWidth(64)
        self.value_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        title = QLabel("Gain", self)
        title.setObjectName("dim")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(10)
        layout.addWidget(title)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        self.slider.valueChanged.connect(self._on_value)
        self._show(0.0)

    @property
    def gain_db(self) -> float:
        return position_to_db(self.slider.value())

    def set_gain_db(self, gain_db: float) -> None:
        """Show a gain (from settings) without emitting ``gain_db_changed``."""
        self.slider.blockSignals(True)
        self.slider.setValue(db_to_position(gain_db))
        self.slider.blockSignals(False)
        self._show(self.gain_db)

    def _on_value(self, position: int) -> None:
        gain_db = position_to_db(position)
        self._show(gain_db)
        self.gain_db_changed.emit(gain_db)

    def _show(self, gain_db: float) -> None:
        self.value_label.setText(format_gain(gain_db))
