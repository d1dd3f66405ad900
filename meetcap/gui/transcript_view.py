"""The transcript itself: one line per final segment, the current partial below them.

A :class:`QPlainTextEdit`, read-only but selectable and copyable. Its document is only
ever edited at the end (a final is one new block, a partial replaces the last block),
so a segment costs the same in a meeting of thousands as in the first minute:
QPlainTextEdit lays out blocks one by one, and nothing above the end is touched. The
view follows the end while the scroll bar is at the bottom; a person who scrolls up
stops it, and scrolling back to the bottom resumes it.

Search highlights every match (up to :data:`MAX_HIGHLIGHTS`) and jumps between them.
In a stored session (``clickable``), a plain click on a line (no drag, no selection)
emits ``segment_clicked`` with that line's segment: the pane plays the audio from there.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt, QTimer, Signal
from PySide6.QtGui import (
    QColor,
    QFont,
    QMouseEvent,
    QTextCharFormat,
    QTextCursor,
)
from PySide6.QtWidgets import QPlainTextEdit, QTextEdit, QWidget

from meetcap.gui import theme
from meetcap.gui.status_text import format_elapsed
from meetcap.transcribe.segments import TranscriptSegment

# The scroll bar counts as "at the bottom" within this many lines of it (a wheel notch
# is 3 lines; one line of slack keeps following through rounding while wrapping).
FOLLOW_SLACK = 1
# Beyond this many matches, only the count is shown: painting thousands of selections
# on every repaint costs more than a person looking for a word needs.
MAX_HIGHLIGHTS = 500
# New lines are searched at most this often while a search is open.
RESEARCH_DELAY_MS = 300
# A press and release this close together is a click, not a drag.
CLICK_SLOP_PX = 4

# The names segments carry (meetcap/frames.py SPEAKER_NAMES) as the pane says them.
_SPEAKERS = {"you": "You", "others": "Others", "both": "You and others", "nobody": ""}


def speaker_label(speaker: str | None) -> str:
    """What the transcript calls a speaker: You (the microphone), Others (the meeting's
    sound), nothing while nobody knows; another name (a later engine's) as it comes."""
    if not speaker:
        return ""
    return _SPEAKERS.get(speaker.strip().lower(), speaker.strip())


def segment_line(segment: TranscriptSegment) -> tuple[str, str, str]:
    """(time, speaker, text) of one line: the time from the session's start."""
    return format_elapsed(segment.start_s), speaker_label(segment.speaker), segment.text.strip()


def _char_format(color: str, *, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    fmt = QTextCharFormat()
    fmt.setForeground(QColor(color))
    if bold:
        fmt.setFontWeight(QFont.Weight.DemiBold)
    fmt.setFontItalic(italic)
    return fmt


class TranscriptView(QPlainTextEdit):
    """See the module docstring. Feed it with :meth:`add_segment` (finals and partials,
    as they come) or :meth:`set_segments` (a stored transcript)."""

    segment_clicked = Signal(object)  # TranscriptSegment (clickable views only)
    matches_changed = Signal(int, int)  # current (1-based, 0: none), total

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)  # an undo stack of every segment is pure waste
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                     | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setPlaceholderText("The words appear here as people speak.")
        self.clickable = False
        self.finals: list[TranscriptSegment] = []
        self.partial: TranscriptSegment | None = None
        self._ids: set[int] = set()
        self.following = True
        self._press: QPoint | None = None
        self._query = ""
        self._matches: list[QTextCursor] = []
        self._match_total = 0
        self._current = -1
        self._time_fmt = _char_format(theme.TEXT_DIM)
        self._speaker_fmt = _char_format(theme.INFO, bold=True)
        self._text_fmt = _char_format(theme.TEXT)
        self._minor_fmt = _char_format(theme.TEXT_DIM)
        self._partial_fmt = _char_format(theme.LIGHT_OFF_TEXT, italic=True)
        self._match_fmt = QTextCharFormat()
        self._match_fmt.setBackground(QColor("#5a4a12"))
        self._current_fmt = QTextCharFormat()
        self._current_fmt.setBackground(QColor(theme.WARNING))
        self._current_fmt.setForeground(QColor(theme.WINDOW))
        self._research = QTimer(self)
        self._research.setSingleShot(True)
        self._research.setInterval(RESEARCH_DELAY_MS)
        self._research.timeout.connect(lambda: self.search(self._query, jump=False))
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range)

    # -- content

    def clear_segments(self) -> None:
        self.finals.clear()
        self._ids.clear()
        self.partial = None
        self.document().clear()
        self.following = True
        self.search(self._query, jump=False)

    def set_segments(self, segments: list[TranscriptSegment]) -> None:
        """Show a stored transcript (its finals), from the top."""
        self.clear_segments()
        for segment in segments:
            if segment.final:
                self.add_segment(segment)
        self.following = False
        self.verticalScrollBar().setValue(0)

    def add_segment(self, segment: TranscriptSegment) -> None:
        """A final becomes a line of its own (once: a repeated id is ignored) and ends
        the partial; a partial replaces the previous partial."""
        if segment.id in self._ids:
            return  # a final delivered again, or a partial of a line already final
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        self._remove_partial(cursor)
        if segment.final:
            self._write_line(cursor, segment, partial=False)
            self.finals.append(segment)
            self._ids.add(segment.id)
            self.partial = None
        else:
            self._write_line(cursor, segment, partial=True)
            self.partial = segment
        cursor.endEditBlock()
        if self._query:
            self._research.start()

    def drop_partial(self) -> None:
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        self._remove_partial(cursor)
        cursor.endEditBlock()

    def _lines(self) -> int:
        return len(self.finals) + (self.partial is not None)

    def _remove_partial(self, cursor: QTextCursor) -> None:
        if self.partial is None:
            return
        block = self.document().lastBlock()
        # Take the block and the line break before it (none when it is the only line).
        start = block.position() - 1 if self.finals else block.position()
        cursor.setPosition(start)
        cursor.movePosition(QTextCursor.MoveOperation.End, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self.partial = None

    def _write_line(self, cursor: QTextCursor, segment: TranscriptSegment, *,
                    partial: bool) -> None:
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if self._lines():
            cursor.insertBlock()
        when, speaker, text = segment_line(segment)
        cursor.insertText(when + "  ", self._time_fmt)
        if speaker:
            cursor.insertText(speaker + ": ", self._speaker_fmt)
        fmt = (self._partial_fmt if partial
               else self._minor_fmt if segment.minor else self._text_fmt)
        cursor.insertText(text + (" …" if partial else ""), fmt)

    def segment_at_line(self, line: int) -> TranscriptSegment | None:
        return self.finals[line] if 0 <= line < len(self.finals) else None

    def line_top(self, line: int) -> QPoint:
        """A point inside line ``line`` in viewport coordinates (for clicks)."""
        block = self.document().findBlockByNumber(line)
        rect = self.blockBoundingGeometry(block).translated(self.contentOffset())
        return QPoint(int(rect.left()) + 30, int(rect.top()) + 5)

    # -- following the end

    def at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - FOLLOW_SLACK

    def _on_scrolled(self, _value: int) -> None:
        self.following = self.at_bottom()

    def _on_range(self, _minimum: int, maximum: int) -> None:
        if self.following:
            self.verticalScrollBar().setValue(maximum)

    # -- search

    def search(self, query: str, *, jump: bool = True) -> int:
        """Highlight every match of ``query`` (case-insensitive); with ``jump``, go to
        the first one at or after the top of the view. Returns the number of matches."""
        self._query = query
        self._matches = []
        self._match_total = 0
        doc = self.document()
        if query:
            cursor = doc.find(query, 0)
            while not cursor.isNull():
                self._match_total += 1
                if len(self._matches) < MAX_HIGHLIGHTS:
                    self._matches.append(cursor)
                cursor = doc.find(query, cursor)
        if jump and self._matches:
            top = self.cursorForPosition(QPoint(0, 0)).position()
            self._current = next((i for i, c in enumerate(self._matches)
                                  if c.selectionStart() >= top), 0)
            self._show_current()
        else:
            self._current = min(self._current, len(self._matches) - 1)
            self._paint_matches()
        return self._match_total

    def next_match(self, step: int = 1) -> None:
        if self._matches:
            self._current = (self._current + step) % len(self._matches)
            self._show_current()

    @property
    def match_count(self) -> int:
        return self._match_total

    @property
    def current_match(self) -> int:
        """1-based index of the match shown (0: none)."""
        return self._current + 1 if self._matches and self._current >= 0 else 0

    def _show_current(self) -> None:
        cursor = QTextCursor(self._matches[self._current])
        self.setTextCursor(cursor)  # selects the match (Ctrl+C copies it)
        self.ensureCursorVisible()
        self._paint_matches()

    def _paint_matches(self) -> None:
        selections = []
        for i, cursor in enumerate(self._matches):
            selection = QTextEdit.ExtraSelection()
            selection.cursor = cursor  # type: ignore[attr-defined]
            selection.format = (  # type: ignore[attr-defined]
                self._current_fmt if i == self._current else self._match_fmt)
            selections.append(selection)
        self.setExtraSelections(selections)
        self.matches_changed.emit(self.current_match, self._match_total)

    # -- clicks on a line

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        self._press = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        super().mouseReleaseEvent(event)
        press, self._press = self._press, None
        pos = event.position().toPoint()
        if (not self.clickable or press is None or event.button() != Qt.MouseButton.LeftButton
                or (pos - press).manhattanLength() > CLICK_SLOP_PX
                or self.textCursor().hasSelection()):
            return
        segment = self.segment_at_line(self.cursorForPosition(pos).blockNumber())
        if segment is not None:
            self.segment_clicked.emit(segment)


__all__ = ["TranscriptView", "segment_line", "speaker_label"]
