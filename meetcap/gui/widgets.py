"""Small building blocks shared by the panels: a card frame, a status line with a dot."""

from __future__ import annotations

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from meetcap.gui import theme
from meetcap.gui.status_text import StatusLine


class Card(QFrame):
    """A rounded panel with a small upper-case title; add content to ``body``."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("card")
        self.body = QVBoxLayout(self)
        self.body.setContentsMargins(16, 12, 16, 14)
        self.body.setSpacing(9)
        self.header = QHBoxLayout()
        self.header.setSpacing(8)
        self.title_label = QLabel(title.upper(), self)
        self.title_label.setObjectName("cardTitle")
        self.header.addWidget(self.title_label)
        self.header.addStretch(1)
        self.body.addLayout(self.header)


class Dot(QWidget):
    """A small round light in a severity colour."""

    def __init__(self, parent: QWidget | None = None, diameter: int = 9) -> None:
        super().__init__(parent)
        self._color = QColor(theme.TEXT_DIM)
        self._diameter = diameter
        self.setFixedSize(QSize(diameter + 2, diameter + 2))

    def set_color(self, color: str) -> None:
        if QColor(color) != self._color:
            self._color = QColor(color)
            self.update()

    def color(self) -> QColor:
        return self._color

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self._color)
        painter.drawEllipse(QRectF(1, 1, self._diameter, self._diameter))


class ElidedLabel(QLabel):
    """One line of text, shortened in the middle when it does not fit (paths keep
    their start and their file name); the whole text is in the tooltip and ``text()``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._full = ""
        self.setMinimumWidth(80)

    def setText(self, text: str) -> None:  # noqa: N802 - Qt API
        if text == self._full:
            return
        self._full = text
        self.setToolTip(text)
        self._elide()

    def text(self) -> str:
        return self._full

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        super().resizeEvent(event)
        self._elide()

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(80, super().minimumSizeHint().height())

    def _elide(self) -> None:
        shown = self.fontMetrics().elidedText(self._full, Qt.TextElideMode.ElideMiddle,
                                              max(40, self.width()))
        if shown != super().text():
            super().setText(shown)


class StatusLabel(QWidget):
    """A coloured dot and a line of text; ``show_line`` changes them only on change."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.dot = Dot(self)
        self.label = QLabel(self)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(7)
        layout.addWidget(self.dot, 0, Qt.AlignmentFlag.AlignVCenter)
        layout.addWidget(self.label, 1)
        self.line: StatusLine | None = None

    def show_line(self, line: StatusLine) -> None:
        if line == self.line:
            return
        self.line = line
        color = theme.SEVERITY_COLORS[line.severity]
        self.dot.set_color(color)
        self.label.setText(line.text)
        self.label.setStyleSheet(
            f"color: {color if line.severity in ('warning', 'error') else theme.TEXT};"
        )

    def text(self) -> str:
        return self.label.text()
