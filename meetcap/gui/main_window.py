"""The main window: lays out the panels, wires them to the session controller, and runs
the two refresh timers (meters at display rate, words and numbers a few times a second).
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QMainWindow, QMessageBox, QVBoxLayout, QWidget

from meetcap import paths
from meetcap.audio.devices import AudioDevice, DeviceKind, default_device
from meetcap.audio.events import SOURCE_VAD, AudioEvent, AudioEventKind
from meetcap.client.config import BUILTIN_DESTINATION, destination_key
from meetcap.client.pending import PendingRecording
from meetcap.client.status import FinishResult, StreamStatus
from meetcap.constants import SOURCE_MIC, SOURCE_MIX, SOURCE_SYSTEM
from meetcap.gui import icons
from meetcap.gui.banner import WarningBanner, WarningTracker
from meetcap.gui.connection_panel import ConnectionPanel
from meetcap.gui.mix_strip import MixStrip
from meetcap.gui.pending_dialog import DeliveryTarget, PendingDialog
from meetcap.gui.session_controller import SessionController
from meetcap.gui.session_panel import SessionPanel
from meetcap.gui.settings import SettingsStore
from meetcap.gui.settings_dialog import SettingsDialog
from meetcap.gui.source_strip import SourceStrip
from meetcap.gui.status_text import (
    SOURCE_TITLES,
    Warning,
    source_warnings,
    stream_warnings,
)
from meetcap.gui.transcript_pane import TranscriptPane
from meetcap.levels import SourceLevels
from meetcap.session import Phase, SessionInfo
from meetcap.session.text import as_sentence

# 30 fps while meters move: smooth to the eye, and half the CPU of 60 fps (the levels
# themselves change 10 times a second; the ballistics fill in the motion between).
DISPLAY_INTERVAL_MS = 33
# Numbers and words twice a second: easy to read, and every label that changes costs a
# repaint (4 a second measured ~0.5 % of a core more in bench/app_cpu.py). Warnings do
# not wait for it: audio and connection events refresh the text at once.
TEXT_INTERVAL_MS = 500
SAVE_DELAY_MS = 500  # a slider drag is saved once, when it settles


def ask_stop_and_quit(parent: QWidget) -> bool:
    """The question asked when the window is closed during a recording."""
    answer = QMessageBox.question(
        parent,
        "Stop recording?",
        "A recording is running. Stop it and quit?\n\n"
        "Everything captured so far is kept: what the server has not confirmed yet "
        "stays on this computer, and meetcap offers to deliver it when it starts.",
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class MainWindow(QMainWindow):
    """The app window. ``warning_raised(Warning)`` fires once for each new warning (the
    tray turns it into a notification)."""

    warning_raised = Signal(object)

    def __init__(self, controller: SessionController, store: SettingsStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # Construction order: every attribute and timer exists before the first slot is
        # connected or called, so a signal, or the device list the watcher already
        # holds, can arrive at any point from here on (issue 8: a device listing that
        # came before the save timer existed crashed one launch in eight).
        self.controller = controller
        self.recorder = controller.recorder
        self.store = store
        self.settings = controller.settings
        self.setWindowTitle("meetcap")
        self.setWindowIcon(icons.icon("meetcap"))

        self.session_panel = SessionPanel(self)
        self.banner = WarningBanner(self)
        self.strips = {
            SOURCE_MIC: SourceStrip(SOURCE_MIC, SOURCE_TITLES[SOURCE_MIC], "mic", self),
            SOURCE_SYSTEM: SourceStrip(SOURCE_SYSTEM, SOURCE_TITLES[SOURCE_SYSTEM], "loopback",
                                       self),
        }
        self.mix_strip = MixStrip(self)
        self.connection = ConnectionPanel(self)
        self.transcript = TranscriptPane(self)
        self.transcript.set_sessions_folder(self._builtin_folder())
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(18, 16, 18, 18)
        layout.setSpacing(12)
        layout.addWidget(self.session_panel)
        layout.addWidget(self.banner)
        for strip in self.strips.values():
            layout.addWidget(strip)
        layout.addWidget(self.mix_strip)
        layout.addWidget(self.connection)
        layout.addWidget(self.transcript, 1)
        self.setCentralWidget(central)
        # Room for the transcript where the screen has it; never below the minimum.
        screen = self.screen().availableGeometry().height() if self.screen() else 0
        self.resize(760, max(self.minimumSizeHint().height(),
                             min(self.sizeHint().height(), int(screen * 0.9))))

        self._meter_strips: tuple[tuple[str, SourceStrip | MixStrip], ...] = (
            *self.strips.items(), (SOURCE_MIX, self.mix_strip))
        self.tracker = WarningTracker()
        self._event_warnings: dict[str, Warning] = {}
        self.confirm_quit = ask_stop_and_quit  # replaced by tests

        self.display_timer = QTimer(self)
        self.display_timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.display_timer.setInterval(DISPLAY_INTERVAL_MS)
        self.display_timer.timeout.connect(self.refresh_meters)
        self.text_timer = QTimer(self)
        self.text_timer.setInterval(TEXT_INTERVAL_MS)
        self.text_timer.timeout.connect(self.refresh_text)
        self.text_timer.start()
        self.save_timer = QTimer(self)
        self.save_timer.setSingleShot(True)
        self.save_timer.setInterval(SAVE_DELAY_MS)
        self.save_timer.timeout.connect(self.save_settings)

        self._apply_settings()
        self._connect()
        self.refresh_text()

    # -- wiring

    def _apply_settings(self) -> None:
        s = self.settings
        capture = s.capture
        for source, strip in self.strips.items():
            strip.apply_settings(s.device_id(source) or None, capture.gain_db.get(source, 0.0),
                                 capture.muted.get(source, False))
        self.mix_strip.apply_settings(capture.vad, capture.normalize, capture.tracks)
        self.strips[SOURCE_MIC].apply_echo_cancel(capture.echo_cancel)

    def _connect(self) -> None:
        c = self.controller
        self.session_panel.start_requested.connect(self.start_recording)
        self.session_panel.stop_requested.connect(self.stop_recording)
        for strip in self.strips.values():
            strip.device_picked.connect(self._on_device_picked)
            strip.gain_changed.connect(self._on_gain)
            strip.mute_toggled.connect(self._on_mute)
            strip.meter.clip_cleared.connect(self.refresh_text)
        self.strips[SOURCE_MIC].echo_cancel_changed.connect(self._on_echo_cancel)
        self.mix_strip.vad_toggled.connect(self._on_vad)
        self.mix_strip.normalize_toggled.connect(self._on_normalize)
        self.mix_strip.tracks_toggled.connect(self._on_tracks)
        self.connection.settings_requested.connect(self.open_settings)
        c.phase_changed.connect(self._on_phase)
        c.devices_changed.connect(self._on_devices)
        c.audio_event.connect(self._on_audio_event)
        c.session_started.connect(self._on_session_started)
        c.session_finished.connect(self._on_session_finished)
        c.problem.connect(self._on_problem)
        c.stream_status_changed.connect(self._on_stream_status)
        c.transcript_segment.connect(self.transcript.add_live_segment)
        # The watcher may have listed the devices before we connected (its signal then
        # reached nobody, and it only signals changes): take the list it holds.
        if c.watcher.devices:
            self._on_devices(c.watcher.devices)

    # -- actions

    def start_recording(self) -> bool:
        self._event_warnings.pop("problem", None)
        return self.controller.start()

    def stop_recording(self) -> bool:
        return self.controller.stop()

    def offer_pending_recordings(self) -> PendingDialog | None:
        """At start: recordings an earlier run could not deliver (another server or
        account, a refused token, a crash) are listed with Deliver / Retry with new
        credentials / Discard, never dropped in silence. None when there are none."""
        spool_root = paths.spool_dir(self.recorder.data_root)
        if not PendingDialog.has_pending(spool_root):
            return None
        dialog = PendingDialog(spool_root, self._credentials_for, self,
                               streamer_options=self.controller.recorder.streamer_options)
        dialog.show()
        self.pending_dialog = dialog
        return dialog

    def _credentials_for(self, recording: PendingRecording) -> DeliveryTarget | None:
        """The URL and token this app knows for ``recording``'s destination (None: the
        dialog asks). The built-in server is started for its own recordings."""
        if recording.builtin:
            server = self.recorder.local_server
            if server is None:
                return None
            return DeliveryTarget(server.start(), server.token, BUILTIN_DESTINATION)
        url, token = self.settings.server_url.strip(), self.settings.token.strip()
        if url and token and recording.destination == destination_key(url, token):
            return DeliveryTarget(url, token)
        return None

    def open_settings(self) -> SettingsDialog:
        """Open the settings dialog (modeless, so tests can drive it)."""
        dialog = SettingsDialog(self.settings, self,
                                local_server_hint=str(self._builtin_folder()))
        dialog.accepted.connect(lambda: self._accept_settings(dialog))
        dialog.setModal(True)
        dialog.show()
        self.settings_dialog = dialog
        return dialog

    def _accept_settings(self, dialog: SettingsDialog) -> None:
        dialog.apply_to(self.settings)
        # The running chain (the preview's meters now, a session's later) follows at once.
        self.recorder.set_noise_suppress(self.settings.capture.noise_suppress)
        self.save_settings()
        self.refresh_text()

    def save_settings(self) -> None:
        if self.store is not None:
            self.store.save(self.settings)

    def _schedule_save(self) -> None:
        self.save_timer.start()

    def _on_device_picked(self, source: str, device_id: str | None) -> None:
        self.controller.set_device(source, device_id)
        self._event_warnings.pop(f"error:{source}", None)
        self._schedule_save()

    def _on_gain(self, source: str, gain_db: float) -> None:
        self.recorder.set_gain_db(source, gain_db)
        self._schedule_save()

    def _on_mute(self, source: str, muted: bool) -> None:
        self.recorder.set_muted(source, muted)
        self._schedule_save()
        self.refresh_text()

    def _on_vad(self, enabled: bool) -> None:
        self.controller.set_vad(enabled)
        self._schedule_save()

    def _on_echo_cancel(self, mode: str) -> None:
        self.recorder.set_echo_cancel(mode)
        self._schedule_save()

    def _on_tracks(self, enabled: bool) -> None:
        self.settings.capture.tracks = enabled  # read when the next session's chain is made
        self._schedule_save()

    def _on_normalize(self, enabled: bool) -> None:
        self.recorder.set_normalize(enabled)
        self._schedule_save()

    # -- controller signals

    def _on_phase(self, phase: Phase) -> None:
        self.session_panel.set_phase(phase)
        self.transcript.set_recording(phase is not Phase.IDLE)
        self.connection.settings_button.setEnabled(phase is Phase.IDLE)
        if phase is not Phase.IDLE:
            self.display_timer.start()
        self.refresh_text()

    def _on_devices(self, devices: tuple[AudioDevice, ...]) -> None:
        for strip in self.strips.values():
            strip.set_devices(devices)
        # A source nobody has chosen for yet gets the system's default device.
        defaults: tuple[tuple[str, DeviceKind], ...] = ((SOURCE_MIC, "mic"),
                                                        (SOURCE_SYSTEM, "loopback"))
        for source, kind in defaults:
            if self.settings.device_id(source) is None:
                device = default_device(kind, list(devices))
                if device is not None:
                    self.strips[source].picker.set_current_id(device.id)
                    self.controller.set_device(source, device.id)
                    self._schedule_save()
        self.refresh_text()

    def _on_audio_event(self, event: AudioEvent) -> None:
        if event.kind is AudioEventKind.ERROR:
            key = f"error:{event.source or 'audio'}"
            who = SOURCE_TITLES.get(event.source or "", "Speech detection"
                                    if event.source == SOURCE_VAD else "Audio")
            self._event_warnings[key] = Warning(key, "error", f"{who}: a problem",
                                                as_sentence(event.message))
        elif event.kind in (AudioEventKind.DEVICE_RESTORED, AudioEventKind.DEVICE_SWITCHED):
            self._event_warnings.pop(f"error:{event.source}", None)
        self.refresh_text()

    def _on_session_started(self, info: SessionInfo) -> None:
        for _, strip in self._meter_strips:
            strip.meter.reset()
        self.transcript.start_live()
        self._event_warnings.pop("problem", None)
        self.refresh_text()

    def _on_session_finished(self, result: FinishResult) -> None:
        self.transcript.end_live()
        self._event_warnings = {k: w for k, w in self._event_warnings.items()
                                if not k.startswith("error:")}
        if not result.ok:
            self._event_warnings["problem"] = Warning(
                "problem", "error", "Not everything reached the server yet",
                as_sentence(result.message),
            )
        self.refresh_text()

    def _on_problem(self, message: str) -> None:
        self._event_warnings["problem"] = Warning("problem", "error", "Recording problem",
                                                  message)
        self.refresh_text()

    def _on_stream_status(self, status: StreamStatus) -> None:
        # State changes are rare (connected, reconnecting, failed): show them, and any
        # warning they bring, at once rather than at the next text tick.
        if status.session_id:
            self.transcript.live_id = status.session_id  # names an exported transcript
        if status.transcript_failed:  # the banner has it too (the recorder's on_problem)
            self.transcript.set_live_failed(status.transcript_failed)
        self.refresh_text()

    # -- refresh

    def refresh_meters(self) -> None:
        """Display timer: feed the meters the latest levels and let them move."""
        if self.isMinimized() or not self.isVisible():
            return  # nobody sees the meters (in the tray): skip the work
        now = time.monotonic()
        levels = self.recorder.levels()
        moving = False
        for source, strip in self._meter_strips:
            strip.show_levels(levels.get(source) or SourceLevels(source), now)
            moving |= strip.meter.tick(now)
        if not moving and self.controller.phase is Phase.IDLE and not self.recorder.previewing:
            self.display_timer.stop()  # meters at rest and nothing to show: no more ticks

    def refresh_text(self) -> None:
        """Text timer: numbers, health lines, warnings, connection, elapsed time."""
        c, r = self.controller, self.recorder
        levels = r.levels()
        if r.previewing and not self.display_timer.isActive():
            self.display_timer.start()  # the meters move before Start too
        recording = c.phase is Phase.RECORDING
        warnings: list[Warning] = []
        for source, strip in self.strips.items():
            source_levels = levels.get(source, SourceLevels(source))
            strip.refresh_text(source_levels, recording=recording)
            if recording:
                warnings += source_warnings(
                    source, source_levels, user_muted=strip.muted,
                    has_device=strip.picker.current_id() is not None,
                )
        self.mix_strip.refresh_text(levels.get(SOURCE_MIX, SourceLevels(SOURCE_MIX)),
                                    recording=recording)
        status = r.stream_status()
        self.connection.show_status(status)
        self.transcript.set_lag(status.transcript_lag_s
                                if status is not None and c.phase is not Phase.IDLE else None)
        self.connection.set_address(self._address_text())
        if c.phase is not Phase.IDLE:
            warnings += stream_warnings(status) + self._tracks_warnings(status)
        warnings += self._event_warnings.values()
        rows_before = len(self.banner.warnings())
        self.banner.show_warnings(warnings)
        rows_after = len(self.banner.warnings())
        if rows_after != rows_before:  # make room for the banner, or give its space back
            QTimer.singleShot(0, lambda: self._fit_height(shrink=rows_after < rows_before))
        for warning in self.tracker.update(warnings):
            self.warning_raised.emit(warning)
        self.session_panel.set_elapsed(r.elapsed_s())
        self.session_panel.set_storage(self._storage_text(status))

    def _tracks_warnings(self, status: StreamStatus | None) -> list[Warning]:
        """Two tracks asked, but the server stores the mono mix only (it lacks or refuses
        the tracks extension): said for the whole session, and where both can be kept."""
        if status is None or status.tracks_stored is not False:
            return []
        keep = ("the local copy keeps both tracks" if self.settings.local_copy.strip()
                else "a local copy folder (Settings) keeps both tracks")
        return [Warning("tracks", "warning", "The server does not store two tracks",
                        f"It gets the mono mix only (nothing of it is lost); {keep}.")]

    def _address_text(self) -> str:
        url = self.settings.server_url.strip()
        if url:
            return url
        server = self.recorder.local_server
        where = f" ({server.url})" if server is not None and server.running else ""
        return f"Built-in server on this computer{where}"

    def _builtin_folder(self) -> Path:
        """Where the built-in server keeps sessions."""
        return paths.sessions_dir(self.recorder.data_root)

    def _storage_text(self, status: StreamStatus | None) -> str:
        r = self.recorder
        info = r.session
        if info is None:
            result = r.last_result
            if result is not None:
                return f"Last session: {result.message}"
            if self.settings.server_url.strip():
                return f"Recordings stream to {self.settings.server_url.strip()}"
            return f"Recordings are saved in {self._builtin_folder()}"
        session_id = status.session_id if status is not None else None
        if info.builtin and info.storage_dir is not None:
            target = (str(r.local_server.session_file(session_id))
                      if session_id and r.local_server is not None else f"{info.storage_dir}")
            text = f"Saving to {target}"
        else:
            text = f"Streaming to {info.url}" + (f" (session {session_id})" if session_id else "")
        if info.local_copy is not None:
            text += f"; local copy {info.local_copy}"
        return text

    def _fit_height(self, *, shrink: bool) -> None:
        """Make the window as tall as its content needs at this width: grow when banner
        rows appear (their text wraps, and Qt's minimum size does not count wrapped
        lines, so the strips would be squeezed and the meter scales cut off), and with
        ``shrink``, give the space back when rows go."""
        if self.isMaximized() or self.isFullScreen():
            return
        central = self.centralWidget()
        content = central.layout() if central is not None else None
        if central is None or content is None:
            return  # not laid out yet
        # Let both layouts forget the old banner (the window's own layout holds the
        # minimum size it forced), then ask for the height at this width.
        for layout in (content, self.layout()):
            if layout is not None:
                layout.activate()
        needed = (content.totalHeightForWidth(central.width()) if content.hasHeightForWidth()
                  else content.totalSizeHint().height())
        needed = max(needed + self.height() - central.height(), self.minimumSizeHint().height())
        if needed > self.height() or shrink:
            self.resize(self.width(), needed)

    # -- closing

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt API
        """Closing during a recording asks first (:attr:`confirm_quit`)."""
        if self.controller.recording and not self.confirm_quit(self):
            event.ignore()
            return
        self.save_timer.stop()
        self.save_settings()
        self.transcript.stop_playback()
        event.accept()

