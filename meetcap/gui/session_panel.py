"""The header: app title, Start/Stop, elapsed time and where the session is stored."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from meetcap.gui import icons
from meetcap.gui.status_text import format_elapsed
from meetcap.gui.widgets import ElidedLabel
from meetcap.session.recorder import Phase

# What the session controls show in each phase of a session.
_BUTTON = {
    Phase.IDLE: ("Start recording", True),
    Phase.STARTING: ("Starting…", False),
    Phase.RECORDING: ("Stop", True),
    Phase.STOPPING: ("Finishing…", False),
}


class SessionPanel(QWidget):
    """``start_requested`` / ``stop_requested`` fire from the one big button."""

    start_requested = Signal()
    stop_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        logo = QLabel(self)
        logo.setPixmap(icons.icon("meetcap").pixmap(34, 34))
        title = QLabel("meetcap", self)
        title.setObjectName("appTitle")
        self.storage = ElidedLabel(self)
        self.storage.setObjectName("dim")
        self.storage.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        titles = QVBoxLayout()
        titles.setSpacing(1)
        titles.addWidget(title)
        titles.addWidget(self.storage)

        self.elapsed = QLabel("00:00", self)
        self.elapsed.setObjectName("elapsed")
        self.elapsed.setToolTip("Time since the recording started")
        self.button = QPushButton(self)
        self.button.setObjectName("record")
        self.button.setMinimumWidth(150)
        self.button.clicked.connect(self._on_click)

        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(12)
        layout.addWidget(logo)
        layout.addLayout(titles, 1)
        layout.addWidget(self.elapsed)
        layout.addSpacing(6)
        layout.addWidget(self.button)
        self.phase: Phase | None = None
        self.set_phase(Phase.IDLE)
        self.set_storage("")

    def set_phase(self, phase: Phase) -> None:
        if phase == self.phase:
            return
        self.phase = phase
        text, enabled = _BUTTON[phase]
        self.button.setText(text)
        self.button.setEnabled(enabled)
        self.button.setProperty("recording", phase in (Phase.RECORDING, Phase.STOPPING))
        self.button.style().unpolish(self.button)  # re-read the style sheet for the property
        self.button.style().polish(self.button)

    def set_elapsed(self, seconds: float) -> None:
        text = format_elapsed(seconds)
        if self.elapsed.text() != text:
            self.elapsed.setText(text)

    def set_storage(self, text: str) -> None:
        if self.storage.text() != text:
            self.storage.setText(text)

    def _on_click(self) -> None:
        if self.phase is Phase.IDLE:
            self.start_requested.emit()
        elif self.phase is Phase.RECORDING:
            self.stop_requested.emit()
