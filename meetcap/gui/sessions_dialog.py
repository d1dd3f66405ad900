"""The list of past sessions: date, duration, transcript, where each is stored.

Lists what the built-in server stored in the data folder (meetcap/gui/stored_sessions.py).
Open (or a double-click) emits ``open_requested`` with the session; the window shows its
transcript in the pane, where a click on a line plays the audio from there, and Play
plays it from a typed time (a session with no transcript has no line to click).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from meetcap.gui.status_text import format_elapsed
from meetcap.gui.stored_sessions import StoredSession, list_sessions, transcript_summary

COLUMNS = ("Date", "Duration", "Transcript", "Stored at")


def session_date(session: StoredSession) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(session.started_at))


class SessionsDialog(QDialog):
    """See the module docstring. :meth:`refresh` re-reads the folder."""

    open_requested = Signal(object)  # StoredSession

    def __init__(self, folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.folder = Path(folder)
        self.setWindowTitle("Past sessions")
        self.resize(760, 420)
        self.sessions: list[StoredSession] = []
        self.where = QLabel(self)
        self.where.setObjectName("dim")
        self.where.setWordWrap(True)
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for column in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.cellDoubleClicked.connect(lambda row, _col: self.open_row(row))
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Open
                                        | QDialogButtonBox.StandardButton.Close, self)
        self.open_button = self.buttons.button(QDialogButtonBox.StandardButton.Open)
        self.open_button.clicked.connect(lambda: self.open_row(self.table.currentRow()))
        self.buttons.rejected.connect(self.reject)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.where)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.buttons)
        self.refresh()

    def refresh(self) -> None:
        self.sessions = list_sessions(self.folder)
        self.where.setText(
            f"Sessions recorded with the built-in server, in {self.folder}"
            if self.sessions else f"No sessions stored in {self.folder} yet.")
        self.table.setRowCount(len(self.sessions))
        for row, session in enumerate(self.sessions):
            cells = (session_date(session), format_elapsed(session.duration_s),
                     transcript_summary(session), str(session.wav))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, column, item)
        if self.sessions:
            self.table.selectRow(0)
        self._update_buttons()

    def row_texts(self, row: int) -> list[str]:
        items = [self.table.item(row, c) for c in range(len(COLUMNS))]
        return [item.text() if item is not None else "" for item in items]

    def open_row(self, row: int) -> None:
        if 0 <= row < len(self.sessions):
            self.open_requested.emit(self.sessions[row])
            self.accept()

    def _update_buttons(self) -> None:
        self.open_button.setEnabled(self.table.currentRow() >= 0 and bool(self.sessions))


__all__ = ["SessionsDialog"]
