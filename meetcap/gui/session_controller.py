"""The app's adapter around :class:`meetcap.session.Recorder`: one worker thread, and
the recorder's callbacks re-emitted as Qt signals. No session rules live here.

Every recorder call that can block (start, stop, a device switch, the VAD switch) runs
on one worker thread, in the order asked; the GUI thread only reads cheap snapshots
(``controller.recorder.levels()``, ``stream_status()``) and calls the controls that
never block (gains, mutes, normalisation) directly on the recorder. Callbacks from the
audio, streamer and device-watcher threads are re-emitted as signals of this object,
which lives on the GUI thread, so Qt queues them over to it.

Construction starts nothing. :meth:`SessionController.start_services` starts the device
watcher; call it once the window has connected its slots (the window also takes the
list the watcher already holds, so either order is safe).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from meetcap.audio.devices import AudioDevice
from meetcap.audio.events import AudioEvent
from meetcap.audio.watcher import DeviceChange, DeviceWatcher
from meetcap.client.status import FinishResult, StreamStatus
from meetcap.errors import MeetcapError
from meetcap.session import Phase, Recorder, RecorderListener, SessionSettings
from meetcap.session.recorder import DEFAULT_FINISH_TIMEOUT_S
from meetcap.session.text import as_sentence
from meetcap.transcribe.segments import TranscriptSegment

log = logging.getLogger(__name__)


class _Relay(RecorderListener):
    """The recorder's callbacks (worker threads) -> the controller's signals (queued)."""

    def __init__(self, controller: SessionController) -> None:
        self.c = controller

    def on_audio_event(self, event: AudioEvent) -> None:
        self.c.audio_event.emit(event)

    def on_stream_status(self, status: StreamStatus) -> None:
        self.c.stream_status_changed.emit(status)

    def on_problem(self, message: str) -> None:
        self.c.problem.emit(message)

    def on_notice(self, message: str) -> None:
        """Not relayed: the window shows the stream status's ``tracks_stored`` itself, in
        the app's words, for as long as the session runs (a one-off problem row was
        cleared again when the session's start arrived after it)."""

    def on_capture_ended(self, message: str | None) -> None:
        self.c._capture_ended.emit(message or "")

    def on_transcript(self, segment: TranscriptSegment) -> None:
        self.c.transcript_segment.emit(segment)


