"""The app's one owner of capture, streaming and the built-in server. No widgets.

Every step that can block (opening devices, starting the server or the streamer,
flushing the last frames, waiting for the server's ``ended``) runs on one worker
thread, in the order it was asked for; the GUI thread only reads cheap snapshots
(:meth:`SessionController.levels`, :meth:`SessionController.stream_status`) and gets
results as Qt signals. Callbacks from audio, streamer and device-watcher threads are
re-emitted as signals of this object, which lives on the GUI thread, so Qt queues them
over to it.

A session, from Start to Stop::

    [built-in server started, if no URL is set]
    Streamer(config).start()             spool opened, connecting
    manager.subscribe(on_frame)          capture starts; every frame -> streamer.submit
    [manager.subscribe(vad keeper)]      while "Detect speech" is on (can change live)
    ... Stop ...
    manager.unsubscribe(...)             the last frames are flushed through on_frame
    streamer.finish()                    waits for every ack and the server's `ended`
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from meetcap.audio.filewriter import FrameFileWriter
from meetcap.audio.manager import AudioManager, CaptureSettings, Subscription
from meetcap.audio.watcher import DeviceChange, DeviceWatcher
from meetcap.client.config import StreamerConfig
from meetcap.client.status import FinishResult, StreamStatus
from meetcap.client.streamer import Streamer
from meetcap.errors import MeetcapError, StorageError
from meetcap.frames import Frame
from meetcap.gui.local_server import LocalServer
from meetcap.gui.settings import AppSettings
from meetcap.levels import SourceLevels

log = logging.getLogger(__name__)

IDLE, STARTING, RECORDING, STOPPING = "idle", "starting", "recording", "stopping"
DEFAULT_FINISH_TIMEOUT_S = 30.0


def default_data_root() -> Path:
    """The user's data folder (sessions of the built-in server, the spools)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("meetcap"))


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Where the running session goes. ``storage_dir`` is set for the built-in server."""

    url: str
    builtin: bool
    storage_dir: Path | None
    local_copy: Path | None
    started_monotonic: float


@dataclass(eq=False)
class _Live:
    """A running session's parts (touched by the worker and the frame thread)."""

    info: SessionInfo
    streamer: Streamer
    writer: FrameFileWriter | None
    subscription: Subscription | None = None
    vad_subscription: Subscription | None = None
    frames: int = 0
    stopped: bool = False
    failed: bool = False
    copy_failed: bool = False
    sha256: Any = field(default_factory=hashlib.sha256)


