"""Play a stored session's audio from a point on its timeline (no Qt).

Playback goes through PortAudio (sounddevice) into the system's default output, the
same library meetcap captures with. QtMultimedia was the other choice: it is not in
PySide6-Essentials (the app's Qt), and the Add-ons wheel would add ~200 MB for one
button. PortAudio also plays under the tests' PulseAudio server, where the sound can be
recorded back from the default sink's monitor.

A thread reads the WAV in 100 ms blocks and writes them to a blocking output stream, so
an hour-long session is never loaded whole and :meth:`SegmentPlayer.stop` takes effect
within a block. On Linux, opening and closing the stream goes through the audio layer's
PortAudio guard (meetcap.audio.linux_pulse), so a device re-scan never pulls PortAudio
away from under a playing stream.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import soundfile as sf

from meetcap.errors import UsageError

log = logging.getLogger(__name__)

BLOCK_S = 0.1


@contextlib.contextmanager
def _portaudio_guard() -> Iterator[Callable[[], None]]:
    """Open the stream inside; yields the function to call once it is closed."""
    if sys.platform.startswith("linux"):
        from meetcap.audio import linux_pulse

        with linux_pulse.output_slot():
            yield linux_pulse.release_stream
    else:
        yield lambda: None


def parse_offset(text: str) -> float:
    """Seconds from a time a person typed: "75", "1:15", "0:01:15" (seconds may have a
    fraction). Anything else is a UsageError that says what is accepted."""
    refused = UsageError(f"cannot read {text.strip()!r} as a time: type seconds, m:ss or "
                         "h:mm:ss")
    parts = text.strip().split(":")
    try:
        if not 1 <= len(parts) <= 3 or any(not p.strip() for p in parts):
            raise ValueError
        seconds = float(parts[-1])
        whole = [int(p) for p in parts[:-1]]  # hours and/or minutes: whole numbers
    except ValueError:
        raise refused from None
    if not math.isfinite(seconds) or seconds < 0 or any(n < 0 for n in whole) or (
            whole and seconds >= 60) or (len(whole) == 2 and whole[1] >= 60):
        raise refused
    multiplier = 60
    for n in reversed(whole):
        seconds += n * multiplier
        multiplier *= 60
    return seconds


class SegmentPlayer:
    """Plays one WAV at a time from a given second. ``on_finished(error)`` is called on
    the player's thread when playback ends by itself (error None) or fails (a
    sentence); not after :meth:`stop`."""

    def __init__(self, on_finished: Callable[[str | None], None] | None = None,
                 *, device: int | str | None = None) -> None:
        self.on_finished = on_finished
        self.device = device  # None: the system's default output
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.position_s = 0.0  # where playback is now (seconds into the file)
        self.path: Path | None = None

    @property
    def playing(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def play(self, wav: Path, start_s: float) -> None:
        """Stop what plays, then play ``wav`` from ``start_s``. A missing or unreadable
        file is a UsageError (nothing starts)."""
        self.stop()
        try:
            info = sf.info(str(wav))
        except (OSError, RuntimeError, sf.LibsndfileError) as exc:
            raise UsageError(f"cannot play {wav}: {exc}") from exc
        start_frame = max(0, min(int(start_s * info.samplerate), info.frames))
        self.path = Path(wav)
        self.position_s = start_frame / info.samplerate
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(Path(wav), start_frame, self._stop),
            name="meetcap-playback", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop playing (returns once the stream is closed)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout_s)

    def _run(self, wav: Path, start_frame: int, stop: threading.Event) -> None:
        import sounddevice as sd

        error: str | None = None
        try:
            with sf.SoundFile(str(wav)) as source:
                source.seek(start_frame)
                block = max(1, int(source.samplerate * BLOCK_S))
                with _portaudio_guard() as release:
                    stream = sd.OutputStream(samplerate=source.samplerate,
                                             channels=source.channels, dtype="int16",
                                             device=self.device, blocksize=block)
                try:
                    stream.start()
                    while not stop.is_set():
                        data = source.read(block, dtype="int16", always_2d=True)
                        if not len(data):
                            break
                        stream.write(data)
                        self.position_s = source.tell() / source.samplerate
                    if not stop.is_set():
                        # Let the last blocks out of the device before closing it.
                        stop.wait(stream.latency + BLOCK_S)
                finally:
                    if stop.is_set():
                        stream.abort()  # at once: the person pressed Stop
                    else:
                        stream.stop()
                    stream.close()
                    release()
        except Exception as exc:  # noqa: BLE001 - told to the person via on_finished
            log.exception("playback of %s failed", wav)
            error = f"Playback failed: {exc}"
        if not stop.is_set() and self.on_finished is not None:
            self.on_finished(error)


__all__ = ["SegmentPlayer", "parse_offset"]
