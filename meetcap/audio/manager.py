"""AudioManager: the one owner of capture, shared by every consumer (pub/sub).

The first ``subscribe`` starts capture, the last ``unsubscribe`` stops it, and a lock
makes each of those transitions atomic: a stop runs to completion (devices closed)
before any later start begins, so one consumer's stop can never release the devices
under another consumer that has just started (the seeds' "empty note" race).

Frames reach each subscriber on its own delivery thread through its own queue, so a
slow listener delays only itself, and never the PortAudio callbacks or the worker.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from meetcap.audio.capture import SourceCapture
from meetcap.audio.devices import AudioDevice
from meetcap.audio.pipeline import AudioEvent, CaptureWorker
from meetcap.constants import CAPTURE_SOURCES, FRAMES_PER_SECOND
from meetcap.dsp.chain import MixChain
from meetcap.frames import Frame
from meetcap.levels import SourceLevels

log = logging.getLogger(__name__)

# Ten minutes of frames per subscriber: a listener that falls this far behind is broken,
# and is told so (an "error" event) rather than having audio dropped without a word.
SUBSCRIBER_QUEUE_FRAMES = 10 * 60 * FRAMES_PER_SECOND
_END = object()


@dataclass
class CaptureSettings:
    """What to capture and how; the manager copies it at construction."""

    mic_device_id: str | None = None
    system_device_id: str | None = None
    gain_db: dict[str, float] = field(default_factory=lambda: {s: 0.0 for s in CAPTURE_SOURCES})
    muted: dict[str, bool] = field(default_factory=lambda: {s: False for s in CAPTURE_SOURCES})
    normalize: bool = True
    vad_model_path: str | None = None
    silent_after_s: float = 10.0

    def device_ids(self) -> dict[str, str | None]:
        return {"mic": self.mic_device_id, "system": self.system_device_id}


class Subscription:
    """A consumer's handle: its listener runs on this subscription's own thread."""

    def __init__(
        self, listener: Callable[[Frame], None], vad: bool, name: str,
        on_event: Callable[[AudioEvent], None],
    ) -> None:
        self.listener = listener
        self.vad = vad
        self.name = name or getattr(listener, "__name__", "subscriber")
        self.frames_delivered = 0
        self._on_event = on_event
        self._queue: queue.Queue = queue.Queue(maxsize=SUBSCRIBER_QUEUE_FRAMES)
        self._thread = threading.Thread(target=self._deliver, name=f"meetcap-sub-{self.name}", daemon=True)
        self._thread.start()

    def put(self, frame: Frame) -> None:
        try:
            self._queue.put_nowait(frame)
        except queue.Full:
            self._on_event(
                AudioEvent("error", None, f"{self.name} fell more than "
                           f"{SUBSCRIBER_QUEUE_FRAMES // FRAMES_PER_SECOND} s behind; frame "
                           f"{frame.seq} could not be handed to it")
            )

    def close(self) -> None:
        """Deliver what is queued, then end the delivery thread (waits for it)."""
        self._queue.put(_END)
        if threading.current_thread() is not self._thread:
            self._thread.join()

    def _deliver(self) -> None:
        while (frame := self._queue.get()) is not _END:
            try:
                self.listener(frame)
                self.frames_delivered += 1
            except Exception as exc:  # noqa: BLE001 - one consumer's bug is reported, not fatal
                log.exception("frame listener %s failed", self.name)
                self._on_event(AudioEvent("error", None, f"{self.name} failed: {exc}"))


class AudioManager:
    """Capture the configured sources while anyone is subscribed."""

    def __init__(
        self,
        settings: CaptureSettings,
        *,
        open_source: Callable[[AudioDevice], SourceCapture] = SourceCapture,
    ) -> None:
        self._settings = settings
        self._open_source = open_source
        self._lock = threading.RLock()  # guards start/stop transitions and the subscriber list
        self._subscribers: tuple[Subscription, ...] = ()  # replaced whole: the worker reads it lock-free
        self._worker: CaptureWorker | None = None
        self._chain: MixChain | None = None
        self._event_listeners: list[Callable[[AudioEvent], None]] = []
        self.session_start_time: float | None = None

    # -- pub/sub

    def subscribe(
        self, listener: Callable[[Frame], None], *, vad: bool = False, name: str = ""
    ) -> Subscription:
        """Start receiving frames; the first subscriber starts capture.

        Raises DeviceError (and subscribes nothing) when a configured device cannot be
        opened.
        """
        with self._lock:
            subscription = Subscription(listener, vad, name, self._emit)
            if self._worker is None:
                try:
                    self._start()
                except BaseException:
                    subscription.close()
                    raise
            self._subscribers = (*self._subscribers, subscription)
            self._apply_vad()
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
            self._apply_vad()
        subscription.close()

    @property
    def running(self) -> bool:
        return self._worker is not None

    # -- live controls (any thread)

    def levels(self) -> dict[str, SourceLevels]:
        """Latest levels of "mic", "system" and "mix": cheap, safe from any thread."""
        worker = self._worker
        if worker is not None:
            return worker.levels()
        return {name: SourceLevels(source=name) for name in (*CAPTURE_SOURCES, "mix")}

    def set_gain_db(self, source: str, gain_db: float) -> None:
        self._settings.gain_db[source] = gain_db
        self._on_chain(lambda chain: chain.set_gain_db(source, gain_db))

    def set_muted(self, source: str, muted: bool) -> None:
        self._settings.muted[source] = muted
        self._on_chain(lambda chain: chain.set_muted(source, muted))

    def set_normalize(self, enabled: bool) -> None:
        self._settings.normalize = enabled
        self._on_chain(lambda chain: chain.set_normalize(enabled))

    def set_device(self, source: str, device_id: str | None) -> None:
        """Switch a source to another device (or none) without stopping the session."""
        setattr(self._settings, f"{source}_device_id", device_id)
        with self._lock:
            if self._worker is not None:
                self._worker.set_device(source, device_id)

    def add_event_listener(self, callback: Callable[[AudioEvent], None]) -> None:
        """``callback`` runs on the pipeline worker thread (or a delivery thread): keep it
        short and hand over to your own thread (the GUI uses a Qt signal)."""
        self._event_listeners.append(callback)

    def close(self) -> None:
        for subscription in list(self._subscribers):
            self.unsubscribe(subscription)

    # -- internals

    def _start(self) -> None:
        self.session_start_time = time.time()
        chain = MixChain(
            start_time=self.session_start_time,
            normalize=self._settings.normalize,
            vad_model_path=self._settings.vad_model_path,
            silent_after_s=self._settings.silent_after_s,
        )
        for source in CAPTURE_SOURCES:
            chain.set_gain_db(source, self._settings.gain_db.get(source, 0.0))
            chain.set_muted(source, self._settings.muted.get(source, False))
        worker = CaptureWorker(
            chain, self._settings.device_ids(), self._publish, self._emit, self._open_source
        )
        try:
            worker.open_all()
        except BaseException:
            worker.stop_unstarted()
            raise
        self._chain, self._worker = chain, worker
        worker.start()

    def _stop(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        self._chain = None

    def _apply_vad(self) -> None:
        wanted = any(s.vad for s in self._subscribers)
        self._on_chain(lambda chain: chain.set_vad(wanted) if chain.vad_enabled != wanted else None)

    def _on_chain(self, fn: Callable[[MixChain], None]) -> None:
        worker, chain = self._worker, self._chain
        if worker is not None and chain is not None:
            worker.call(lambda: fn(chain))

    def _publish(self, frames: list[Frame]) -> None:
        subscribers = self._subscribers
        for frame in frames:
            for subscription in subscribers:
                subscription.put(frame)

    def _emit(self, event: AudioEvent) -> None:
        for callback in list(self._event_listeners):
            try:
                callback(event)
            except Exception:  # noqa: BLE001
                log.exception("audio event listener failed")
