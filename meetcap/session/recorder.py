"""The Recorder: one recording session end to end, with no Qt.

The app and ``meetcap record`` both drive this class; neither holds session rules of
its own. A session, from start to stop::

    start()   the destination: the server set in the settings, or the built-in server
              (app), or none (CLI with only a file); the streamer opens the spool for
              that destination; the local copy file is created; capture starts
    frames    each frame, in order, on the capture subscription's thread:
                1. into the spool (Streamer.submit), or into the file when there is no
                   server: this is the recording
                2. then into the local copy, which holds exactly what was spooled
              After the first failure of step 1 (spool full, disk refused, a bug) no
              frame goes anywhere, so what was kept stays gapless; capture ends and the
              listener hears why. A failing local copy only warns: the server still
              gets everything.
    stop()    capture stops (its last frames pass through step 1 and 2), the local copy
              is closed, the streamer delivers what is left and waits for the server's
              ``ended``; what it could not deliver stays in the spool for the next run

Every call blocks as long as its work takes (opening devices, waiting for acks): a GUI
runs them on a worker thread. Live controls (gains, mutes, normalisation) never block;
a device switch and the speech-detection switch may wait for a start in progress.
Callbacks arrive on the recorder's worker threads (see :class:`RecorderListener`).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meetcap import paths
from meetcap.audio.capture import Capture, make_capture
from meetcap.audio.devices import AudioDevice
from meetcap.audio.events import AudioEvent
from meetcap.audio.filewriter import FrameFileWriter
from meetcap.audio.manager import AudioManager, Subscription
from meetcap.audio.watcher import DeviceWatcher
from meetcap.client.config import BUILTIN_DESTINATION, StreamerConfig
from meetcap.client.status import FinishResult, StreamStatus
from meetcap.client.streamer import Streamer
from meetcap.constants import CAPTURE_SOURCES, FRAMES_PER_SECOND
from meetcap.errors import ConfigError, FatalError, MeetcapError, UsageError
from meetcap.frames import Frame
from meetcap.levels import SourceLevels
from meetcap.session.local_server import LocalServer
from meetcap.session.settings import SessionSettings
from meetcap.session.text import as_sentence
from meetcap.transcribe.segments import TranscriptSegment

log = logging.getLogger(__name__)

DEFAULT_FINISH_TIMEOUT_S = 30.0


class Phase(enum.Enum):
    """Where a session is. Only IDLE accepts a start; only RECORDING a stop."""

    IDLE = "idle"
    STARTING = "starting"
    RECORDING = "recording"
    STOPPING = "stopping"


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """Where the running session goes. ``url`` is None when it goes to a file only;
    ``storage_dir`` is the built-in server's folder when that is the destination."""

    url: str | None
    builtin: bool
    storage_dir: Path | None
    local_copy: Path | None
    started_monotonic: float


class RecorderListener:
    """What a front end hears from a :class:`Recorder`. Override what you need.

    Each method runs on one of the recorder's threads (audio events on the audio event
    thread, stream status on the streamer's, the rest on the capture subscription's):
    hand the value over to your own thread (a Qt queued signal, a queue) and return.
    """

    def on_audio_event(self, event: AudioEvent) -> None:
        """A device was lost or came back, a source's health changed, or capture failed."""

    def on_stream_status(self, status: StreamStatus) -> None:
        """The delivery state changed (connected, reconnecting, failed...)."""

    def on_problem(self, message: str) -> None:
        """Something the person must read, while recording goes on (a sentence)."""

    def on_notice(self, message: str) -> None:
        """Something worth knowing that loses nothing, said once a session (the server
        stores the mono mix only, not two tracks). The same state is in the stream status
        (``tracks_stored``): a front end that shows that status (the app's banner) may
        show it from there instead. By default :meth:`on_problem`."""
        self.on_problem(message)

    def on_transcript(self, segment: TranscriptSegment) -> None:
        """A segment of the live transcript (when the settings ask for it and the server
        transcribes): each final exactly once, in id order, even across reconnects;
        partials (``segment.final`` False, the id their final will take) as they come,
        each replacing the previous one. Runs on the streamer's thread."""

    def on_capture_ended(self, message: str | None) -> None:
        """Capture stopped by itself: ``message`` says why (the recording could not be
        kept), or None when the frame limit of :meth:`Recorder.start` was reached. Call
        :meth:`Recorder.stop` (off this thread) to finish the session."""


