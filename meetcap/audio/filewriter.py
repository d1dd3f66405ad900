"""Write frames to a WAV or FLAC file that stays playable if recording is interrupted."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from meetcap.constants import FRAMES_PER_SECOND, SAMPLE_RATE_HZ
from meetcap.errors import ConfigError, StorageError
from meetcap.frames import Frame

FORMATS = {".wav": "WAV", ".flac": "FLAC"}
FLUSH_EVERY_FRAMES = FRAMES_PER_SECOND  # a crash loses at most a second of the local copy


class FrameFileWriter:
    """A frame listener that appends each frame's PCM, in order, to ``path``.

    ``close()`` finalises the header; call it on every exit path (Ctrl-C included).
    """

    def __init__(self, path: str | Path, *, channels: int = 1) -> None:
        """``channels`` 2: tracks mode, the frames' ``tracks`` (mic, system) as two channels."""
        import soundfile as sf

        if channels not in (1, 2):
            raise ConfigError(f"a recording has 1 channel (the mix) or 2 (tracks), not {channels}")
        self.channels = channels

        self.path = Path(path)
        fmt = FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise ConfigError(f"cannot record to {self.path.name!r}: use a .wav or .flac file name")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(
                self.path, "w", samplerate=SAMPLE_RATE_HZ, channels=channels, format=fmt,
                subtype="PCM_16",
            )
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot create {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self.frames_written = 0

    def __call__(self, frame: Frame) -> None:
        if self.channels == 2:
            if frame.tracks is None:
                raise ValueError(
                    f"frame {frame.seq} has no tracks: the capture is not in tracks mode"
                )
            samples = np.frombuffer(frame.tracks, dtype="<i2").reshape(-1, 2)
        else:
            samples = np.frombuffer(frame.pcm, dtype="<i2")
        with self._lock:
            try:
                self._file.write(samples)
            except (OSError, RuntimeError) as exc:
                raise StorageError(f"writing {self.path} failed (disk full?): {exc}") from exc
            self.frames_written += 1
            if self.frames_written % FLUSH_EVERY_FRAMES == 0:
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            if not self._file.closed:
                self._file.close()