class SessionController(QObject):
    """See the module docstring. Create on the GUI thread; call :meth:`shutdown` at exit.

    ``settings`` is the app's settings object: the controller reads it at each start and
    updates it when a live control changes (the window saves it).
    ``streamer_options`` are extra :class:`StreamerConfig` fields (tests shorten the
    backoff). ``data_root`` holds the built-in server's ``sessions/`` and the app's
    ``spools/`` (default: the user's data folder).
    """

    phase_changed = Signal(str)
    devices_changed = Signal(object)  # tuple[AudioDevice, ...]
    audio_event = Signal(object)  # AudioEvent
    stream_status_changed = Signal(object)  # StreamStatus
    session_started = Signal(object)  # SessionInfo
    session_finished = Signal(object)  # FinishResult
    problem = Signal(str)  # a sentence to show: a start failed, capture stopped...

    # Internal relays: emitted on worker threads, delivered (queued) on the GUI thread.
    _started = Signal(object)
    _start_failed = Signal(str)
    _stopped = Signal(object)
    _capture_failed = Signal(str)

    def __init__(
        self,
        settings: AppSettings,
        *,
        data_root: Path | None = None,
        streamer_options: dict[str, Any] | None = None,
        finish_timeout_s: float = DEFAULT_FINISH_TIMEOUT_S,
        device_poll_s: float | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.data_root = Path(data_root) if data_root is not None else default_data_root()
        self.streamer_options = dict(streamer_options or {})
        self.finish_timeout_s = finish_timeout_s
        self.local_server = LocalServer(self.data_root / "sessions")
        self.capture_settings = CaptureSettings(
            mic_device_id=settings.mic_device_id or None,
            system_device_id=settings.system_device_id or None,
            gain_db=dict(settings.gain_db),
            muted=dict(settings.muted),
            normalize=settings.normalize,
        )
        # One device watcher for the pickers and the capture worker (each listing runs
        # pactl; two watchers listed everything twice on every change).
        self.watcher = DeviceWatcher(self._on_device_change, interval_s=device_poll_s)
        self.manager = AudioManager(self.capture_settings, watcher=self.watcher)
        self.manager.add_event_listener(self.audio_event.emit)
        self.phase = IDLE
        self._closed = False
        self._worker_done = False
        self.last_result: FinishResult | None = None
        self.last_status: StreamStatus | None = None
        self._live: _Live | None = None
        self._worker = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="meetcap-session"
        )
        self._started.connect(self._on_started)
        self._start_failed.connect(self._on_start_failed)
        self._stopped.connect(self._on_stopped)
        self._capture_failed.connect(self._on_capture_failed)
        self.watcher.start()

    # -- what the window reads (GUI thread, cheap)

    @property
    def recording(self) -> bool:
        return self.phase in (STARTING, RECORDING, STOPPING)

    @property
    def session(self) -> SessionInfo | None:
        live = self._live
        return live.info if live is not None else None

    def levels(self) -> dict[str, SourceLevels]:
        """Latest levels of "mic", "system", "mix" (all STOPPED when not capturing)."""
        return self.manager.levels()

    def stream_status(self) -> StreamStatus | None:
        """The live session's delivery, else the last session's final status."""
        live = self._live
        if live is not None:
            return live.streamer.status()
        return self.last_status

    def elapsed_s(self) -> float:
        live = self._live
        return time.monotonic() - live.info.started_monotonic if live is not None else 0.0

    def frames_captured(self) -> int:
        live = self._live
        return live.frames if live is not None else 0

    # -- live controls (GUI thread)

    def set_device(self, source: str, device_id: str | None) -> None:
        """Switch a source's device; live during a session (capture continues)."""
        self.settings.set_device_id(source, device_id if device_id else "")
        # set_device takes the manager's lock, which a start may hold while devices
        # open: queue it behind the start on the worker, never wait on the GUI thread.
        self._submit(lambda: self.manager.set_device(source, device_id or None))

    def set_gain_db(self, source: str, gain_db: float) -> None:
        self.settings.gain_db[source] = gain_db
        self.manager.set_gain_db(source, gain_db)

    def set_muted(self, source: str, muted: bool) -> None:
        self.settings.muted[source] = muted
        self.manager.set_muted(source, muted)

    def set_normalize(self, enabled: bool) -> None:
        self.settings.normalize = enabled
        self.manager.set_normalize(enabled)

    def set_vad(self, enabled: bool) -> None:
        """Speech detection on or off; during a session it changes at once."""
        self.settings.vad = enabled
        if self.phase == RECORDING:
            self._submit(self._apply_vad)

    # -- session (GUI thread)

    def start(self) -> bool:
        """Start a session in the background; False if one is already under way.
        ``phase_changed("recording")`` + ``session_started`` follow, or ``problem``."""
        if self.phase != IDLE or self._closed:
            return False
        self._set_phase(STARTING)
        self._submit(self._start_work)
        return True

    def stop(self) -> bool:
        """Stop the session in the background; ``session_finished`` follows."""
        if self.phase != RECORDING or self._live is None:
            return False
        self._set_phase(STOPPING)
        live = self._live
        self._submit(lambda: self._stop_work(live))
        return True

    def shutdown(self, timeout_s: float = DEFAULT_FINISH_TIMEOUT_S) -> None:
        """End everything: a running session is stopped and finished (what the server did
        not confirm in time stays in the spool for the next start), then capture, the
        device watcher and the built-in server stop. Blocks; call at exit."""
        if self._closed:
            return
        self._closed = True
        if self.phase != IDLE:
            self._submit(lambda: self._stop_current(timeout_s))
        self._worker.shutdown(wait=True)
        self._worker_done = True
        self.watcher.stop()
        self.manager.close()
        self.local_server.stop()

    # -- worker thread

    def _submit(self, fn: Callable[[], None]) -> None:
        if self._worker_done:
            return  # after shutdown(): a late signal (a device listing) changes nothing

        def run() -> None:
            try:
                fn()
            except Exception:  # noqa: BLE001 - a bug here must not kill the worker
                log.exception("session worker task failed")
        self._worker.submit(run)

    def _destination(self) -> tuple[str, str, bool, Path]:
        """(url, token, built-in?, spool dir) for a new session. Raises ConfigError,
        StorageError or OSError (the built-in server cannot start)."""
        url = self.settings.server_url.strip()
        spools = self.data_root / "spools"
        if not url:
            return self.local_server.start(), self.local_server.token, True, spools / "builtin"
        # Each server gets its own spool: a session must resume where it started.
        key = hashlib.sha256(url.encode()).hexdigest()[:12]
        return url, self.settings.token.strip(), False, spools / f"server-{key}"

    def _start_work(self) -> None:
        streamer: Streamer | None = None
        writer: FrameFileWriter | None = None
        try:
            url, token, builtin, spool_dir = self._destination()
            config = StreamerConfig(url=url, token=token, spool_dir=spool_dir,
                                    **self.streamer_options)
            streamer = Streamer(config, on_status=self.stream_status_changed.emit)
            streamer.start()
            copy_dir = self.settings.local_copy_dir.strip()
            if copy_dir:
                stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
                writer = FrameFileWriter(Path(copy_dir).expanduser() / f"meetcap-{stamp}.wav")
            info = SessionInfo(
                url=config.url, builtin=builtin,
                storage_dir=self.local_server.data_dir if builtin else None,
                local_copy=writer.path if writer else None,
                started_monotonic=time.monotonic(),
            )
            live = _Live(info, streamer, writer)
            self._live = live
            live.subscription = self.manager.subscribe(self._on_frame, name="session")
        except (MeetcapError, OSError) as exc:
            self._live = None
            if streamer is not None:
                streamer.close()
            if writer is not None:
                writer.close()
                writer.path.unlink(missing_ok=True)
            self._start_failed.emit(_sentence(f"Could not start recording: {exc}"))
            return
        self._apply_vad()
        self._started.emit(live.info)

    def _apply_vad(self) -> None:
        """Keep a VAD-requesting subscription while speech detection is wanted.

        The manager runs the VAD while any subscriber asks for it; a no-op listener that
        asks for it lets the setting change mid-session without touching the session's
        own subscription (and so without any gap in its frames).
        """
        live = self._live
        if live is None or live.subscription is None:
            return
        wanted = self.settings.vad
        if wanted and live.vad_subscription is None:
            live.vad_subscription = self.manager.subscribe(_ignore, vad=True, name="vad")
        elif not wanted and live.vad_subscription is not None:
            self.manager.unsubscribe(live.vad_subscription)
            live.vad_subscription = None

    def _on_frame(self, frame: Frame) -> None:
        """Every captured frame, on the subscription's thread, in order."""
        live = self._live
        if live is None or live.failed:
            return
        try:
            live.streamer.submit(frame)
        except (MeetcapError, RuntimeError) as exc:
            # The spool could not take it (full disk, cap reached): capture must stop
            # and say so; no later frame may go anywhere, so what was kept is gapless.
            live.failed = True
            self._capture_failed.emit(_sentence(f"Recording stopped: {exc}"))
            return
        live.frames += 1
        live.sha256.update(frame.pcm)
        if live.writer is not None and not live.copy_failed:
            try:
                live.writer(frame)
            except StorageError as exc:
                live.copy_failed = True
                self.problem.emit(_sentence(
                    f"The local copy stopped: {exc}; the recording still goes to the server"
                ))

    def _stop_current(self, timeout_s: float) -> None:
        """Stop whatever session runs (read on the worker: a start still queued there
        sets it first)."""
        if self._live is not None:
            self._stop_work(self._live, timeout_s)

    def _stop_work(self, live: _Live, timeout_s: float | None = None) -> None:
        if live.stopped:
            return
        live.stopped = True
        for attr in ("vad_subscription", "subscription"):  # the session's own one last:
            subscription = getattr(live, attr)  # it receives the final flushed frames
            if subscription is not None:
                self.manager.unsubscribe(subscription)
                setattr(live, attr, None)
        if live.writer is not None:
            live.writer.close()
        try:
            result = live.streamer.finish(timeout_s or self.finish_timeout_s)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never swallowed
            log.exception("finishing the session failed")
            result = FinishResult(ok=False, message=f"ending the session failed: {exc}")
        self.last_result = result  # also read after shutdown(), when no event loop runs
        self._stopped.emit((live, result))

    # -- back on the GUI thread

    def _on_started(self, info: SessionInfo) -> None:
        self._set_phase(RECORDING)
        self.session_started.emit(info)

    def _on_start_failed(self, message: str) -> None:
        self._set_phase(IDLE)
        self.problem.emit(message)

    def _on_stopped(self, payload: tuple[_Live, FinishResult]) -> None:
        live, result = payload
        self.last_status = live.streamer.status()
        self.last_result = result
        if self._live is live:
            self._live = None
        self._set_phase(IDLE)
        self.session_finished.emit(result)

    def _on_capture_failed(self, message: str) -> None:
        self.problem.emit(message)
        self.stop()

    def _on_device_change(self, change: DeviceChange) -> None:
        self.devices_changed.emit(change.devices)  # watcher thread -> queued to the GUI

    def _set_phase(self, phase: str) -> None:
        if phase != self.phase:
            self.phase = phase
            self.phase_changed.emit(phase)


def _ignore(frame: Frame) -> None:
    """The VAD keeper's listener: the session's own subscription gets the frames."""


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


__all__ = [
    "IDLE", "RECORDING", "STARTING", "STOPPING", "SessionController", "SessionInfo",
    "default_data_root",
]
