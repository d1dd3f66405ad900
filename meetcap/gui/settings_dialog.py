"""The Settings dialog: server address, token, local copy folder, live transcript, and
noise suppression of the microphone.

Input is checked as it is typed, with the session settings' own rules
(:meth:`~meetcap.session.SessionSettings.validate`), and a problem is shown as the
sentence they would raise: OK stays disabled until everything is usable.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from meetcap.errors import ConfigError
from meetcap.gui import theme
from meetcap.session.settings import SessionSettings
from meetcap.session.text import as_sentence


def check_destination(url: str, token: str, local_copy_dir: str) -> str | None:
    """The first problem with these settings, in words; None when they are usable.

    An empty URL means the built-in local server (no token needed).
    """
    if url.strip():
        if not token.strip():
            return "A server address needs a token: paste the one the server's admin gave you."
        try:
            SessionSettings(server_url=url, token=token).validate()
        except ConfigError as exc:
            return as_sentence(str(exc))
    if local_copy_dir.strip():
        folder = Path(local_copy_dir.strip()).expanduser()
        if folder.exists() and not folder.is_dir():
            return f"The local copy folder {folder} is a file, not a folder."
        existing = folder if folder.exists() else next(
            (p for p in folder.parents if p.exists()), None)
        if existing is None or not os.access(existing, os.W_OK):
            return f"The local copy folder {folder} cannot be written to."
    return None


class SettingsDialog(QDialog):
    """Edit a copy of the settings; :meth:`apply_to` writes the accepted values back."""

    def __init__(self, settings: SessionSettings, parent: QWidget | None = None, *,
                 local_server_hint: str = "") -> None:
        super().__init__(parent)
        self.setWindowTitle("meetcap settings")
        self.setMinimumWidth(520)
        self.url_edit = QLineEdit(settings.server_url, self)
        self.url_edit.setPlaceholderText("empty: built-in server on this computer")
        self.token_edit = QLineEdit(settings.token, self)
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("bearer token (not needed for the built-in server)")
        show = QPushButton("Show", self)
        show.setCheckable(True)
        show.toggled.connect(lambda on: self.token_edit.setEchoMode(
            QLineEdit.EchoMode.Normal if on else QLineEdit.EchoMode.Password))
        token_row = QHBoxLayout()
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(show)
        self.copy_edit = QLineEdit(settings.local_copy, self)
        self.copy_edit.setPlaceholderText("empty: no local copy")
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        copy_row = QHBoxLayout()
        copy_row.addWidget(self.copy_edit, 1)
        copy_row.addWidget(browse)

        form = QFormLayout()
        form.setVerticalSpacing(10)
        form.addRow("Server address", self.url_edit)
        form.addRow("Token", token_row)
        form.addRow("Local copy folder", copy_row)
        self.transcribe_box = QCheckBox("Show a live transcript", self)
        self.transcribe_box.setChecked(settings.transcribe)
        self.transcribe_box.setToolTip(
            "The built-in server transcribes on this computer (Whisper); nothing is sent "
            "anywhere. Off: no transcription, less CPU.")
        form.addRow("Transcription", self.transcribe_box)
        # The cost dial of the live transcript (meetcap-server --partials): the words of
        # the sentence still being spoken are what makes transcription cost most while
        # someone talks (docs/figures.md, app CPU); the finished sentences are the same.
        self.partials_box = QCheckBox("Live partial text", self)
        self.partials_box.setChecked(settings.partials)
        self.partials_box.setToolTip(
            "Show the words of the sentence still being spoken, about once a second. "
            "Off: each sentence appears once it is finished (the same text), less CPU. "
            "For the built-in server.")
        self.partials_box.setEnabled(settings.transcribe)
        self.transcribe_box.toggled.connect(self.partials_box.setEnabled)
        form.addRow("", self.partials_box)
        # Off by default: WebRTC's suppressor takes steady noise out of the microphone
        # (8 dB on the test rig's fan noise), but it also colours the voice a little.
        self.noise_box = QCheckBox("Suppress steady noise in the microphone", self)
        self.noise_box.setChecked(settings.capture.noise_suppress)
        self.noise_box.setToolTip(
            "For a fan, an air conditioner or a humming computer near the microphone. "
            "Off: the microphone is recorded as it sounds.")
        form.addRow("Noise", self.noise_box)
        hint = QLabel(
            "Leave the server address empty to keep recordings on this computer"
            + (f" ({local_server_hint})" if local_server_hint else "") + ". "
            "Every session is also saved as a WAV file in the local copy folder, if set.",
            self,
        )
        hint.setObjectName("dim")
        hint.setWordWrap(True)
        self.message = QLabel(self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet(f"color: {theme.ERROR};")
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 16, 18, 14)
        layout.setSpacing(12)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(self.message)
        layout.addWidget(self.buttons)
        for edit in (self.url_edit, self.token_edit, self.copy_edit):
            edit.textChanged.connect(self.validate)
        self.validate()

    def validate(self) -> bool:
        """Check the fields; show the problem and disable OK if there is one."""
        problem = check_destination(self.url_edit.text(), self.token_edit.text(),
                                    self.copy_edit.text())
        self.message.setText(problem or "")
        self.message.setVisible(problem is not None)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(problem is None)
        return problem is None

    def apply_to(self, settings: SessionSettings) -> None:
        settings.server_url = self.url_edit.text().strip()
        settings.token = self.token_edit.text().strip()
        settings.local_copy = self.copy_edit.text().strip()
        settings.transcribe = self.transcribe_box.isChecked()
        settings.partials = self.partials_box.isChecked()
        settings.capture.noise_suppress = self.noise_box.isChecked()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Local copy folder",
                                                  self.copy_edit.text() or str(Path.home()))
        if folder:
            self.copy_edit.setText(folder)