@dataclass(eq=False)
class _Live:
    """A running session's parts (touched by the caller's thread and the frame thread)."""

    info: SessionInfo
    streamer: Streamer | None
    writer: FrameFileWriter | None
    max_frames: int | None
    subscription: Subscription | None = None
    frames: int = 0
    ended: bool = False  # no frame goes anywhere any more
    failure: str | None = None
    copy_failed: bool = False


class Recorder:
    """Owns the audio manager, the session's streamer and local copy, and (for the app)
    the built-in server. See the module docstring. Call :meth:`close` when done.

    ``builtin_server``: with no server URL set, stream to a built-in server on this
    computer (the app) instead of recording to the local copy only (the CLI).
    ``data_root``: the folder of the spool and the built-in server's sessions (default:
    :func:`meetcap.paths.data_root`). ``watcher``: a device watcher shared with the
    device pickers; its owner starts and stops it. ``streamer_options``: extra
    :class:`StreamerConfig` fields (tests shorten the backoff).
    """

    def __init__(
        self,
        settings: SessionSettings,
        *,
        listener: RecorderListener | None = None,
        builtin_server: bool = True,
        data_root: str | Path | None = None,
        watcher: DeviceWatcher | None = None,
        capture_factory: Callable[[AudioDevice], Capture] = make_capture,
        lister: Callable[[], list[AudioDevice]] | None = None,
        streamer_options: dict[str, Any] | None = None,
        finish_timeout_s: float = DEFAULT_FINISH_TIMEOUT_S,
    ) -> None:
        self.settings = settings
        self.listener = listener or RecorderListener()
        self.data_root = paths.data_root(data_root)
        self.local_server = (
            LocalServer(paths.sessions_dir(self.data_root),
                        on_failure=lambda why: self.listener.on_problem(as_sentence(why)))
            if builtin_server else None)
        self.streamer_options = dict(streamer_options or {})
        self._told_no_tracks = False  # "this server does not store two tracks", said once
        self._told_transcript_failed = False  # the server gave the transcript up: said once
        self.finish_timeout_s = finish_timeout_s
        manager_options: dict[str, Any] = {"capture_factory": capture_factory,
                                           "watcher": watcher}
        if lister is not None:
            manager_options["lister"] = lister
        self.manager = AudioManager(settings.capture, **manager_options)
        self.manager.add_event_listener(self._on_audio_event)
        self.phase = Phase.IDLE
        self.last_result: FinishResult | None = None
        # Per source, the mixer's drift correction at the end of the last recording and
        # the largest during it, ppm (now, peak): `meetcap record` prints them.
        self.last_corrections_ppm: dict[str, tuple[float, float]] = {}
        self.last_status: StreamStatus | None = None
        self.last_failure: str | None = None
        self.capture_ended = threading.Event()  # set when capture stopped by itself
        self._live: _Live | None = None
        self._preview: Subscription | None = None  # capture for the meters, before Start
        self._last_frames = 0
        self._phase_lock = threading.Lock()

    # -- read from any thread

    @property
    def session(self) -> SessionInfo | None:
        live = self._live
        return live.info if live is not None else None

    @property
    def frames_recorded(self) -> int:
        """Frames the running (or last) session kept."""
        live = self._live
        return live.frames if live is not None else self._last_frames

    def levels(self) -> dict[str, SourceLevels]:
        """Latest levels of "mic", "system" and "mix" (all STOPPED when not capturing)."""
        return self.manager.levels()

    def stream_status(self) -> StreamStatus | None:
        """The live session's delivery, else the last session's final status."""
        live = self._live
        if live is not None and live.streamer is not None:
            return live.streamer.status()
        return self.last_status

    def elapsed_s(self) -> float:
        live = self._live
        return time.monotonic() - live.info.started_monotonic if live is not None else 0.0

    # -- live controls (any thread)

    def set_gain_db(self, source: str, gain_db: float) -> None:
        """Gain of "mic" or "system" in dB, -inf (off) to +12; ConfigError otherwise."""
        self.manager.set_gain_db(source, gain_db)

    def set_muted(self, source: str, muted: bool) -> None:
        self.manager.set_muted(source, muted)

    def set_normalize(self, enabled: bool) -> None:
        self.manager.set_normalize(enabled)

    def set_vad(self, enabled: bool) -> None:
        """Speech detection on or off, at once during a session (a model that cannot
        load arrives as an audio event; frames keep flowing unmarked)."""
        self.manager.set_vad(enabled)

    def set_echo_cancel(self, mode: str) -> None:
        """The mic's echo cancellation: "auto", "on" or "off"; at once during a session."""
        self.manager.set_echo_cancel(mode)

    def set_noise_suppress(self, enabled: bool) -> None:
        self.manager.set_noise_suppress(enabled)

    def set_device(self, source: str, device_id: str | None) -> None:
        """Switch a source's device ("" or None: none); live during a session. May wait
        for a start in progress (it opens devices)."""
        self.manager.set_device(source, device_id if device_id else "")  # "": none, on purpose

    # -- before a session: the meters and the echo score only

    @property
    def previewing(self) -> bool:
        return self._preview is not None

    def start_preview(self) -> None:
        """Capture for the levels and the echo score while no session runs, so a person
        can check the set-up before the meeting. Its frames are dropped: nothing is
        recorded or sent until :meth:`start` (which ends the preview first, so the
        session's frame 0 is its own first sample). A no-op during a session; a device
        that cannot be opened leaves the preview off (its strip reads "not capturing")
        and is said again at Start."""
        if self.phase is not Phase.IDLE or self._preview is not None:
            return
        try:
            self._preview = self.manager.subscribe(_drop_frame, name="preview")
        except MeetcapError as exc:
            log.info("no preview of the levels: %s", exc)

    def stop_preview(self) -> None:
        preview, self._preview = self._preview, None
        if preview is not None:
            self.manager.unsubscribe(preview)

    # -- the session

    def start(self, *, max_frames: int | None = None) -> SessionInfo:
        """Start a session; returns once capture runs. ``max_frames``: end capture after
        that many frames (``on_capture_ended(None)``; then call :meth:`stop`).

        Raises :class:`~meetcap.errors.MeetcapError` (a device that cannot be opened, a
        spool or file that cannot be created, the built-in server that cannot start):
        then nothing was started. :class:`UsageError` if a session is already running.
        """
        with self._phase_lock:
            if self.phase is not Phase.IDLE:
                raise UsageError(f"a session is already {self.phase.value}")
            self.phase = Phase.STARTING
        streamer: Streamer | None = None
        writer: FrameFileWriter | None = None
        try:
            streamer, url, builtin = self._open_streamer()
            copy_path = self.settings.local_copy_path(time.time())
            writer = (
                FrameFileWriter(copy_path, channels=2 if self.settings.capture.tracks else 1)
                if copy_path is not None else None
            )
            if streamer is None and writer is None:
                raise ConfigError("say where the audio goes: a server, a file, or both")
            storage_dir = self.local_server.data_dir if builtin and self.local_server else None
            info = SessionInfo(url=url, builtin=builtin, storage_dir=storage_dir,
                               local_copy=writer.path if writer is not None else None,
                               started_monotonic=time.monotonic())
            live = _Live(info, streamer, writer, max_frames)
            self.stop_preview()
            self.capture_ended.clear()
            self.last_failure = None
            self._live = live
            live.subscription = self.manager.subscribe(self._on_frame, name="session")
        except BaseException:
            self._live = None
            if streamer is not None:
                streamer.close()
            if writer is not None:
                writer.close()
                writer.path.unlink(missing_ok=True)
            self.phase = Phase.IDLE
            raise
        self.phase = Phase.RECORDING
        return live.info

    def stop(self, timeout_s: float | None = None) -> FinishResult:
        """End the session: capture stops, the local copy is closed, the streamer
        delivers the rest and waits for the server (at most ``timeout_s``; what is not
        confirmed stays in the spool for the next run). Returns how it went."""
        with self._phase_lock:
            live = self._live
            if live is None or self.phase is not Phase.RECORDING:
                raise UsageError(f"no session to stop (the recorder is {self.phase.value})")
            self.phase = Phase.STOPPING
        self.last_corrections_ppm = {
            name: (lv.correction_ppm, lv.correction_peak_ppm)
            for name, lv in self.manager.levels().items() if name in CAPTURE_SOURCES}
        try:
            if live.subscription is not None:
                self.manager.unsubscribe(live.subscription)  # the last frames pass through
                live.subscription = None
            live.ended = True
            if live.writer is not None:
                live.writer.close()
            result = self._finish(live, timeout_s or self.finish_timeout_s)
        finally:
            self.last_failure = live.failure
            self._last_frames = live.frames
            self._live = None
            self.phase = Phase.IDLE
        self.last_result = result
        return result

    def close(self, timeout_s: float | None = None) -> None:
        """Stop a running session (see :meth:`stop`), then capture and the built-in
        server. Blocks; call at exit."""
        if self.phase is Phase.RECORDING:
            self.stop(timeout_s)
        self.stop_preview()
        self.manager.close()
        if self.local_server is not None:
            self.local_server.stop()

    # -- internals

    def _open_streamer(self) -> tuple[Streamer | None, str | None, bool]:
        """(streamer, its URL, built-in?) for a new session; (None, None, False) when
        the audio goes to a file only."""
        url = self.settings.server_url.strip()
        destination: str | None = None  # derived from the URL and the token
        if url:
            token = self.settings.token.strip()
        elif self.local_server is not None:
            try:
                url = self.local_server.start(transcribe=self.settings.transcribe,
                                              partials=self.settings.partials)
            except OSError as exc:
                raise FatalError(f"the built-in server cannot start: {exc}") from exc
            token, destination = self.local_server.token, BUILTIN_DESTINATION
        else:
            return None, None, False
        options = {"transcript": self.settings.transcribe,
                   "tracks": self.settings.capture.tracks, **self.streamer_options}
        self._told_no_tracks = False
        self._told_transcript_failed = False
        config = StreamerConfig(url=url, token=token, spool_dir=paths.spool_dir(self.data_root),
                                destination=destination, **options)
        streamer = Streamer(config, on_status=self._on_stream_status,
                            on_transcript=self._on_transcript)
        streamer.start()
        return streamer, config.url, destination == BUILTIN_DESTINATION

    def _on_frame(self, frame: Frame) -> None:
        """Every captured frame, in order, on the subscription's thread."""
        live = self._live
        if live is None or live.ended:
            return
        try:
            if live.streamer is not None:
                live.streamer.submit(frame)
            else:
                assert live.writer is not None
                live.writer(frame)  # no server: the file is the recording
        except Exception as exc:  # noqa: BLE001 - any failure ends capture, in words
            # Nothing after this frame may go anywhere, so what was kept stays gapless.
            if not isinstance(exc, MeetcapError):
                log.exception("keeping frame %d failed", frame.seq)
            self._end_capture(live, as_sentence(f"Recording stopped: {_describe(exc)}"))
            return
        live.frames += 1
        if live.streamer is not None and live.writer is not None and not live.copy_failed:
            try:
                live.writer(frame)
            except Exception as exc:  # noqa: BLE001 - the server still gets everything
                live.copy_failed = True
                self.listener.on_problem(as_sentence(
                    f"The local copy stopped: {_describe(exc)}; the recording still goes "
                    "to the server"))
        if live.max_frames is not None and live.frames >= live.max_frames:
            self._end_capture(live, None)

    def _end_capture(self, live: _Live, failure: str | None) -> None:
        live.ended = True
        live.failure = failure
        self.capture_ended.set()
        self.listener.on_capture_ended(failure)

    def _finish(self, live: _Live, timeout_s: float) -> FinishResult:
        if live.streamer is None:
            seconds = live.frames / FRAMES_PER_SECOND
            where = f" to {live.writer.path}" if live.writer is not None else ""
            return FinishResult(ok=live.failure is None, frames=live.frames,
                                duration_ms=int(seconds * 1000),
                                message=f"recorded {live.frames} frames ({seconds:.1f} s){where}")
        try:
            result = live.streamer.finish(timeout_s)
        except Exception as exc:  # noqa: BLE001 - shown to the user, never swallowed
            log.exception("finishing the session failed")
            result = FinishResult(ok=False, message=f"ending the session failed: {exc}")
        self.last_status = live.streamer.status()
        return result

    def _on_audio_event(self, event: AudioEvent) -> None:
        self.listener.on_audio_event(event)

    def _on_stream_status(self, status: StreamStatus) -> None:
        if status.tracks_stored is False and not self._told_no_tracks:
            self._told_no_tracks = True  # once a session, in words
            self.listener.on_notice(
                "this server does not store two tracks: it gets the mono mix only (nothing "
                "of it is lost); a local copy (--out) keeps both tracks"
            )
        if status.transcript_failed and not self._told_transcript_failed:
            self._told_transcript_failed = True  # no more of the transcript will come
            self.listener.on_problem(as_sentence(status.transcript_failed))
        self.listener.on_stream_status(status)

    def _on_transcript(self, segment: TranscriptSegment) -> None:
        self.listener.on_transcript(segment)


def _drop_frame(frame: Frame) -> None:
    """The preview's frame listener: nothing is recorded before Start."""


def _describe(exc: BaseException) -> str:
    """A failure in words: our own errors are sentences already; anything else is a bug,
    named as such so that nobody mistakes it for a full disk."""
    if isinstance(exc, MeetcapError):
        return str(exc)
    return f"an internal error ({type(exc).__name__}: {exc}); please report it"


__all__ = ["BUILTIN_DESTINATION", "Phase", "Recorder", "RecorderListener", "SessionInfo"]
