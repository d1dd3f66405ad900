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

    def __init__(self, path: str | Path) -> None:
        import soundfile as sf

        self.path = Path(path)
        fmt = FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise ConfigError(f"cannot record to {self.path.name!r}: use a .wav or .flac file name")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = sf.SoundFile(
                self.path, "w", samplerate=SAMPLE_RATE_HZ, channels=1, format=fmt, subtype="PCM_16"
            )
        except (OSError, RuntimeError) as exc:
            raise StorageError(f"cannot create {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self.frames_written = 0

    def __call__(self, frame: Frame) -> None:
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
