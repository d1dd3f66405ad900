"""The "Recordings waiting to be delivered" dialog.

Lists what waits in the spool (:func:`meetcap.client.pending.list_pending`): recordings
for another server or account, refused ones (and why), ones from before destinations
were recorded. Per row: **Deliver** (with the credentials the app knows for that
destination, asked for when it knows none), **Retry with new server/token...** (re-binds
the recording to what is typed, then delivers) and **Discard** (asks first). Deliveries
and discards run on worker threads; progress and the result come back through a queued
Qt signal and are shown in words. No audio and no network on the GUI thread.

Wiring (in the main window, at start-up)::

    if PendingDialog.has_pending(paths.spool_dir(data_root)):
        PendingDialog(paths.spool_dir(data_root), credentials_for, parent=window).show()

``credentials_for(recording) -> DeliveryTarget | None`` is called on the GUI thread
when the user presses Deliver; it must return at once: the URL and token the app knows
for ``recording``'s destination (for the built-in server: its URL, its token and
``destination="builtin"``), or None to have the dialog ask.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from meetcap.client import pending
from meetcap.client.config import StreamerConfig
from meetcap.client.pending import PendingRecording, format_duration, format_started
from meetcap.client.status import StreamStatus
from meetcap.errors import ConfigError, MeetcapError
from meetcap.session.text import as_sentence

_COLUMNS = ("Recorded", "Length", "Destination and why it waits", "")
_STATUS_COLUMN, _ACTIONS_COLUMN = 2, 3


@dataclass(frozen=True)
class DeliveryTarget:
    """Where to deliver a recording: the server URL, its token, and the destination key
    (None: derived from URL and token; ``"builtin"`` for the app's built-in server)."""

    url: str
    token: str
    destination: str | None = None


CredentialsCallback = Callable[[PendingRecording], "DeliveryTarget | None"]


def confirm_discard(parent: QWidget, recording: PendingRecording) -> bool:
    """Ask before deleting a recording's audio for good."""
    answer = QMessageBox.question(
        parent, "Discard the recording?",
        f"Delete the recording of {format_started(recording.started_at)} "
        f"({format_duration(recording.duration_s)}, for {recording.describe_destination()})?"
        "\n\nIts audio has not reached a server and will be lost. This cannot be undone.",
        QMessageBox.StandardButton.Discard | QMessageBox.StandardButton.Cancel,
        QMessageBox.StandardButton.Cancel,
    )
    return answer == QMessageBox.StandardButton.Discard


def ask_new_credentials(parent: QWidget, recording: PendingRecording) -> DeliveryTarget | None:
    """A small form: server URL (the recorded one to start with) and token."""
    form = CredentialsDialog(recording, parent)
    if form.exec() != QDialog.DialogCode.Accepted:
        return None
    return form.target()


class CredentialsDialog(QDialog):
    """Server URL and token for one recording, checked with the client's own rules."""

    def __init__(self, recording: PendingRecording, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Deliver to a server")
        self.setMinimumWidth(480)
        self.url_edit = QLineEdit("" if recording.builtin else (recording.url or ""), self)
        self.url_edit.setPlaceholderText("ws://host:8765/v1/stream")
        self.token_edit = QLineEdit(self)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("bearer token")
        self.problem = QLabel(self)
        self.problem.setObjectName("dim")
        self.problem.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Server", self.url_edit)
        form.addRow("Token", self.token_edit)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel(
            f"Recording of {format_started(recording.started_at)}, "
            f"{format_duration(recording.duration_s)}. It will belong to this server and "
            "account from now on.", self))
        layout.addLayout(form)
        layout.addWidget(self.problem)
        layout.addWidget(self.buttons)
        self.url_edit.textChanged.connect(self._check)
        self.token_edit.textChanged.connect(self._check)
        self._check()

    def _check(self) -> None:
        problem = None
        try:
            StreamerConfig(url=self.url_edit.text().strip(), token=self.token_edit.text().strip())
        except ConfigError as exc:
            problem = str(exc)
        self.problem.setText(problem[:1].upper() + problem[1:] if problem else "")
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)

    def target(self) -> DeliveryTarget:
        return DeliveryTarget(self.url_edit.text().strip(), self.token_edit.text().strip())


class _Relay(QObject):
    """Carries results from worker threads to the GUI thread (queued connections)."""

    progress = Signal(str, str)  # local id, text
    done = Signal(str, bool, str)  # local id, ok, message


