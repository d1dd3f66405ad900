"""The pipeline worker: the one thread that turns captured blocks into frames.

Every ``TICK_S`` it drains each source's ring buffer into the :class:`MixChain`, renders
as much of the 16 kHz timeline as the monotonic clock says is due (so the timeline
never stalls, whatever the devices do), and hands frames and levels to the manager. It
also watches each source: a lost device is closed and marked, and reopened when it
comes back, while the other source and the timeline carry on.

The timeline starts with the first captured sample (a PulseAudio stream can take up to
~2 s to deliver its first block, see capture.py), so frame 0 holds the first audio and
``meetcap record --seconds 3`` means three seconds of captured audio. If no device delivers within
``STARTUP_GRACE_S`` the timeline starts anyway (a silent WASAPI loopback delivers
nothing) and the mixer fills silence.

Other threads talk to it only through :meth:`CaptureWorker.call`, which queues a
function to run on the worker between ticks; nothing in the chain is shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from meetcap.audio.base import STARTUP_GRACE_S, AudioDevice, Capture
from meetcap.audio.capture import make_capture
from meetcap.audio.devices import find_device, list_devices
from meetcap.audio.events import SOURCE_VAD, AudioEvent, AudioEventKind
from meetcap.audio.lane_alignment import LaneAligner
from meetcap.audio.lane_losses import LaneLossJudge
from meetcap.audio.watcher import DeviceWatcher
from meetcap.constants import CAPTURE_SOURCES, SAMPLE_RATE_HZ
from meetcap.dsp.chain import MixChain
from meetcap.errors import DeviceError, MeetcapError, ModelError
from meetcap.frames import Frame
from meetcap.levels import Health, SourceLevels

__all__ = ["CaptureWorker", "stopped_levels"]

# The chain works in whole 100 ms frames and the levels change once per frame, so a
# faster tick buys nothing; 20 ms ticks cost ~0.7 % of a core more (bench/app_cpu.py).
# The mixer's 200 ms margin covers a 50 ms tick, the chain's 100 ms units and the
# 162 ms delivery gaps measured through PulseAudio (dsp/mixer.py).
TICK_S = 0.05
# A wanted device that is listed but failed to open is tried again this often.
REOPEN_EVERY_S = 2.0

def stopped_levels() -> dict[str, SourceLevels]:
    """Levels before capture starts: every source STOPPED."""
    return {name: SourceLevels(source=name) for name in (*CAPTURE_SOURCES, "mix")}


class CaptureWorker:
    """Owns the captures and the chain while a session runs. Driven by the manager:
    ``open_all`` (raises DeviceError), then ``start``; ``stop`` ends it.

    ``lister`` lists the devices (``open_all``, ``set_device`` and, without a shared
    ``watcher``, the worker's own watcher): tests pass a fixed list with their synthetic
    ``capture_factory``, and then need no sound server."""

    def __init__(
        self,
        make_chain: Callable[[float], MixChain],
        device_ids: dict[str, str | None],
        on_frames: Callable[[list[Frame]], None],
        on_event: Callable[[AudioEvent], None],
        capture_factory: Callable[[AudioDevice], Capture] = make_capture,
        watcher: DeviceWatcher | None = None,
        lister: Callable[[], list[AudioDevice]] = list_devices,
    ) -> None:
        self._make_chain = make_chain
        self._device_ids = dict(device_ids)
        self._on_frames = on_frames
        self._on_event = on_event
        self._capture_factory = capture_factory
        self._lister = lister
        self._captures: dict[str, Capture | None] = {s: None for s in CAPTURE_SOURCES}
        self._lost: set[str] = set()  # sources whose device is lost (reopened when back)
        self._chain: MixChain | None = None
        self._calls: list[Callable[[], None]] = []
        self._calls_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meetcap-pipeline", daemon=True)
        self._levels: dict[str, SourceLevels] = stopped_levels()
        self._last_health: dict[str, Health] = {}
        # The app's running watcher when given (one device listing, one pactl subscribe
        # for the pickers and the capture); otherwise our own for this session, on the
        # same lister (PulseAudio's change events only matter for the system's own list).
        self._watcher = watcher or DeviceWatcher(lister=lister,
                                                 os_events=lister is list_devices)
        self._own_watcher = watcher is None
        self._seen_generation = 0
        self._next_reopen = 0.0
        self._opened_at = 0.0
        self._t0 = 0.0  # time.monotonic() of timeline sample 0
        # Samples one lane's server lost, told from the other lane (lane_losses.py).
        self.loss_judge = LaneLossJudge()
        # The two lanes' starts (and again after a dry-out), aligned on their
        # deliveries (lane_alignment.py).
        self.lane_aligner = LaneAligner()
        self.start_time: float | None = None  # time.time() of timeline sample 0

    # -- control (the manager's thread)

    def open_all(self) -> None:
        """Open every configured source; DeviceError names the first that fails."""
        devices = self._lister()
        for source, device_id in self._device_ids.items():
            if device_id:
                self._open(source, find_device(device_id, devices))

    def close_all(self) -> None:
        """Close whatever ``open_all`` opened (when it failed, or ``start`` never ran)."""
        for source in CAPTURE_SOURCES:
            capture, self._captures[source] = self._captures[source], None
            if capture is not None:
                capture.close()

    def start(self) -> None:
        self._opened_at = time.monotonic()
        if self._own_watcher:
            self._watcher.start()
        self._thread.start()

    def stop(self) -> None:
        """Stop, flush the last partial frame out, close the devices. Blocks until done."""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def call(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the worker thread before its next tick."""
        with self._calls_lock:
            self._calls.append(fn)

    def on_chain(self, fn: Callable[[MixChain], None]) -> None:
        """Run ``fn(chain)`` on the worker thread, once the chain exists (a setting made
        before then is in the settings the chain is built from)."""
        self.call(lambda: fn(self._chain) if self._chain is not None else None)

    def levels(self) -> dict[str, SourceLevels]:
        return self._levels  # replaced whole each tick: readers never see a half update

    def set_device(self, source: str, device_id: str | None) -> None:
        def switch() -> None:
            self._close(source)
            self._lost.discard(source)
            self._device_ids[source] = device_id
            if device_id is None:
                return
            try:
                # A fresh listing (not the watcher's): the person may have just plugged it in.
                device = find_device(device_id, self._lister())
                self._open(source, device)
            except DeviceError as exc:
                self._lost.add(source)  # opened as soon as it shows up
                if self._chain is not None:
                    self._chain.mark_lost(source)
                self._emit(AudioEventKind.ERROR, source, str(exc), Health.LOST, exc)
                return
            self._emit(AudioEventKind.DEVICE_SWITCHED, source, f"capturing from {device.name}",
                       Health.OK)

        self.call(switch)

    # -- worker thread

    def _emit(self, kind: AudioEventKind, source: str | None, message: str,
              health: Health | None = None, exception: BaseException | None = None) -> None:
        self._on_event(AudioEvent(kind, source, message, health, exception))

    def _open(self, source: str, device: AudioDevice) -> None:
        capture = self._capture_factory(device)
        capture.open()
        self._captures[source] = capture
        if self._chain is not None:
            self._chain.add_source(source, device.rate_hz, device.channels)

    def _close(self, source: str) -> None:
        capture, self._captures[source] = self._captures.get(source), None
        if capture is None:
            return
        capture.close()  # first: the ring then holds everything the device delivered
        if self._chain is not None:
            self._chain.push(source, capture.read())
            self._chain.remove_source(source)

    def _run(self) -> None:
        try:
            while not self._stop.wait(TICK_S):
                self._tick()
            self._tick()
            if self._chain is not None:
                self._publish(self._chain.finish())
        except Exception as exc:  # noqa: BLE001 - reported, never swallowed
            self._emit(AudioEventKind.ERROR, None, f"audio capture stopped: {exc}", exception=exc)
        finally:
            if self._own_watcher:
                self._watcher.stop()
            self.close_all()
            self._levels = stopped_levels()

    def _tick(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn in calls:
            try:
                fn()
            except MeetcapError as exc:  # e.g. ModelError from set_vad: reported, capture goes on
                source = SOURCE_VAD if isinstance(exc, ModelError) else None
                self._emit(AudioEventKind.ERROR, source, str(exc), exception=exc)
        now = time.monotonic()
        if self._chain is None and not self._begin(now):
            self._check_devices(now)
            return
        assert self._chain is not None
        for source, capture in self._captures.items():
            if capture is None:
                continue
            self._chain.push(source, capture.read())
            self._chain.set_overruns(source, capture.overruns)
            if capture.is_lost(now):
                self._lose(source, f"{capture.device.name} stopped delivering audio")
                self._watcher.wake()  # gone from the list too? find out now
        self._judge_losses(now)
        self._check_devices(now)
        due = int((now - self._t0) * SAMPLE_RATE_HZ) - self._chain.samples_rendered
        if due > 0:
            try:
                self._publish(self._chain.render(due))
            except MeetcapError as exc:  # the VAD failed: frames keep flowing without it
                self._emit(AudioEventKind.ERROR, SOURCE_VAD, str(exc), exception=exc)
        self._levels = self._chain.levels()
        self._report_health()

    def _judge_losses(self, now: float) -> None:
        """Two lanes on one clock: a rise of one lane's count that the other lane shows
        was lost samples becomes silence in its ring (its capture writes it before the
        next block), so the lanes keep time with each other (lane_losses.py)."""
        detectors = {source: detector for source, capture in self._captures.items()
                     if capture is not None
                     and (detector := getattr(capture, "lost_samples", None)) is not None}
        if len(detectors) == 2:
            self.loss_judge.check(detectors, now)
            if self._chain is not None:
                self.lane_aligner.check(self._chain, detectors, self._t0, now)

    def _begin(self, now: float) -> bool:
        """Start the timeline at the first captured sample (or after the grace time)."""
        open_captures = [c for c in self._captures.values() if c is not None]
        backlog = max((c.pending_frames() / c.device.rate_hz for c in open_captures),
                      default=0.0)
        if open_captures and backlog == 0.0 and now - self._opened_at < STARTUP_GRACE_S:
            return False
        self._t0 = now - backlog
        self.start_time = time.time() - backlog
        self._chain = self._make_chain(self.start_time)
        for source, capture in self._captures.items():
            if capture is not None:
                self._chain.add_source(source, capture.device.rate_hz, capture.device.channels)
        for source in self._lost:
            self._chain.mark_lost(source)
        return True

    def _lose(self, source: str, why: str) -> None:
        """End one source: the timeline goes on with silence in its place."""
        self._close(source)
        self._lost.add(source)
        if self._chain is not None:
            self._chain.mark_lost(source)
        self._emit(
            AudioEventKind.DEVICE_LOST, source,
            f"{why} (unplugged?); the other source keeps recording, and this one resumes "
            "when the device returns", Health.LOST,
        )

    def _check_devices(self, now: float) -> None:
        """Mark sources whose device vanished as lost; reopen lost ones that came back."""
        generation = self._watcher.generation
        changed = generation != self._seen_generation
        if not changed and now < self._next_reopen:
            return
        self._seen_generation = generation
        self._next_reopen = now + REOPEN_EVERY_S
        if generation == 0:
            return  # no listing yet
        present = {d.id: d for d in self._watcher.devices}
        for source, capture in list(self._captures.items()):
            if capture is not None and capture.device.id not in present:
                self._lose(source, f"{capture.device.name} was removed")
        for source in CAPTURE_SOURCES:
            device_id = self._device_ids.get(source)
            if self._captures[source] is not None or not device_id or device_id not in present:
                continue
            try:
                self._open(source, present[device_id])
            except DeviceError:
                continue  # listed but not openable yet: tried again in REOPEN_EVERY_S
            if source in self._lost:
                self._lost.discard(source)
                self._emit(AudioEventKind.DEVICE_RESTORED, source,
                           f"{present[device_id].name} is back; capturing again", Health.OK)

    def _report_health(self) -> None:
        for name, levels in self._levels.items():
            if self._last_health.get(name) is not levels.health:
                self._last_health[name] = levels.health
                self._emit(AudioEventKind.HEALTH, name, levels.health.words, levels.health)

    def _publish(self, frames: list[Frame]) -> None:
        if frames:
            self._on_frames(frames)
