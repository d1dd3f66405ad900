"""Where the audio goes and how delivery is doing: address, state, counters."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QPushButton, QWidget

from meetcap.client.status import StreamStatus
from meetcap.gui.status_text import describe_stream
from meetcap.gui.widgets import Card, StatusLabel


def _count(value: int) -> str:
    return f"{value:,}"


def _rtt(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f} ms"


# (key, caption, the text of a StreamStatus)
_COUNTERS: tuple[tuple[str, str, Callable[[StreamStatus], str]], ...] = (
    ("frames_sent", "Sent", lambda s: _count(s.frames_sent)),
    ("frames_acked", "Acked", lambda s: _count(s.frames_acked)),
    ("frames_spooled", "In spool", lambda s: _count(s.frames_spooled)),
    ("ack_rtt_ms", "Ack RTT", lambda s: _rtt(s.ack_rtt_ms)),
    ("reconnects", "Reconnects", lambda s: _count(s.reconnects)),
)


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
        for column, (name, caption_text, _) in enumerate(_COUNTERS):
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

    def show_status(self, status: StreamStatus | None) -> None:
        """Show a client StreamStatus (None: no session yet)."""
        self.state.show_line(describe_stream(status))
        for name, _, text_of in _COUNTERS:
            label = self.counters[name]
            text = text_of(status) if status is not None else "–"
            if label.text() != text:
                label.setText(text)
