"""The transcript card: the live transcript, or a past session's, with search, export,
the lag line and playback from a clicked line.

Two modes. *Live* (the default): segments arrive from the session controller's
``transcript_segment`` signal (the recorder's ``on_transcript``) through
:meth:`TranscriptPane.add_live_segment`; a new session clears the pane. *Stored*: a past
session opened from the sessions dialog is shown read-only, and a click on a line plays
its audio from that line's start (:class:`~meetcap.gui.segment_player.SegmentPlayer`).
Play (with a time beside it, 00:00 by default) plays it from that time: the way to hear
a session that has no line to click (recorded with transcription off, or its transcript
given up).
"Back to live" returns to the live transcript. Nothing plays while recording: the
meeting's sound is being captured, and playback would record itself.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPushButton,
    QToolButton,
    QWidget,
)

from meetcap.errors import MeetcapError
from meetcap.gui import theme
from meetcap.gui.segment_player import SegmentPlayer, parse_offset
from meetcap.gui.sessions_dialog import SessionsDialog, session_date
from meetcap.gui.status_text import format_elapsed
from meetcap.gui.stored_sessions import StoredSession, load_transcript
from meetcap.gui.transcript_export import EXPORT_FORMATS, ExportFormat, export_transcript
from meetcap.gui.transcript_view import TranscriptView
from meetcap.gui.widgets import Card
from meetcap.session.text import as_sentence
from meetcap.transcribe.segments import TranscriptSegment

# Below this the transcript is as current as speech allows (a final comes when its
# utterance ends); the lag line appears from here on.
LAG_SHOWN_S = 3.0
# The pane gives way first on a small screen (a few lines stay), and asks for room for
# about a dozen lines when there is some.
MIN_HEIGHT_PX = 140
PREFERRED_HEIGHT_PX = 300
LIVE_PLACEHOLDER = "The words appear here as people speak."


class TranscriptPane(Card):
    """See the module docstring. A problem (a damaged transcript, a failed playback)
    is a sentence on the pane's message line, and ``problem(str)`` says it too."""

    problem = Signal(str)
    _playback_ended = Signal(object)  # str | None, from the player's thread

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Transcript", parent)
        self.setMinimumHeight(MIN_HEIGHT_PX)
        self.mode_label = QLabel("Live", self)
        self.mode_label.setObjectName("dim")
        self.header.insertWidget(1, self.mode_label)
        self.search_box = QLineEdit(self)
        self.search_box.setPlaceholderText("Search")
        self.search_box.setClearButtonEnabled(True)
        self.search_box.setMaximumWidth(200)
        self.search_box.setToolTip("Enter: next match, Shift+Enter: previous")
        self.match_label = QLabel("", self)
        self.match_label.setObjectName("dim")
        self.export_button = QToolButton(self)
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.export_menu = QMenu(self.export_button)
        self.export_actions: dict[str, QAction] = {}
        for fmt in EXPORT_FORMATS:
            action = self.export_menu.addAction(fmt.title)
            action.triggered.connect(lambda _=False, f=fmt: self.ask_and_export(f))
            self.export_actions[fmt.key] = action
        self.export_button.setMenu(self.export_menu)
        self.sessions_button = QPushButton("Past sessions…", self)
        self.live_button = QPushButton("Back to live", self)
        self.live_button.setVisible(False)
        for widget in (self.search_box, self.match_label, self.export_button,
                       self.sessions_button, self.live_button):
            self.header.addWidget(widget)

        self.view = TranscriptView(self)
        self.body.addWidget(self.view, 1)
        self.lag_label = QLabel("", self)
        self.lag_label.setStyleSheet(f"color: {theme.WARNING};")
        self.lag_label.setVisible(False)
        self.body.addWidget(self.lag_label)
        self.message_label = QLabel("", self)
        self.message_label.setWordWrap(True)
        self.message_label.setStyleSheet(f"color: {theme.ERROR};")
        self.message_label.setVisible(False)
        self.body.addWidget(self.message_label)
        self.play_button = QPushButton("Play", self)
        self.play_from_label = QLabel("from", self)
        self.play_time = QLineEdit("00:00", self)
        self.play_time.setMaximumWidth(80)
        self.play_time.setToolTip("Where to start: seconds, m:ss or h:mm:ss")
        self.playback_label = QLabel("", self)
        self.playback_label.setObjectName("dim")
        self.stop_button = QPushButton("Stop", self)
        playback = QHBoxLayout()
        for widget in (self.play_button, self.play_from_label, self.play_time):
            playback.addWidget(widget)
        playback.addWidget(self.playback_label, 1)
        playback.addWidget(self.stop_button)
        self.body.addLayout(playback)

        self.session: StoredSession | None = None  # None: live
        self.live_id: str | None = None  # the live session's id, once known
        self.live_segments: list[TranscriptSegment] = []
        self.live_partial: TranscriptSegment | None = None
        self.lag_s: float | None = None
        self.live_failed: str | None = None  # the server gave the live transcript up
        self.stored_failed: str | None = None  # ... or the open past session's
        self.recording = False
        self.sessions_folder: Path | None = None
        self.sessions_dialog: SessionsDialog | None = None
        self.player = SegmentPlayer(on_finished=self._playback_ended.emit)
        self.export_dir: Path | None = None  # where the save dialog opens (last used)

        self.search_box.textChanged.connect(lambda text: self.view.search(text))
        self.search_box.returnPressed.connect(lambda: self.view.next_match(1))
        QShortcut(QKeySequence("Shift+Return"), self.search_box,
                  lambda: self.view.next_match(-1))
        QShortcut(QKeySequence(QKeySequence.StandardKey.Find), self,
                  self.search_box.setFocus, context=Qt.ShortcutContext.WindowShortcut)
        self.view.matches_changed.connect(self._show_matches)
        self.view.segment_clicked.connect(self.play_from)
        self.sessions_button.clicked.connect(self.open_sessions)
        self.live_button.clicked.connect(self.show_live)
        self.stop_button.clicked.connect(self.stop_playback)
        self.play_button.clicked.connect(lambda: self.play_from_time())
        self.play_time.returnPressed.connect(lambda: self.play_from_time())
        self._playback_ended.connect(self._on_playback_ended)
        self.problem.connect(self._say)
        self._update_controls()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        hint = super().sizeHint()
        return QSize(hint.width(), max(hint.height(), PREFERRED_HEIGHT_PX))

    # -- live

    def start_live(self, session_id: str | None = None) -> None:
        """A new session starts: the pane shows it, empty."""
        self.stop_playback()
        self.live_segments = []
        self.live_partial = None
        self.live_id = session_id
        if self.live_failed is not None:
            self._say("")  # the last session's; this one starts afresh
            self.live_failed = None
        self.set_lag(None)
        self.show_live()

    def add_live_segment(self, segment: TranscriptSegment) -> None:
        """A segment of the running session (final or partial)."""
        if segment.final:
            if any(s.id == segment.id for s in self.live_segments[-3:]):
                return  # delivered twice (a resume): shown once
            self.live_segments.append(segment)
            self.live_partial = None
        else:
            self.live_partial = segment
        if self.session is None:
            self.view.add_segment(segment)

    def end_live(self) -> None:
        """The session ended: a partial that no final replaced was only a guess; it goes."""
        self.live_partial = None
        if self.session is None:
            self.view.drop_partial()

    def set_live_failed(self, sentence: str) -> None:
        """The server gave up transcribing the live session (``sentence`` says why and
        what to do): said on the message line, and the lag line goes (it will not catch
        up). Called with every status after that: said once."""
        if sentence == self.live_failed:
            return
        self.live_failed = sentence
        if self.session is None:
            self._say(as_sentence(sentence))
        self.set_lag(self.lag_s)

    def set_lag(self, lag_s: float | None) -> None:
        """How far the transcript is behind the audio (None: unknown or not running)."""
        self.lag_s = lag_s
        show = (lag_s is not None and lag_s >= LAG_SHOWN_S and self.session is None
                and self.live_failed is None)
        if show:
            assert lag_s is not None
            text = (f"The transcript is {lag_s:.0f} s behind the audio; "
                    "it catches up from the stored audio.")
            if text != self.lag_label.text():  # called twice a second: repaint on change
                self.lag_label.setText(text)
        if show != self.lag_label.isVisibleTo(self):
            self.lag_label.setVisible(show)

    def set_recording(self, recording: bool) -> None:
        """While recording nothing plays and no past session opens (see the docstring)."""
        self.recording = recording
        if recording:
            self.stop_playback()
            if self.session is not None:
                self.show_live()
        self._update_controls()

    def show_live(self) -> None:
        self.stop_playback()
        self.session = None
        self.view.clickable = False
        self.view.setPlaceholderText(LIVE_PLACEHOLDER)
        self.view.set_segments(self.live_segments)
        if self.live_partial is not None:
            self.view.add_segment(self.live_partial)
        self.view.following = True
        self.view.verticalScrollBar().setValue(self.view.verticalScrollBar().maximum())
        self._say(self._standing_message())
        self.set_lag(self.lag_s)
        self._update_controls()

    # -- stored sessions

    def set_sessions_folder(self, folder: Path | None) -> None:
        """Where the built-in server stores sessions (None: the list is off)."""
        self.sessions_folder = folder
        self._update_controls()

    def open_sessions(self) -> SessionsDialog | None:
        """The list of past sessions (modeless, so tests can drive it)."""
        if self.sessions_folder is None:
            return None
        dialog = SessionsDialog(self.sessions_folder, self)
        dialog.open_requested.connect(self.show_session)
        dialog.show()
        self.sessions_dialog = dialog
        return dialog

    def show_session(self, session: StoredSession) -> bool:
        """Show a stored session's transcript, read-only; False (and ``problem``) when it
        cannot be read."""
        try:
            transcript = load_transcript(session)
        except MeetcapError as exc:
            self.problem.emit(as_sentence(str(exc)))
            return False
        segments = transcript.segments
        self.stop_playback()
        self.session = session
        # A transcript the server gave up says why (and names `meetcap transcribe`).
        self.stored_failed = transcript.failed
        self._say(self._standing_message())
        self.view.clickable = True
        self.view.set_segments(segments)
        if not segments:
            self.view.setPlaceholderText("This session has no transcript: Play plays its "
                                         "audio.")
        self.play_time.setText("00:00")
        self.set_lag(self.lag_s)
        self._update_controls()
        return True

    def play_from(self, segment: TranscriptSegment) -> bool:
        """Play the open session's audio from ``segment``'s start."""
        return self._play(segment.start_s)

    def play_from_time(self, text: str | None = None) -> bool:
        """Play the open session's audio from a typed time (default: the time box's); a
        time that cannot be read or lies past the end is said on the message line."""
        if self.session is None or self.recording:
            return False
        typed = self.play_time.text() if text is None else text
        try:
            start_s = parse_offset(typed)
        except MeetcapError as exc:
            self.problem.emit(as_sentence(str(exc)))
            return False
        if start_s >= self.session.duration_s:
            self.problem.emit(as_sentence(
                f"{typed.strip()} is past the end of this session, which lasts "
                f"{format_elapsed(self.session.duration_s)}"))
            return False
        return self._play(start_s)

    def _play(self, start_s: float) -> bool:
        if self.session is None or self.recording:
            return False
        try:
            self.player.play(self.session.wav, start_s)
        except MeetcapError as exc:
            self.problem.emit(as_sentence(str(exc)))
            return False
        self._say(self._standing_message())
        self.playback_label.setText(f"Playing from {format_elapsed(start_s)}")
        self._update_controls()
        return True

    def stop_playback(self) -> None:
        self.player.stop()
        self._update_controls()

    def _on_playback_ended(self, error: object) -> None:
        self.player.stop()  # its thread is on its way out: wait for it, so "playing" is false
        if error:
            self.problem.emit(str(error))
        self._update_controls()

    # -- export

    @property
    def segments(self) -> list[TranscriptSegment]:
        """The final segments shown (what an export writes)."""
        return list(self.view.finals)

    def suggested_name(self, fmt: ExportFormat) -> str:
        base = (self.session.session_id if self.session is not None
                else self.live_id or time.strftime("meetcap-%Y-%m-%d_%H-%M"))
        return f"{base}{fmt.suffix}"

    def export_to(self, key: str, path: Path) -> Path:
        """Write the shown transcript to ``path`` in format ``key`` (see
        :data:`~meetcap.gui.transcript_export.EXPORT_FORMATS`)."""
        return export_transcript(self.segments, key, Path(path))

    def ask_and_export(self, fmt: ExportFormat) -> Path | None:
        folder = self.export_dir or (self.session.folder if self.session else Path.home())
        name, _ = QFileDialog.getSaveFileName(
            self, "Export the transcript", str(folder / self.suggested_name(fmt)),
            f"{fmt.title} (*{fmt.suffix})")
        if not name:
            return None
        path = Path(name)
        if not path.suffix:
            path = path.with_suffix(fmt.suffix)
        try:
            self.export_to(fmt.key, path)
        except MeetcapError as exc:
            QMessageBox.warning(self, "Export failed", as_sentence(str(exc)))
            return None
        self.export_dir = path.parent
        return path

    # -- looks

    def _standing_message(self) -> str:
        """What the message line says when no new problem is on it: why the shown
        transcript (live or stored) was given up, or nothing."""
        failed = self.stored_failed if self.session is not None else self.live_failed
        return as_sentence(failed) if failed else ""

    def _say(self, message: str) -> None:
        self.message_label.setText(message)
        self.message_label.setVisible(bool(message))

    def _show_matches(self, current: int, total: int) -> None:
        if not self.search_box.text():
            self.match_label.setText("")
        else:
            self.match_label.setText(f"{current} of {total}" if total else "no match")

    def _update_controls(self) -> None:
        stored = self.session is not None
        playing = self.player.playing
        if stored:
            assert self.session is not None
            how = ("click a line to play from it" if self.view.finals
                   else "Play plays its audio")
            self.mode_label.setText(f"{session_date(self.session)}, "
                                    f"{format_elapsed(self.session.duration_s)} ({how})")
        else:
            self.mode_label.setText("Live")
        self.live_button.setVisible(stored)
        self.sessions_button.setEnabled(not self.recording and self.sessions_folder is not None)
        self.playback_label.setVisible(playing)
        self.stop_button.setVisible(playing)
        for widget in (self.play_button, self.play_from_label, self.play_time):
            widget.setVisible(stored and not playing)


__all__ = ["LAG_SHOWN_S", "TranscriptPane"]