class PendingDialog(QDialog):
    """Recordings waiting in the spool at ``spool_root``, with Deliver / Retry / Discard.

    ``credentials(recording)`` gives the :class:`DeliveryTarget` the app knows for a
    recording's destination, or None (then the dialog asks). ``destination_filter`` (a
    destination key or a predicate) limits which recordings are shown.
    ``streamer_options`` are extra StreamerConfig fields (tests shorten the timings).

    Signals: :attr:`operation_finished` (local id, ok, message) after each delivery or
    discard; :attr:`operation_progress` (local id, text) while delivering. The
    :attr:`confirm_discard` and :attr:`ask_new_credentials` hooks can be replaced.
    """

    operation_finished = Signal(str, bool, str)
    operation_progress = Signal(str, str)

    def __init__(
        self,
        spool_root: Path | str,
        credentials: CredentialsCallback,
        parent: QWidget | None = None,
        *,
        destination_filter: str | Callable[[PendingRecording], bool] | None = None,
        timeout_s: float = 120.0,
        streamer_options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(parent)
        self.spool_root = Path(spool_root)
        self.credentials = credentials
        self.destination_filter = destination_filter
        self.timeout_s = timeout_s
        self.streamer_options = dict(streamer_options or {})
        self.confirm_discard: Callable[[QWidget, PendingRecording], bool] = confirm_discard
        self.ask_new_credentials: Callable[
            [QWidget, PendingRecording], DeliveryTarget | None
        ] = ask_new_credentials
        self.recordings: list[PendingRecording] = []
        self._busy: dict[str, str] = {}  # local id -> what is being done, in words
        self._threads: list[threading.Thread] = []
        self._buttons: dict[tuple[str, str], QPushButton] = {}  # (action, local id)
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._relay.done.connect(self._on_done)

        self.setWindowTitle("Recordings waiting to be delivered")
        self.setMinimumSize(980, 360)
        self.summary = QLabel(self)
        self.summary.setWordWrap(True)
        self.table = QTableWidget(0, len(_COLUMNS), self)
        self.table.setHorizontalHeaderLabels(_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setWordWrap(True)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(_STATUS_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.result_label = QLabel(self)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.result_label)
        layout.addWidget(close)
        self.refresh()

    # -- public

    @classmethod
    def has_pending(
        cls,
        spool_root: Path | str,
        destination_filter: str | Callable[[PendingRecording], bool] | None = None,
    ) -> bool:
        """Whether the dialog would have something to offer (see pending.has_pending)."""
        return pending.has_pending(spool_root, destination_filter)

    def busy_ids(self) -> set[str]:
        """Recordings with a delivery or discard running now."""
        return set(self._busy)

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Join the worker threads (tests, shutdown); True when none is left running.
        Their results still arrive through the event loop."""
        for thread in list(self._threads):
            thread.join(timeout_s)
        self._threads = [t for t in self._threads if t.is_alive()]
        return not self._threads

    def refresh(self) -> None:
        """Read the spool again and rebuild the rows (cheap: metadata and file sizes)."""
        recordings = pending.list_pending(self.spool_root)
        if self.destination_filter is not None:
            flt = self.destination_filter
            recordings = [
                r for r in recordings
                if (flt(r) if callable(flt) else r.destination == flt) or r.local_id in self._busy
            ]
        self.recordings = recordings
        self._buttons.clear()
        self.table.setRowCount(len(recordings))
        for row, rec in enumerate(recordings):
            cells = (
                format_started(rec.started_at),
                format_duration(rec.duration_s),
                f"{rec.describe_destination()}\n{self._busy.get(rec.local_id, _why(rec))}",
            )
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{rec.local_id}\n{text}")
                self.table.setItem(row, column, item)
            self.table.setCellWidget(row, _ACTIONS_COLUMN, self._actions(rec))
        self.table.resizeRowsToContents()
        if recordings:
            self.summary.setText(
                f"{len(recordings)} recording(s) have not reached their server yet. Deliver "
                "them, send them to another server or account, or discard them."
            )
        else:
            self.summary.setText("Nothing waits to be delivered.")

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        # Wrapped text needs the final column widths to know the row heights.
        QTimer.singleShot(0, self.table.resizeRowsToContents)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self.table.resizeRowsToContents()

    # -- rows

    def _actions(self, rec: PendingRecording) -> QWidget:
        box = QWidget(self.table)
        row = QHBoxLayout(box)
        row.setContentsMargins(2, 2, 2, 2)
        busy = rec.local_id in self._busy or rec.state == "busy"
        deliver = QPushButton("Deliver", box)
        deliver.setObjectName(f"deliver:{rec.local_id}")
        deliver.setEnabled(not busy and rec.state != "unreadable")
        deliver.clicked.connect(lambda: self._deliver_clicked(rec.local_id, ask=False))
        retry = QPushButton("Retry with new server/token...", box)
        retry.setObjectName(f"retry:{rec.local_id}")
        retry.setEnabled(not busy and rec.state != "unreadable")
        retry.clicked.connect(lambda: self._deliver_clicked(rec.local_id, ask=True))
        discard = QPushButton("Discard", box)
        discard.setObjectName(f"discard:{rec.local_id}")
        discard.setEnabled(not busy)
        discard.clicked.connect(lambda: self._discard_clicked(rec.local_id))
        for action, button in (("deliver", deliver), ("retry", retry), ("discard", discard)):
            row.addWidget(button)
            self._buttons[(action, rec.local_id)] = button
        return box

    def button(self, action: str, local_id: str) -> QPushButton | None:
        """The ``deliver`` / ``retry`` / ``discard`` button of a row (tests, automation)."""
        return self._buttons.get((action, local_id))

    def _find(self, local_id: str) -> PendingRecording | None:
        return next((r for r in self.recordings if r.local_id == local_id), None)

    def _deliver_clicked(self, local_id: str, *, ask: bool) -> None:
        rec = self._find(local_id)
        if rec is None or local_id in self._busy:
            return
        target = None if ask else self.credentials(rec)
        if target is None:
            target = self.ask_new_credentials(self, rec)
            if target is None:
                return  # cancelled
        url, token, destination = target.url, target.token, target.destination
        options, timeout_s, root = dict(self.streamer_options), self.timeout_s, self.spool_root
        relay = self._relay

        def on_status(status: StreamStatus) -> None:
            _emit(relay.progress, local_id, _progress_text(status))

        def work() -> tuple[bool, str]:
            result = pending.deliver(
                root, local_id, url=url, token=token, destination=destination,
                timeout_s=timeout_s, on_status=on_status, streamer_options=options,
            )
            when = format_started(rec.started_at)
            if result.ok:
                return True, as_sentence(f"Delivered the recording of {when}: {result.message}")
            return False, as_sentence(f"The recording of {when} was not delivered: "
                                    f"{result.message}")

        self._start(local_id, "Delivering...", work)

    def _discard_clicked(self, local_id: str) -> None:
        rec = self._find(local_id)
        if rec is None or local_id in self._busy or not self.confirm_discard(self, rec):
            return
        root = self.spool_root

        def work() -> tuple[bool, str]:
            pending.discard(root, local_id)
            return True, f"Discarded the recording of {format_started(rec.started_at)}."

        self._start(local_id, "Discarding...", work)

    def _start(self, local_id: str, doing: str, work: Callable[[], tuple[bool, str]]) -> None:
        self._busy[local_id] = doing
        self.result_label.setText(doing)
        self.refresh()
        relay = self._relay

        def run() -> None:
            try:
                ok, message = work()
            except MeetcapError as exc:
                ok, message = False, as_sentence(str(exc))
            except Exception as exc:  # a bug must not leave the row busy forever
                ok, message = False, f"Failed: {exc!r}"
            _emit(relay.done, local_id, ok, message)

        thread = threading.Thread(target=run, name=f"meetcap-pending-{local_id}", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    # -- results (GUI thread)

    def _on_progress(self, local_id: str, text: str) -> None:
        if local_id not in self._busy:
            return
        self._busy[local_id] = text
        for row, rec in enumerate(self.recordings):
            if rec.local_id == local_id:
                item = self.table.item(row, _STATUS_COLUMN)
                if item is not None:
                    item.setText(f"{rec.describe_destination()}\n{text}")
        self.operation_progress.emit(local_id, text)

    def _on_done(self, local_id: str, ok: bool, message: str) -> None:
        self._busy.pop(local_id, None)
        self.result_label.setText(message)
        self.refresh()
        self.operation_finished.emit(local_id, ok, message)


def _why(rec: PendingRecording) -> str:
    why = as_sentence(rec.why)
    if rec.state == "refused":
        return f"Refused: {why}"
    if rec.state == "unknown_destination":
        return "Recorded by an older meetcap: choose the server and token to deliver it to."
    return why


def _progress_text(status: StreamStatus) -> str:
    done = status.frames_acked
    total = done + status.frames_spooled
    if status.state == "connecting":
        return f"Connecting... ({done} of {total} frames confirmed)"
    if status.state == "reconnecting":
        return f"Reconnecting: {status.reason or 'the connection dropped'}"
    if status.state == "failed":
        return f"Refused: {status.reason}"
    return f"Sending: {done} of {total} frames confirmed"


def _emit(signal: Any, *args: Any) -> None:
    try:
        signal.emit(*args)
    except RuntimeError:
        pass  # the dialog was closed and deleted meanwhile; nobody is waiting


__all__ = [
    "CredentialsCallback", "CredentialsDialog", "DeliveryTarget", "PendingDialog",
    "ask_new_credentials", "confirm_discard",
]
