"""The transcript pane as a person uses it: lines appear, the partial is replaced, the
view follows the end unless scrolled up, search finds words, text copies, the lag line
shows, exports write the formats. Driven through the pane's public slot with real
TranscriptSegment objects (the live chain is tests/gui/test_transcript_live.py)."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication

from meetcap.gui.transcript_export import EXPORT_FORMATS
from meetcap.gui.transcript_pane import TranscriptPane
from meetcap.gui.transcript_view import speaker_label
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment


def final(i: int, text: str | None = None, speaker: str | None = None,
          minor: bool = False) -> TranscriptSegment:
    return TranscriptSegment(i, i * 4.0, i * 4.0 + 3.2, text or f"sentence number {i} here",
                             True, speaker, minor)


def partial(i: int, text: str) -> TranscriptSegment:
    return TranscriptSegment(i, i * 4.0, i * 4.0 + 1.0, text, False)


def lines(pane: TranscriptPane) -> list[str]:
    return pane.view.toPlainText().split("\n") if pane.view.toPlainText() else []


def test_finals_show_their_time_from_the_start_and_their_speaker(pane):
    pane.add_live_segment(TranscriptSegment(0, 0.0, 2.5, "Good morning everyone.", True, "you"))
    pane.add_live_segment(TranscriptSegment(1, 75.3, 79.0, "Can you hear me?", True, "others"))
    pane.add_live_segment(TranscriptSegment(2, 3725.0, 3728.0, "Nobody knows who.", True, None))
    assert lines(pane) == [
        "00:00  You: Good morning everyone.",
        "01:15  Others: Can you hear me?",
        "1:02:05  Nobody knows who.",
    ]
    assert speaker_label("both") == "You and others" and speaker_label("nobody") == ""
    assert speaker_label("Alice") == "Alice"


def test_the_partial_is_replaced_not_appended_and_its_final_takes_its_place(pane):
    pane.add_live_segment(final(0, "We start with the budget today."))
    pane.add_live_segment(partial(1, "the next"))
    pane.add_live_segment(partial(1, "the next item is"))
    assert lines(pane) == ["00:00  We start with the budget today.",
                           "00:04  the next item is …"]
    pane.add_live_segment(final(1, "The next item is hiring."))
    assert lines(pane) == ["00:00  We start with the budget today.",
                           "00:04  The next item is hiring."]
    pane.add_live_segment(final(1, "The next item is hiring."))  # delivered again
    pane.add_live_segment(partial(1, "the next item"))  # a late partial of a final line
    assert len(lines(pane)) == 2, "a final is shown once, and stays final"
    # A partial no final replaced goes when the session ends (it was only a guess).
    pane.add_live_segment(partial(2, "and then"))
    pane.end_live()
    assert lines(pane) == ["00:00  We start with the budget today.",
                           "00:04  The next item is hiring."]
    # A partial alone (no final yet) is one line, and goes when its final comes.
    pane.start_live()
    pane.add_live_segment(partial(0, "hello"))
    assert lines(pane) == ["00:00  hello …"]
    pane.add_live_segment(final(0, "Hello there, how are you?"))
    assert lines(pane) == ["00:00  Hello there, how are you?"]


def test_a_partial_is_lighter_than_a_final(pane):
    pane.add_live_segment(final(0, "A final line of text."))
    pane.add_live_segment(partial(1, "a guess"))
    doc = pane.view.document()

    def text_format(block_number):
        it = doc.findBlockByNumber(block_number).begin()
        last = None
        while not it.atEnd():
            last = it.fragment().charFormat()
            it += 1
        return last

    final_fmt, partial_fmt = text_format(0), text_format(1)
    assert partial_fmt.fontItalic() and not final_fmt.fontItalic()
    assert partial_fmt.foreground().color().lightness() < \
        final_fmt.foreground().color().lightness(), "dimmer on the dark theme"


def test_appending_touches_only_the_end_of_the_document(pane):
    """A long meeting: each segment edits the end only (no re-render of what is above)."""
    for i in range(2000):
        pane.add_live_segment(final(i))
    changes = []
    pane.view.document().contentsChange.connect(lambda pos, rem, add: changes.append(
        (pos, rem, add)))
    length = pane.view.document().characterCount()
    pane.add_live_segment(partial(2000, "one more"))
    pane.add_live_segment(partial(2000, "one more line"))
    pane.add_live_segment(final(2000, "One more line for the record."))
    assert changes, "the document changed"
    assert all(pos >= length - 2 for pos, _, _ in changes), changes
    assert sum(rem for _, rem, _ in changes) < 60, "only the partial was removed"
    assert len(lines(pane)) == 2001


def test_follows_the_end_unless_scrolled_up_and_resumes_at_the_bottom(pane, qtbot):
    bar = pane.view.verticalScrollBar()
    for i in range(60):
        pane.add_live_segment(final(i))
    qtbot.waitUntil(lambda: bar.maximum() > 0, timeout=2_000)
    assert bar.value() == bar.maximum(), "follows the end"
    bar.setValue(0)  # the person scrolls up to read
    assert not pane.view.following
    for i in range(60, 80):
        pane.add_live_segment(final(i))
    qtbot.wait(50)
    assert bar.value() == 0, "stays where the person reads"
    pane.add_live_segment(partial(80, "something new"))
    qtbot.wait(50)
    assert bar.value() == 0
    bar.setValue(bar.maximum())  # back at the bottom: following again
    assert pane.view.following
    for i in range(80, 90):
        pane.add_live_segment(final(i))
    qtbot.wait(50)
    assert bar.value() == bar.maximum() and bar.maximum() > 0
    assert pane.view.toPlainText().endswith("sentence number 89 here")


def test_scrolling_up_with_the_wheel_stops_following(pane, qtbot):
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent

    for i in range(60):
        pane.add_live_segment(final(i))
    bar = pane.view.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.value() == bar.maximum() > 0, timeout=2_000)
    viewport = pane.view.viewport()
    center = QPointF(viewport.width() / 2, viewport.height() / 2)
    event = QWheelEvent(center, viewport.mapToGlobal(center), QPoint(0, 0), QPoint(0, 240),
                        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                        Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(viewport, event)
    assert bar.value() < bar.maximum() and not pane.view.following
    top = bar.value()
    pane.add_live_segment(final(60))
    qtbot.wait(50)
    assert bar.value() == top


def test_search_highlights_every_match_and_jumps_between_them(pane, qtbot):
    for i in range(40):
        pane.add_live_segment(final(i, "the budget again" if i in (3, 17, 33)
                                    else f"nothing to see in line {i}"))
    pane.view.verticalScrollBar().setValue(0)  # reading from the top: search from there
    qtbot.keyClicks(pane.search_box, "BUDGET")
    assert pane.view.match_count == 3
    assert len(pane.view.extraSelections()) == 3
    assert pane.match_label.text() == "1 of 3"
    assert pane.view.textCursor().selectedText().lower() == "budget"
    assert pane.view.textCursor().blockNumber() == 3
    qtbot.keyClick(pane.search_box, Qt.Key.Key_Return)
    assert pane.view.textCursor().blockNumber() == 17 and pane.match_label.text() == "2 of 3"
    qtbot.keyClick(pane.search_box, Qt.Key.Key_Return)
    assert pane.view.textCursor().blockNumber() == 33
    qtbot.keyClick(pane.search_box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert pane.view.textCursor().blockNumber() == 17
    # A line arriving later that matches is found too (searched again shortly after).
    pane.add_live_segment(final(40, "one more budget line"))
    qtbot.waitUntil(lambda: pane.view.match_count == 4, timeout=2_000)
    pane.search_box.clear()
    assert pane.view.extraSelections() == [] and pane.match_label.text() == ""
    qtbot.keyClicks(pane.search_box, "zebra")
    assert pane.match_label.text() == "no match"


def test_text_is_selectable_and_copies_to_the_clipboard(pane, qtbot):
    pane.add_live_segment(TranscriptSegment(0, 1.0, 3.0, "First thing to copy.", True, "you"))
    pane.add_live_segment(final(1, "Second thing to copy."))
    flags = pane.view.textInteractionFlags()
    assert flags & Qt.TextInteractionFlag.TextSelectableByMouse
    QGuiApplication.clipboard().clear()
    pane.view.setFocus()
    pane.view.selectAll()
    qtbot.keySequence(pane.view, QKeySequence.StandardKey.Copy)
    assert QGuiApplication.clipboard().text() == \
        "00:01  You: First thing to copy.\n00:04  Second thing to copy."
    # A drag over part of a line copies just that part.
    view = pane.view
    doc = view.document()
    second = doc.find("Second")
    start = view.cursorRect(_at(view, second.selectionStart())).center()
    end = view.cursorRect(_at(view, doc.find("copy", second).selectionEnd())).center()
    QGuiApplication.clipboard().clear()
    view.setTextCursor(_at(view, 0))  # a press inside a selection would drag it instead
    drag(view.viewport(), start, end)
    qtbot.keySequence(view, QKeySequence.StandardKey.Copy)
    assert QGuiApplication.clipboard().text() == "Second thing to copy"


def drag(widget, start, end):
    """Press, move with the button held, release (qtbot's mouseMove holds no button
    in Qt 6, so the events are sent as a mouse sends them)."""
    from PySide6.QtCore import QEvent, QPointF
    from PySide6.QtGui import QMouseEvent

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    for kind, pos, button, held in ((QEvent.Type.MouseButtonPress, start, left, left),
                                    (QEvent.Type.MouseMove, end, none, left),
                                    (QEvent.Type.MouseButtonRelease, end, left, none)):
        local = QPointF(pos)
        QApplication.sendEvent(widget, QMouseEvent(kind, local, widget.mapToGlobal(local),
                                                   button, held,
                                                   Qt.KeyboardModifier.NoModifier))


def _at(view, position):
    from PySide6.QtGui import QTextCursor

    cursor = QTextCursor(view.document())
    cursor.setPosition(position)
    return cursor


def test_the_lag_line_says_how_far_behind_the_transcript_is(pane):
    pane.set_lag(0.8)
    assert not pane.lag_label.isVisibleTo(pane), "hidden while the transcript keeps up"
    pane.set_lag(12.4)
    assert pane.lag_label.isVisibleTo(pane)
    assert "12 s behind the audio" in pane.lag_label.text()
    pane.set_lag(1.0)
    assert not pane.lag_label.isVisibleTo(pane), "gone once it caught up"
    pane.set_lag(None)
    assert not pane.lag_label.isVisibleTo(pane)


def test_exports_write_each_format_from_the_finals_shown(pane, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    segments = [TranscriptSegment(0, 0.5, 2.0, "Welcome to the review.", True, "you"),
                TranscriptSegment(1, 2.5, 4.0, "Thanks, glad to be here.", True, "others"),
                TranscriptSegment(2, 5.0, 5.5, "Uh huh.", True, None, True)]
    for segment in segments:
        pane.add_live_segment(segment)
    pane.add_live_segment(partial(3, "not yet final"))
    expected = {"markdown": formats.to_markdown(segments), "text": formats.to_text(segments),
                "srt": formats.to_srt(segments), "vtt": formats.to_vtt(segments)}
    for fmt in EXPORT_FORMATS:
        target = tmp_path / f"out{fmt.suffix}"
        # Through the menu, as a person does it: the save dialog answers with a path.
        monkeypatch.setattr(QFileDialog, "getSaveFileName",
                            lambda *args, t=target: (str(t), ""))
        pane.export_actions[fmt.key].trigger()
        assert target.read_bytes() == expected[fmt.key].encode("utf-8")
        assert "not yet final" not in target.read_text()
    assert "Welcome to the review." in (tmp_path / "out.md").read_text()


def test_an_export_to_an_unwritable_place_says_so(pane, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    pane.add_live_segment(final(0))
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *args: (str(blocked / "t.srt"), ""))
    said = []
    monkeypatch.setattr(QMessageBox, "warning", lambda parent, title, text: said.append(text))
    assert pane.export_actions["srt"].trigger() is None
    assert said and said[0].startswith("Cannot write") and "Not a directory" in said[0]
