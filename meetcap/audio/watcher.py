"""Hot-plug: notice capture devices coming and going.

:class:`DeviceWatcher` lists the devices every ``interval_s`` on its own thread (by
default 10 s while OS change events arrive, 2 s without them), and at once when the OS
announces a change (Linux: ``pactl subscribe``; elsewhere polling
only), and reports what was added and removed. The GUI gives it a callback that
forwards to the Qt thread; the capture worker reads :attr:`DeviceWatcher.devices` and
:attr:`DeviceWatcher.generation` each tick, so no listing ever runs on the audio path.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meetcap.audio.devices import AudioDevice, list_devices
from meetcap.errors import DeviceError

if TYPE_CHECKING or sys.platform.startswith("linux"):
    # OS change events exist on Linux only (pactl subscribe); used behind a Linux check.
    from meetcap.audio.linux_pulse import PulseEvents

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 2.0
# While PulseAudio's change events are followed, the listing is only a safety net: each
# one runs pactl (a process start and ~10 ms of CPU), and at 1-2 s that was about 1 % of
# a core for the app (bench/app_cpu.py).
EVENT_BACKED_INTERVAL_S = 10.0
# Removing a sink makes PulseAudio announce the sink, its monitor and a module within a
# few ms: one listing after a short pause sees all of it.
DEBOUNCE_S = 0.05


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """What changed since the previous listing. ``devices`` is the whole list now.

    A change with nothing added or removed means an existing device changed (for
    example the system's default moved to another device).
    """

    added: tuple[AudioDevice, ...]
    removed: tuple[AudioDevice, ...]
    devices: tuple[AudioDevice, ...]


class DeviceWatcher:
    """Lists devices and reports changes; see the module docstring.

    Either call :meth:`poll` yourself (off the GUI thread: a listing runs ``pactl``), or
    :meth:`start` the watcher thread and get ``on_change`` calls on it (keep them short;
    hand over to your own thread). Always :meth:`stop` a started watcher. The first
    listing reports every device as added.
    """

    def __init__(
        self,
        on_change: Callable[[DeviceChange], None] | None = None,
        *,
        interval_s: float | None = None,
        lister: Callable[[], list[AudioDevice]] = list_devices,
        os_events: bool = True,
    ) -> None:
        self._on_change = on_change
        self._interval_s = interval_s
        self._lister = lister
        self._os_events = os_events
        self._devices: tuple[AudioDevice, ...] = ()
        self._generation = 0
        self._error: DeviceError | None = None
        self._poll_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._events: PulseEvents | None = None

    @property
    def devices(self) -> tuple[AudioDevice, ...]:
        """The latest listing (replaced whole: safe to read from any thread)."""
        return self._devices

    @property
    def generation(self) -> int:
        """Goes up by one with every change: compare it to notice one cheaply."""
        return self._generation

    @property
    def error(self) -> DeviceError | None:
        """Why the latest listing failed, or None (the last good list is kept)."""
        return self._error

    def poll(self) -> DeviceChange | None:
        """List the devices now; the change since the last listing, or None."""
        with self._poll_lock:
            try:
                devices = tuple(self._lister())
            except DeviceError as exc:
                if self._error is None or str(exc) != str(self._error):
                    log.warning("listing audio devices failed: %s", exc)
                self._error = exc
                return None
            self._error = None
            if devices == self._devices and self._generation > 0:
                return None
            old_ids = {d.id for d in self._devices}
            new_ids = {d.id for d in devices}
            change = DeviceChange(
                added=tuple(d for d in devices if d.id not in old_ids),
                removed=tuple(d for d in self._devices if d.id not in new_ids),
                devices=devices,
            )
            self._devices = devices
            self._generation += 1
        if self._on_change is not None:
            try:
                self._on_change(change)
            except Exception:  # noqa: BLE001 - a listener's bug must not end the watching
                log.exception("device change listener failed")
        return change

    def wake(self) -> None:
        """Ask for a listing now (thread-safe; the watcher thread does it)."""
        self._wake.set()

    def start(self) -> None:
        """Start the watcher thread (which lists at once)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="meetcap-device-watcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread (and the OS event listener); waits for it."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._stop_events()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._ensure_events()
            self.poll()
            self._wake.wait(self._poll_interval_s())
            if self._stop.is_set():
                break
            if self._wake.is_set():
                self._stop.wait(DEBOUNCE_S)
            self._wake.clear()

    def _poll_interval_s(self) -> float:
        """The given interval; by default slow while OS change events arrive, faster
        without them (other platforms, or no pactl)."""
        if self._interval_s is not None:
            return self._interval_s
        if self._events is not None and self._events.alive:
            return EVENT_BACKED_INTERVAL_S
        return DEFAULT_INTERVAL_S

    def _ensure_events(self) -> None:
        """(Re)start the OS change notifications: pactl exits when PulseAudio restarts."""
        if not self._os_events or not sys.platform.startswith("linux"):
            return
        if self._events is not None and self._events.alive:
            return
        if shutil.which("pactl") is None:
            return
        self._stop_events()
        self._events = PulseEvents(self.wake)

    def _stop_events(self) -> None:
        events, self._events = self._events, None
        if events is not None:
            events.stop()
