"""AudioManager: the one owner of capture, shared by every consumer (pub/sub).

The first ``subscribe`` starts capture, the last ``unsubscribe`` stops it, and a lock
makes each of those transitions atomic: a stop runs to completion (devices closed)
before any later start begins, so one consumer's stop can never release the devices
under another consumer that has just started (the seeds' "empty note" race).

Frames reach each subscriber on its own delivery thread through its own queue, so a
slow listener delays only itself, and never the PortAudio callbacks or the worker.
Events (health, device lost/restored, errors) reach event listeners on one more
thread, ``meetcap-audio-events``, so a slow event listener cannot stall capture either.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from meetcap.audio.base import AudioDevice, Capture
from meetcap.audio.capture import make_capture
from meetcap.audio.devices import list_devices
from meetcap.audio.events import SOURCE_VAD, AudioEvent, AudioEventKind
from meetcap.audio.pipeline import CaptureWorker, stopped_levels
from meetcap.audio.watcher import DeviceWatcher
from meetcap.constants import CAPTURE_SOURCES, FRAMES_PER_SECOND
from meetcap.dsp.chain import ECHO_AUTO, ECHO_MODES, MixChain
from meetcap.dsp.gain import check_gain_db
from meetcap.dsp.health import DEFAULT_SILENT_AFTER_S
from meetcap.errors import ConfigError, ModelError
from meetcap.frames import Frame
from meetcap.levels import SourceLevels

__all__ = ["AudioEvent", "AudioManager", "CaptureSettings", "Subscription"]

log = logging.getLogger(__name__)

# Ten minutes of frames per subscriber (19 MB of PCM at most): a listener that falls this
# far behind is broken, and is told so (an "error" event) rather than losing audio in
# silence.
SUBSCRIBER_QUEUE_FRAMES = 10 * 60 * FRAMES_PER_SECOND
# Events are rare (a few per minute); a listener 1,000 behind is stuck: newer events are
# dropped, with a log line, rather than blocking capture.
EVENT_QUEUE_SIZE = 1000
# While a subscriber's queue overflows, repeat the error this often (with the count).
OVERFLOW_REPORT_EVERY_S = 10.0
_END = object()
T = TypeVar("T")


@dataclass
class CaptureSettings:
    """What to capture and how. The manager keeps this object and updates it when a
    setter is called, so it always says what the running capture does. ``vad``: mark
    speech in every frame (Silero VAD), for every subscriber. ``echo_cancel``: the mic
    lane's echo cancellation, "auto" (on while the echo score says the speakers reach the
    mic), "on" or "off"; ``noise_suppress``: WebRTC noise suppression of the mic lane."""

    mic_device_id: str | None = None
    system_device_id: str | None = None
    gain_db: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in CAPTURE_SOURCES})
    muted: dict[str, bool] = field(default_factory=lambda: {s: False for s in CAPTURE_SOURCES})
    normalize: bool = True
    vad: bool = False
    vad_model_path: str | None = None
    # With the VAD: one per lane, and who spoke (you / others / both) on every frame.
    who_spoke: bool = True
    # Tracks mode: every frame also carries the mic and system lanes as two channels.
    tracks: bool = False
    silent_after_s: float = DEFAULT_SILENT_AFTER_S
    echo_cancel: str = ECHO_AUTO
    noise_suppress: bool = False

    def device_ids(self) -> dict[str, str | None]:
        return {"mic": self.mic_device_id, "system": self.system_device_id}


class _Dispatcher(Generic[T]):
    """One thread that runs callbacks in order from a bounded queue of ``T``."""

    def __init__(self, name: str, maxsize: int) -> None:
        self._name = name
        self._queue: queue.Queue[T | object] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def put(self, item: T) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            return False

    def close(self) -> None:
        """Handle what is queued, then end the thread (waits, unless called from it)."""
        self._queue.put(_END)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _END:
            self.handle(item)  # type: ignore[arg-type]  # anything but _END is a T

    def handle(self, item: T) -> None:
        raise NotImplementedError


class Subscription(_Dispatcher[Frame]):
    """A consumer's handle: its listener runs on this subscription's own thread, in seq
    order. ``frames_delivered``/``frames_dropped`` count what it got and what could not
    be queued (always 0 unless it fell 10 minutes behind)."""

    def __init__(
        self, listener: Callable[[Frame], None], name: str,
        on_event: Callable[[AudioEvent], None],
    ) -> None:
        self.listener = listener
        self.name = name or getattr(listener, "__name__", "subscriber")
        self.frames_delivered = 0
        self.frames_dropped = 0
        self._on_event = on_event
        self._next_overflow_report = 0.0
        super().__init__(f"meetcap-sub-{self.name}", SUBSCRIBER_QUEUE_FRAMES)

    def deliver(self, frame: Frame) -> None:
        """Queue a frame (worker thread); an overflow is reported, never silent."""
        if self.put(frame):
            return
        self.frames_dropped += 1
        now = time.monotonic()
        if now >= self._next_overflow_report:
            self._next_overflow_report = now + OVERFLOW_REPORT_EVERY_S
            self._on_event(AudioEvent(
                AudioEventKind.ERROR, None,
                f"{self.name} fell more than {SUBSCRIBER_QUEUE_FRAMES // FRAMES_PER_SECOND} s "
                f"behind: {self.frames_dropped} frames (from {frame.seq}) could not be handed "
                "to it",
            ))

    def handle(self, item: Frame) -> None:
        try:
            self.listener(item)
            self.frames_delivered += 1
        except Exception as exc:  # noqa: BLE001 - one consumer's bug is reported, not fatal
            log.exception("frame listener %s failed", self.name)
            self._on_event(AudioEvent(AudioEventKind.ERROR, None, f"{self.name} failed: {exc}",
                                      exception=exc))


class _EventDispatcher(_Dispatcher[AudioEvent]):
    def __init__(self, listeners: list[Callable[[AudioEvent], None]]) -> None:
        self._listeners = listeners
        super().__init__("meetcap-audio-events", EVENT_QUEUE_SIZE)

    def handle(self, item: AudioEvent) -> None:
        for callback in list(self._listeners):
            try:
                callback(item)
            except Exception:  # noqa: BLE001 - one listener's bug must not silence the others
                log.exception("audio event listener failed")


class AudioManager:
    """Capture the configured sources while anyone is subscribed.

    Thread-safe: every method may be called from any thread, a frame or event listener
    included (a listener may unsubscribe its own subscription). ``settings`` is kept and
    updated by the setters. Call :meth:`close` when done with the manager.

    ``capture_factory`` and ``lister`` (the device listing) are for tests: a synthetic
    capture on a fixed device list needs no sound server. ``watcher``: a started
    :class:`DeviceWatcher` to share (the app's), else each session runs its own.
    """

    def __init__(
        self,
        settings: CaptureSettings,
        *,
        capture_factory: Callable[[AudioDevice], Capture] = make_capture,
        watcher: DeviceWatcher | None = None,
        lister: Callable[[], list[AudioDevice]] = list_devices,
    ) -> None:
        for source in CAPTURE_SOURCES:  # a bad gain is the caller's error, not the worker's
            check_gain_db(settings.gain_db.get(source, 0.0))
        self._settings = settings
        self._capture_factory = capture_factory
        self._lister = lister
        self._watcher = watcher  # a started DeviceWatcher to share, or None (one per session)
        self._lock = threading.RLock()  # guards start/stop transitions and the subscriber list
        # Replaced whole, never mutated: the worker reads it without the lock.
        self._subscribers: tuple[Subscription, ...] = ()
        self._worker: CaptureWorker | None = None
        self._event_listeners: list[Callable[[AudioEvent], None]] = []
        self._events: _EventDispatcher | None = None
        # Not self._lock: the worker emits while the manager may hold that lock waiting
        # for the worker to stop.
        self._events_lock = threading.Lock()

    # -- pub/sub

    def subscribe(self, listener: Callable[[Frame], None], *, name: str = "") -> Subscription:
        """Start receiving frames (``listener(frame)`` on the subscription's own thread);
        the first subscriber starts capture. Whether frames carry speech marks is the
        manager's setting (:meth:`set_vad`), the same for every subscriber.

        Raises DeviceError (and subscribes nothing) when a configured device cannot be
        opened. A subscriber that joins a running session gets frames from then on.
        """
        with self._lock:
            subscription = Subscription(listener, name, self._emit)
            if self._worker is None:
                try:
                    self._start()
                except BaseException:
                    subscription.close()
                    raise
            self._subscribers = (*self._subscribers, subscription)
            return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop receiving frames; the last subscriber stops capture (and gets the last
        partial frame first). Returns once its listener has seen every frame."""
        with self._lock:
            if subscription not in self._subscribers:
                return
            if len(self._subscribers) == 1:
                self._stop()  # flushes the final frames to every subscriber
            self._subscribers = tuple(s for s in self._subscribers if s is not subscription)
        subscription.close()

    @property
    def running(self) -> bool:
        """True while capture runs (someone is subscribed)."""
        return self._worker is not None

    @property
    def session_start_time(self) -> float | None:
        """Wall-clock time of frame 0 of the running session (None until the first sample)."""
        worker = self._worker
        return worker.start_time if worker is not None else None

    # -- live controls (any thread)

    def levels(self) -> dict[str, SourceLevels]:
        """Latest levels of "mic", "system" and "mix": a cheap copy, safe from any thread
        (all STOPPED while not capturing)."""
        worker = self._worker
        return dict(worker.levels()) if worker is not None else stopped_levels()

    def set_gain_db(self, source: str, gain_db: float) -> None:
        """Gain of "mic" or "system" in dB (-inf .. +12); ConfigError otherwise."""
        self._check_source(source)
        check_gain_db(gain_db)
        self._settings.gain_db[source] = gain_db
        self._on_chain(lambda chain: chain.set_gain_db(source, gain_db))

    def set_muted(self, source: str, muted: bool) -> None:
        """Mute "mic" or "system" in the mix (its health is still watched)."""
        self._check_source(source)
        self._settings.muted[source] = muted
        self._on_chain(lambda chain: chain.set_muted(source, muted))

    def set_normalize(self, enabled: bool) -> None:
        """Slow AGC on or off (the limiter always stays on)."""
        self._settings.normalize = enabled
        self._on_chain(lambda chain: chain.set_normalize(enabled))

    def set_vad(self, enabled: bool) -> None:
        """Speech detection (Silero VAD) on or off, at once in a running session. A model
        that cannot be loaded arrives as an "error" event with source ``SOURCE_VAD``;
        frames keep flowing, marked speech=False."""
        self._settings.vad = enabled
        self._on_chain(lambda chain: chain.set_vad(enabled))

    def set_echo_cancel(self, mode: str) -> None:
        """Echo cancellation of the mic lane: "auto", "on" or "off" (ConfigError
        otherwise), at once in a running session."""
        if mode not in ECHO_MODES:
            raise ConfigError(
                f"echo cancellation is one of {', '.join(ECHO_MODES)}, not {mode!r}")
        self._settings.echo_cancel = mode
        self._on_chain(lambda chain: chain.set_echo_cancel(mode))

    def set_noise_suppress(self, enabled: bool) -> None:
        """WebRTC noise suppression of the mic lane on or off, at once."""
        self._settings.noise_suppress = enabled
        self._on_chain(lambda chain: chain.set_noise_suppress(enabled))

    def set_device(self, source: str, device_id: str | None) -> None:
        """Switch "mic" or "system" to another device (or none) without stopping the
        session. A failure to open arrives as an "error" event; the device is then
        opened as soon as it is listed. ``device_id`` None and ``""`` both capture
        nothing, and are kept in the settings as given: the app saves ``""`` as "none,
        on purpose" and None as "not chosen yet" (the default device is picked then)."""
        self._check_source(source)
        with self._lock:
            setattr(self._settings, f"{source}_device_id", device_id)
            if self._worker is not None:
                self._worker.set_device(source, device_id or None)

    def add_event_listener(self, callback: Callable[[AudioEvent], None]) -> None:
        """Get every :class:`AudioEvent`. ``callback`` runs on the ``meetcap-audio-events``
        thread, one event at a time, in order: keep it short and hand over to your own
        thread (the GUI emits a Qt signal)."""
        self._event_listeners.append(callback)

    def close(self) -> None:
        """Unsubscribe everyone (capture stops) and end the event thread."""
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)
        with self._events_lock:
            events, self._events = self._events, None
        if events is not None:
            events.close()

    # -- internals

    @staticmethod
    def _check_source(source: str) -> None:
        if source not in CAPTURE_SOURCES:
            raise ConfigError(f"unknown audio source {source!r}: use one of {CAPTURE_SOURCES}")

    def _make_chain(self, start_time: float) -> MixChain:
        """The chain, built on the worker thread from the settings as they are now."""
        settings = self._settings
        chain = MixChain(
            start_time=start_time,
            normalize=settings.normalize,
            vad_model_path=settings.vad_model_path,
            silent_after_s=settings.silent_after_s,
            echo_cancel=settings.echo_cancel if settings.echo_cancel in ECHO_MODES
            else ECHO_AUTO,
            noise_suppress=settings.noise_suppress,
            who_spoke=settings.who_spoke,
            tracks=settings.tracks,
        )
        for source in CAPTURE_SOURCES:
            chain.set_gain_db(source, settings.gain_db.get(source, 0.0))
            chain.set_muted(source, settings.muted.get(source, False))
        if settings.vad:
            try:
                chain.set_vad(True)
            except ModelError as exc:  # frames flow without speech marks; the user is told
                self._emit(AudioEvent(AudioEventKind.ERROR, SOURCE_VAD, str(exc), exception=exc))
        return chain

    def _start(self) -> None:
        worker = CaptureWorker(
            self._make_chain, self._settings.device_ids(), self._publish, self._emit,
            self._capture_factory, self._watcher, lister=self._lister,
        )
        try:
            worker.open_all()
        except BaseException:
            worker.close_all()
            raise
        self._worker = worker
        worker.start()

    def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()

    def _on_chain(self, fn: Callable[[MixChain], None]) -> None:
        worker = self._worker
        if worker is not None:
            worker.on_chain(fn)

    def _publish(self, frames: list[Frame]) -> None:
        subscribers = self._subscribers
        for frame in frames:
            for subscription in subscribers:
                subscription.deliver(frame)

    def _emit(self, event: AudioEvent) -> None:
        events = self._events
        if events is None:
            with self._events_lock:
                if self._events is None:
                    self._events = _EventDispatcher(self._event_listeners)
                events = self._events
        if not events.put(event):
            log.warning("audio event dropped (event listeners are stuck): %s", event.message)