class SessionController(QObject):
    """See the module docstring. Create on the GUI thread; call :meth:`shutdown` at exit.

    ``settings`` is the app's settings record: the recorder reads it at each start and
    its live controls update it (the window saves it). The other options go to the
    :class:`Recorder` (``device_poll_s`` and ``lister`` to the device watcher).
    """

    phase_changed = Signal(object)  # Phase
    devices_changed = Signal(object)  # tuple[AudioDevice, ...]
    audio_event = Signal(object)  # AudioEvent
    stream_status_changed = Signal(object)  # StreamStatus
    session_started = Signal(object)  # SessionInfo
    session_finished = Signal(object)  # FinishResult
    problem = Signal(str)  # a sentence to show: a start failed, capture stopped, a bug...
    transcript_segment = Signal(object)  # TranscriptSegment, final or partial

    # Internal relays: emitted on worker threads, delivered (queued) on the GUI thread.
    _started = Signal(object)
    _start_failed = Signal(str)
    _stopped = Signal(object)
    _capture_ended = Signal(str)

    def __init__(
        self,
        settings: SessionSettings,
        *,
        data_root: Path | None = None,
        streamer_options: dict[str, Any] | None = None,
        finish_timeout_s: float = DEFAULT_FINISH_TIMEOUT_S,
        device_poll_s: float | None = None,
        lister: Callable[[], list[AudioDevice]] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        # One device watcher for the pickers and the capture worker (each listing runs
        # pactl; two watchers listed everything twice on every change).
        watcher_options: dict[str, Any] = {"interval_s": device_poll_s}
        if lister is not None:
            watcher_options["lister"] = lister
        self.watcher = DeviceWatcher(self._on_device_change, **watcher_options)
        self.recorder = Recorder(
            settings, listener=_Relay(self), data_root=data_root, watcher=self.watcher,
            lister=lister, streamer_options=streamer_options, finish_timeout_s=finish_timeout_s,
        )
        self.phase = Phase.IDLE
        self._closed = False
        self._worker_done = False
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="meetcap-session"
        )
        self._started.connect(self._on_started)
        self._start_failed.connect(self._on_start_failed)
        self._stopped.connect(self._on_stopped)
        self._capture_ended.connect(self._on_capture_ended)

    def start_services(self) -> None:
        """Start listing devices (``devices_changed`` follows) and the preview: the
        meters and the echo score run from now on, before Start (nothing is recorded or
        sent until then). Call once, after the window is wired."""
        self.watcher.start()
        self._submit(self.recorder.start_preview, "opening the devices for the meters")

    @property
    def recording(self) -> bool:
        return self.phase is not Phase.IDLE

    # -- controls that may block (queued on the worker; the setting changes at once)

    def set_device(self, source: str, device_id: str | None) -> None:
        """Switch a source's device; live during a session (capture continues)."""
        self.settings.set_device_id(source, device_id if device_id else "")
        self._submit(lambda: self.recorder.set_device(source, device_id), "switching devices")

    def set_vad(self, enabled: bool) -> None:
        """Speech detection on or off; during a session it changes at once."""
        self.settings.capture.vad = enabled
        self._submit(lambda: self.recorder.set_vad(enabled), "switching speech detection")

    # -- session (GUI thread)

    def start(self) -> bool:
        """Start a session in the background; False if one is already under way.
        ``phase_changed(RECORDING)`` + ``session_started`` follow, or ``problem``."""
        if self.phase is not Phase.IDLE or self._closed:
            return False
        self._set_phase(Phase.STARTING)
        self._submit(self._start_work, "starting the recording", on_bug=self._start_failed.emit)
        return True

    def stop(self) -> bool:
        """Stop the session in the background; ``session_finished`` follows."""
        if self.phase is not Phase.RECORDING:
            return False
        self._set_phase(Phase.STOPPING)
        self._submit(self._stop_work, "stopping the recording")
        return True

    def shutdown(self, timeout_s: float = DEFAULT_FINISH_TIMEOUT_S) -> None:
        """End everything: a running session is stopped and finished (what the server did
        not confirm in time stays in the spool for the next start), then capture, the
        device watcher and the built-in server stop. Blocks; call at exit."""
        if self._closed:
            return
        self._closed = True
        # Behind whatever is queued (a start included), so it sees the final phase.
        self._submit(lambda: self.recorder.close(timeout_s), "closing the recorder")
        self._worker.shutdown(wait=True)
        self._worker_done = True
        self.watcher.stop()

    # -- worker thread

    def _submit(self, fn: Callable[[], None], what: str,
                on_bug: Callable[[str], None] | None = None) -> None:
        """Run ``fn`` on the worker. A MeetcapError is a problem to show; anything else
        is a bug, shown too (never only logged): the audio captured so far is kept."""
        if self._worker_done:
            return  # after shutdown(): a late signal (a device listing) changes nothing

        def run() -> None:
            try:
                fn()
            except MeetcapError as exc:
                (on_bug or self.problem.emit)(as_sentence(str(exc)))
            except Exception as exc:  # noqa: BLE001 - shown to the user, see above
                log.exception("session worker task failed while %s", what)
                (on_bug or self.problem.emit)(as_sentence(
                    f"meetcap hit an internal error while {what} ({type(exc).__name__}: "
                    f"{exc}); the audio captured so far is kept. Please report this"))

        self._worker.submit(run)

    def _start_work(self) -> None:
        try:
            info = self.recorder.start()
        except MeetcapError as exc:
            self._start_failed.emit(as_sentence(f"Could not start recording: {exc}"))
            self.recorder.start_preview()  # the meters go on
            return
        self._started.emit(info)

    def _stop_work(self) -> None:
        try:
            result = self.recorder.stop()
        except Exception as exc:
            self._stopped.emit(FinishResult(ok=False, message=as_sentence(
                f"ending the session failed ({type(exc).__name__}: {exc}); what was "
                "captured is kept in the spool for the next start")))
            raise
        self._stopped.emit(result)
        if not self._closed:
            self.recorder.start_preview()  # the meters go on after the session

    # -- back on the GUI thread

    def _on_started(self, info: object) -> None:
        self._set_phase(Phase.RECORDING)
        self.session_started.emit(info)

    def _on_start_failed(self, message: str) -> None:
        self._set_phase(Phase.IDLE)
        self.problem.emit(message)

    def _on_stopped(self, result: FinishResult) -> None:
        self._set_phase(Phase.IDLE)
        self.session_finished.emit(result)

    def _on_capture_ended(self, message: str) -> None:
        if message:
            self.problem.emit(message)
        self.stop()

    def _on_device_change(self, change: DeviceChange) -> None:
        self.devices_changed.emit(change.devices)  # watcher thread -> queued to the GUI

    def _set_phase(self, phase: Phase) -> None:
        if phase is not self.phase:
            self.phase = phase
            self.phase_changed.emit(phase)


__all__ = ["SessionController"]
