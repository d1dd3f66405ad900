"""A session's transcript files beside its WAV, and the lock that gives them one writer.

* ``<id>.transcript.json`` - the truth: every final segment (formats.to_json), plus
  ``resume_seq`` (the first frame whose finals are not all in the file: a restarted
  worker feeds the stored audio again from there) and ``complete`` (the ended session's
  transcript is whole), and ``failed`` (a sentence: transcription of this session was
  given up, its worker crashed on the same audio again and again; never retried by
  itself, see service.py). Replaced atomically (meetcap.durable) after each utterance's
  finals, so after a kill -9 it holds each final exactly once and a resume point that
  matches them.
* ``<id>.vtt`` / ``<id>.srt`` - derived from the JSON, rewritten after it (also when a
  worker takes the session up again, so a crash between the two writes heals).
* ``transcribing/<id>.lock`` - held (flock) by the one worker process transcribing the
  session; the kernel releases it when that process dies. Several server instances
  sharing a data directory (Redis mode) thus never write one transcript twice.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from meetcap.durable import atomic_write_bytes, atomic_write_json, read_json
from meetcap.errors import StorageError, UsageError
from meetcap.oscalls import lock_exclusive, open_file, unlock
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment

LOCK_DIR = "transcribing"


@dataclass
class TranscriptState:
    """What the JSON file holds: the finals, where to resume, whether it is complete."""

    segments: list[TranscriptSegment] = field(default_factory=list)
    resume_seq: int = 0
    complete: bool = False
    failed: str | None = None  # given up (see service.py); no worker takes it up again

    @property
    def next_id(self) -> int:
        return len(self.segments)


class TranscriptFiles:
    """The transcript files of session ``session_id`` in ``data_dir``."""

    def __init__(self, data_dir: Path, session_id: str) -> None:
        self.data_dir = Path(data_dir)
        self.session_id = session_id
        self.json_path = self.data_dir / f"{session_id}.transcript.json"
        self.vtt_path = self.data_dir / f"{session_id}.vtt"
        self.srt_path = self.data_dir / f"{session_id}.srt"
        self.lock_path = self.data_dir / LOCK_DIR / f"{session_id}.lock"
        self._lock_fd: int | None = None

    # -- reading (any process)

    def load(self) -> TranscriptState:
        """The stored state (empty when there is no file yet). StorageError when the file
        is unreadable or not a transcript (it is never overwritten then)."""
        try:
            doc = read_json(self.json_path)
        except (OSError, ValueError) as exc:
            raise StorageError(f"cannot read {self.json_path.name}: {exc}") from exc
        if doc is None:
            return TranscriptState()
        try:
            segments = formats.from_json(doc)
            resume_seq = int(doc.get("resume_seq", 0))
        except (UsageError, TypeError, ValueError) as exc:
            raise StorageError(f"{self.json_path.name} is not a meetcap transcript: {exc}") from exc
        if [s.id for s in segments] != list(range(len(segments))):
            raise StorageError(f"{self.json_path.name}: segment ids are not 0, 1, 2, ...")
        failed = doc.get("failed")
        return TranscriptState(
            segments, resume_seq, bool(doc.get("complete", False)),
            str(failed) if failed else None,
        )

    # -- writing (the lock holder only)

    def save(self, state: TranscriptState) -> None:
        """JSON first (atomic, fsynced), then the VTT and SRT derived from it. Blocks."""
        meta = {"failed": state.failed} if state.failed else {}
        atomic_write_json(
            self.json_path,
            formats.to_json(
                state.segments, session_id=self.session_id, resume_seq=state.resume_seq,
                complete=state.complete, **meta,
            ),
        )
        self.write_derived(state)

    def write_derived(self, state: TranscriptState) -> None:
        atomic_write_bytes(self.vtt_path, formats.to_vtt(state.segments).encode())
        atomic_write_bytes(self.srt_path, formats.to_srt(state.segments).encode())

    def try_lock(self) -> bool:
        """Take the session's transcription lock without waiting; False if another
        process holds it."""
        if self._lock_fd is not None:
            return True
        self.lock_path.parent.mkdir(exist_ok=True)
        fd = open_file(self.lock_path, os.O_RDWR | os.O_CREAT, 0o640)
        if not lock_exclusive(fd):
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self, *, remove: bool = False) -> None:
        """Let go of the lock; ``remove`` (the transcript is complete) deletes its file."""
        fd, self._lock_fd = self._lock_fd, None
        if fd is None:
            return
        if remove:
            self.lock_path.unlink(missing_ok=True)
        unlock(fd)
        os.close(fd)
