"""A session's stored frames and speech flags, read back from its files.

The worker reads only frames the sink announced as durable (fsynced), so what it reads
is complete. The speech flags are ``<id>.speech`` (one byte a frame, written with the
audio) while the session is open; after its end that file is folded into the sidecar's
``speech_segments`` (and ``speaker_turns``) and removed, so a worker that is behind
rebuilds them from there.
"""

from __future__ import annotations

import os
from pathlib import Path

from meetcap.constants import FRAME_BYTES, FRAME_MS
from meetcap.durable import read_json
from meetcap.errors import StorageError
from meetcap.frames import SPEAKER_NAMES
from meetcap.oscalls import open_file, pread
from meetcap.protocol.audio import FLAG_SPEECH, SPEAKER_SHIFT
from meetcap.server import wavfile

_SPEAKER_BY_NAME = {name: code for code, name in SPEAKER_NAMES.items()}


class StoredAudio:
    """Reads frames of one session (``data_dir/<id>.wav`` and its flags)."""

    def __init__(self, data_dir: Path, session_id: str) -> None:
        base = Path(data_dir) / session_id
        self.wav_path = base.with_suffix(".wav")
        self.speech_path = base.with_suffix(".speech")
        self.sidecar_path = base.with_suffix(".json")
        self._wav_fd: int | None = None
        # An open descriptor keeps reading the flags even after the end removes the file.
        self._speech_fd: int | None = None
        self._sidecar_flags: bytes | None = None

    def read(self, first_seq: int, frames: int) -> tuple[bytes, bytes]:
        """(pcm, flags) of frames ``first_seq`` .. ``first_seq + frames - 1``.

        Raises StorageError when the audio is not there (the file is shorter)."""
        try:
            if self._wav_fd is None:
                self._wav_fd = open_file(self.wav_path, os.O_RDONLY)
            size = frames * FRAME_BYTES
            pcm = pread(self._wav_fd, size, wavfile.pcm_offset(first_seq))
        except OSError as exc:
            raise StorageError(
                f"cannot read the audio of {self.wav_path.name}: {exc.strerror or exc}"
            ) from exc
        if len(pcm) != size:
            raise StorageError(
                f"{self.wav_path.name} holds fewer frames than announced "
                f"(wanted {first_seq}..{first_seq + frames - 1})"
            )
        return pcm, self.flags(first_seq, frames)

    def flags(self, first_seq: int, frames: int) -> bytes:
        """The flag bytes of those frames (bit 0 speech, bits 1-2 who spoke)."""
        if self._speech_fd is None and self._sidecar_flags is None:
            try:
                self._speech_fd = open_file(self.speech_path, os.O_RDONLY)
            except FileNotFoundError:
                self._sidecar_flags = _flags_from_sidecar(self.sidecar_path)
        if self._speech_fd is not None:
            flags = pread(self._speech_fd, frames, first_seq)
        else:
            assert self._sidecar_flags is not None
            flags = self._sidecar_flags[first_seq:first_seq + frames]
        # Flags not there (never written) read as "no speech".
        return flags + bytes(frames - len(flags))

    def close(self) -> None:
        for fd in (self._wav_fd, self._speech_fd):
            if fd is not None:
                os.close(fd)
        self._wav_fd = self._speech_fd = None
        self._sidecar_flags = None


def _flags_from_sidecar(path: Path) -> bytes:
    """One flag byte a frame from a sidecar's ``speech_segments`` and ``speaker_turns``
    (empty when there is no sidecar)."""
    try:
        doc = read_json(path)
    except (OSError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        return b""
    flags = bytearray(int(doc.get("frames", 0) or 0))
    for run in doc.get("speech_segments") or []:
        for seq in range(run["start_ms"] // FRAME_MS, min(run["end_ms"] // FRAME_MS, len(flags))):
            flags[seq] |= FLAG_SPEECH
    for turn in doc.get("speaker_turns") or []:
        code = _SPEAKER_BY_NAME.get(turn.get("speaker"), 0) << SPEAKER_SHIFT
        for seq in range(turn["start_ms"] // FRAME_MS, min(turn["end_ms"] // FRAME_MS, len(flags))):
            flags[seq] |= code
    return bytes(flags)
