"""Where the audio goes and how delivery is doing: address, state, counters."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from meetcap.gui.status_text import describe_stream
from meetcap.gui.widgets import Card, StatusLabel

# (attribute of StreamStatus, caption)
_COUNTERS = (
    ("frames_sent", "Sent"),
    ("frames_acked", "Acked"),
    ("frames_spooled", "In spool"),
    ("ack_rtt_ms", "Ack RTT"),
    ("reconnects", "Reconnects"),
)


def format_counter(name: str, value: object) -> str:
    if value is None:
        return "–"
    if name == "ack_rtt_ms":
        return f"{float(value):.0f} ms"  # type: ignore[arg-type]
    return f"{int(value):,}"  # type: ignore[call-overload]


class ConnectionPanel(Card):
    """``settings_requested`` fires when the Settings button is pressed."""

    settings_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Connection", parent)
        self.settings_button = QPushButton("Settings…", self)
        self.settings_button.setToolTip("Server address, token and local copy folder")
        self.header.addWidget(self.settings_button)
        self.settings_button.clicked.connect(self.settings_requested)

        address_row = QHBoxLayout()
        caption = QLabel("Server", self)
        caption.setObjectName("dim")
        caption.setFixedWidth(52)
        self.address = QLabel(self)
        self.address.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        address_row.addWidget(caption)
        address_row.addWidget(self.address, 1)
        self.body.addLayout(address_row)
        self.state = StatusLabel(self)
        self.state.label.setWordWrap(True)
        self.body.addWidget(self.state)

        grid = QGridLayout()
        grid.setHorizontalSpacing(18)
        grid.setVerticalSpacing(1)
        self.counters: dict[str, QLabel] = {}
        for column, (name, caption_text) in enumerate(_COUNTERS):
            caption_label = QLabel(caption_text, self)
            caption_label.setObjectName("dim")
            value = QLabel("–", self)
            value.setObjectName("numbers")
            value.setStyleSheet("font-size: 11pt;")
            grid.addWidget(caption_label, 0, column)
            grid.addWidget(value, 1, column)
            self.counters[name] = value
        grid.setColumnStretch(len(_COUNTERS), 1)
        self.body.addLayout(grid)
        self.show_status(None)

    def set_address(self, text: str) -> None:
        if self.address.text() != text:
            self.address.setText(text)

    def show_status(self, status: object | None) -> None:
        """Show a client StreamStatus (None: no session yet)."""
        self.state.show_line(describe_stream(status))
        for name, label in self.counters.items():
            text = format_counter(name, getattr(status, name, None)) if status else "–"
            if label.text() != text:
                label.setText(text)
