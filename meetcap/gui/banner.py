"""Warnings nobody can miss: a coloured banner in the window, and the bookkeeping that
decides which warnings are new (those also go to the tray as notifications)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from meetcap.gui import theme
from meetcap.gui.status_text import Warning

# A warning that clears and comes back within this time is not announced again (a
# flapping "silent" must not flood the notification area).
RENOTIFY_AFTER_S = 60.0


class WarningTracker:
    """Remembers which warnings are showing; :meth:`update` returns the ones to announce."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.active: dict[str, Warning] = {}
        self._announced_at: dict[str, float] = {}

    def update(self, warnings: Sequence[Warning]) -> list[Warning]:
        now = self._clock()
        current = {w.key: w for w in warnings}
        fresh = []
        for key, warning in current.items():
            if key in self.active:
                continue
            last = self._announced_at.get(key)
            if last is None or now - last >= RENOTIFY_AFTER_S:
                fresh.append(warning)
                self._announced_at[key] = now
        self.active = current
        return fresh

    def clear(self) -> None:
        self.active = {}


class _Row(QFrame):
    def __init__(self, warning: Warning, parent: QWidget) -> None:
        super().__init__(parent)
        color = theme.SEVERITY_COLORS[warning.severity]
        self.setObjectName("warningRow")
        self.setStyleSheet(
            f"QFrame#warningRow {{ background: {color}22; border: 1px solid {color}; "
            "border-radius: 8px; }"
        )
        self.title = QLabel(warning.title, self)
        self.title.setStyleSheet(f"color: {color}; font-weight: 700; background: transparent;")
        self.text = QLabel(warning.text, self)
        self.text.setWordWrap(True)
        self.text.setStyleSheet("background: transparent;")
        mark = QLabel("!" if warning.severity == "error" else "⚠", self)
        mark.setFixedWidth(18)
        mark.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        mark.setStyleSheet(f"color: {color}; font-weight: 800; font-size: 12pt; "
                           "background: transparent;")
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addWidget(self.title)
        column.addWidget(self.text)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 9)
        layout.setSpacing(10)
        layout.addWidget(mark)
        layout.addLayout(column, 1)


class WarningBanner(QWidget):
    """Shows the current warnings, most severe first; hidden when there are none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self._shown: tuple[Warning, ...] = ()
        self._rows: list[_Row] = []
        self.setVisible(False)

    def show_warnings(self, warnings: Sequence[Warning]) -> None:
        order = {"error": 0, "warning": 1, "info": 2, "ok": 3, "idle": 4}
        ordered = tuple(sorted(warnings, key=lambda w: order[w.severity]))
        if ordered == self._shown:
            return
        same_rows = [w.key for w in ordered] == [w.key for w in self._shown]
        self._shown = ordered
        if same_rows:  # only the words changed ("silent for 12 s"): no relayout, no flicker
            for row, warning in zip(self._rows, ordered, strict=True):
                row.title.setText(warning.title)
                row.text.setText(warning.text)
            return
        for row in self._rows:
            self._layout.removeWidget(row)
            row.deleteLater()
        self._rows = [_Row(warning, self) for warning in ordered]
        for row in self._rows:
            self._layout.addWidget(row)
        self.setVisible(bool(ordered))

    def warnings(self) -> tuple[Warning, ...]:
        return self._shown

    def text(self) -> str:
        """Everything the banner says, for tests and accessibility."""
        return "\n".join(f"{w.title}: {w.text}" for w in self._shown)
