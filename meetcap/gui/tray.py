"""The tray icon: status at a glance, Start/Stop, and notifications for new warnings."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from meetcap.gui import icons
from meetcap.gui.main_window import MainWindow
from meetcap.gui.status_text import Warning
from meetcap.session.recorder import Phase

NOTIFICATION_MS = 10_000


class Tray(QObject):
    """Tray icon + menu for ``window``. ``notifications`` keeps every (title, text) sent,
    whether or not the platform has a tray to show it (tests read it)."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.controller = window.controller
        self.notifications: list[tuple[str, str]] = []
        self.icon = QSystemTrayIcon(icons.icon("tray-idle"), self)
        self.menu = QMenu()
        self.show_action = QAction("Show meetcap", self.menu)
        self.record_action = QAction("Start recording", self.menu)
        self.quit_action = QAction("Quit", self.menu)
        self.menu.addAction(self.show_action)
        self.menu.addSeparator()
        self.menu.addAction(self.record_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.icon.setContextMenu(self.menu)
        self.show_action.triggered.connect(self.show_window)
        self.record_action.triggered.connect(self._toggle_recording)
        self.quit_action.triggered.connect(self.window.close)
        self.icon.activated.connect(self._on_activated)
        self.controller.phase_changed.connect(self._update)
        window.warning_raised.connect(self.notify)
        window.text_timer.timeout.connect(self._update)
        self._shown_state: tuple[Phase, bool] | None = None
        self._update()
        if QSystemTrayIcon.isSystemTrayAvailable():
            self.icon.show()

    @property
    def available(self) -> bool:
        return QSystemTrayIcon.isSystemTrayAvailable()

    def notify(self, warning: Warning) -> None:
        """Show a warning as a system notification (what happened and what to do)."""
        self.notifications.append((warning.title, warning.text))
        if self.icon.isVisible() and QSystemTrayIcon.supportsMessages():
            kind = (QSystemTrayIcon.MessageIcon.Critical if warning.severity == "error"
                    else QSystemTrayIcon.MessageIcon.Warning)
            self.icon.showMessage(f"meetcap: {warning.title}", warning.text, kind,
                                  NOTIFICATION_MS)

    def show_window(self) -> None:
        self.window.showNormal()
        self.window.raise_()
        self.window.activateWindow()

    def _toggle_recording(self) -> None:
        if self.controller.phase is Phase.IDLE:
            self.window.start_recording()
        elif self.controller.phase is Phase.RECORDING:
            self.window.stop_recording()

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.show_window()

    def _update(self, *_: object) -> None:
        phase = self.controller.phase
        warned = bool(self.window.banner.warnings())
        if (phase, warned) == self._shown_state:
            return
        self._shown_state = (phase, warned)
        name = "tray-warning" if warned and phase is not Phase.IDLE else (
            "tray-recording" if phase is not Phase.IDLE else "tray-idle")
        self.icon.setIcon(icons.icon(name))
        self.record_action.setText("Stop recording" if phase is Phase.RECORDING
                                    else "Start recording")
        self.record_action.setEnabled(phase in (Phase.IDLE, Phase.RECORDING))
        words = {Phase.IDLE: "ready", Phase.STARTING: "starting…",
                 Phase.RECORDING: "recording", Phase.STOPPING: "finishing…"}[phase]
        self.icon.setToolTip(f"meetcap: {words}" + (" (check the warnings)" if warned else ""))

