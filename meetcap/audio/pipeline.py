"""The pipeline worker: the one thread that turns captured blocks into frames.

Every ``TICK_S`` it drains each source's ring buffer into the :class:`MixChain`, renders
as much of the 16 kHz timeline as the monotonic clock says is due (so the timeline
never stalls, whatever the devices do), and hands frames and levels to the manager. It
also watches each source: a lost device is closed and marked, and reopened when it
comes back, while the other source and the timeline carry on.

Other threads talk to it only through :meth:`CaptureWorker.call`, which queues a
function to run on the worker between ticks; nothing in the chain is shared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from meetcap.audio.capture import SourceCapture
from meetcap.audio.devices import AudioDevice, find_device, list_devices
from meetcap.constants import CAPTURE_SOURCES, SAMPLE_RATE_HZ
from meetcap.dsp.chain import MixChain
from meetcap.errors import DeviceError, MeetcapError
from meetcap.frames import Frame
from meetcap.levels import Health, SourceLevels

TICK_S = 0.02
# How often the worker asks the OS which devices exist: to notice one that vanished
# (PulseAudio moves the stream of a removed source to the default source, so the stream
# itself keeps delivering, just from the wrong device) and to reopen one that came back.
DEVICE_CHECK_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class AudioEvent:
    """Something a person should hear about: ``kind`` is "health", "device_lost",
    "device_restored" or "error"; ``source`` is "mic", "system", "mix" or None."""

    kind: str
    source: str | None
    message: str
    health: Health | None = None


class CaptureWorker:
    """Owns the captures and the chain while a session runs. Start/stop via the manager."""

    def __init__(
        self,
        chain: MixChain,
        device_ids: dict[str, str | None],
        on_frames: Callable[[list[Frame]], None],
        on_event: Callable[[AudioEvent], None],
        open_source: Callable[[AudioDevice], SourceCapture] = SourceCapture,
    ) -> None:
        self._chain = chain
        self._device_ids = dict(device_ids)
        self._on_frames = on_frames
        self._on_event = on_event
        self._open_source = open_source
        self._captures: dict[str, SourceCapture | None] = {s: None for s in CAPTURE_SOURCES}
        self._calls: list[Callable[[], None]] = []
        self._calls_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meetcap-pipeline", daemon=True)
        self._levels: dict[str, SourceLevels] = chain.levels()
        self._last_health: dict[str, Health] = {}
        self._next_device_check = 0.0
        self._t0 = 0.0

    # -- control (any thread)

    def open_all(self) -> None:
        """Open every configured source; DeviceError names the first that fails."""
        devices = list_devices()
        for source, device_id in self._device_ids.items():
            if device_id:
                self._open(source, find_device(device_id, devices))

    def stop_unstarted(self) -> None:
        """Close whatever ``open_all`` opened before it failed."""
        for source in list(self._captures):
            capture = self._captures[source]
            if capture is not None:
                capture.close()
                self._captures[source] = None

    def start(self) -> None:
        self._t0 = time.monotonic()
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

    def levels(self) -> dict[str, SourceLevels]:
        return self._levels  # replaced whole each tick: readers never see a half update

    def set_device(self, source: str, device_id: str | None) -> None:
        def switch() -> None:
            self._close(source)
            self._device_ids[source] = device_id
            self._next_device_check = 0.0  # look for it at once

        self.call(switch)

    # -- worker thread

    def _open(self, source: str, device: AudioDevice) -> None:
        capture = self._open_source(device)
        capture.open()
        self._captures[source] = capture
        self._chain.add_source(source, device.rate_hz, device.channels)

    def _close(self, source: str) -> None:
        capture = self._captures.get(source)
        if capture is not None:
            self._chain.push(source, capture.read())
            capture.close()
            self._captures[source] = None
            self._chain.remove_source(source)

    def _run(self) -> None:
        try:
            while not self._stop.wait(TICK_S):
                self._tick()
            self._tick()
            self._publish(self._chain.finish())
        except Exception as exc:  # noqa: BLE001 - reported, never swallowed
            self._on_event(AudioEvent("error", None, f"audio pipeline stopped: {exc}"))
        finally:
            for source in list(self._captures):
                capture = self._captures[source]
                if capture is not None:
                    capture.close()

    def _tick(self) -> None:
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn in calls:
            try:
                fn()
            except MeetcapError as exc:
                self._on_event(AudioEvent("error", None, str(exc)))
        now = time.monotonic()
        for source, capture in self._captures.items():
            if capture is None:
                continue
            self._chain.push(source, capture.read())
            self._chain.set_overruns(source, capture.overruns)
            if capture.is_lost(now):
                self._lose(source, f"{capture.device.name} stopped delivering audio")
        if now >= self._next_device_check:
            self._next_device_check = now + DEVICE_CHECK_EVERY_S
            self._check_devices()
        due = int((now - self._t0) * SAMPLE_RATE_HZ) - self._chain.samples_rendered
        if due > 0:
            try:
                self._publish(self._chain.render(due))
            except MeetcapError as exc:  # the VAD failed: frames keep flowing without it
                self._on_event(AudioEvent("error", SOURCE_VAD, str(exc)))
        self._levels = self._chain.levels()
        self._report_health()

    def _lose(self, source: str, why: str) -> None:
        """End one source: the timeline goes on with silence in its place."""
        self._close(source)
        self._chain.mark_lost(source)
        self._on_event(
            AudioEvent("device_lost", source, f"{why} (unplugged?); the other source keeps "
                       "recording, and this one resumes when the device returns", Health.LOST)
        )

    def _check_devices(self) -> None:
        """Mark sources whose device vanished as lost; reopen lost ones that came back."""
        try:
            devices = list_devices()
        except DeviceError:
            return
        present = {d.id for d in devices}
        for source, capture in list(self._captures.items()):
            if capture is not None and capture.device.id not in present:
                self._lose(source, f"{capture.device.name} was removed")
        wanted = [s for s, c in self._captures.items() if c is None and self._device_ids.get(s)]
        for source in wanted:
            try:
                self._open(source, find_device(self._device_ids[source], devices))
            except DeviceError:
                continue
            self._on_event(AudioEvent("device_restored", source, "capturing again", Health.OK))

    def _report_health(self) -> None:
        for name, levels in self._levels.items():
            if self._last_health.get(name) is not levels.health:
                self._last_health[name] = levels.health
                self._on_event(AudioEvent("health", name, levels.health.value, levels.health))

    def _publish(self, frames: list[Frame]) -> None:
        if frames:
            self._on_frames(frames)


SOURCE_VAD = "vad"
