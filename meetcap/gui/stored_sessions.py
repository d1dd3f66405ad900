"""Sessions the built-in server stored on this computer: list them, read a transcript.

The server keeps each session as ``<id>.wav`` (the audio), ``<id>.json`` (the sidecar:
when, how long; meetcap/server/sidecar.py) and, when it transcribed it,
``<id>.transcript.json`` (every final segment) with ``<id>.vtt`` and ``<id>.srt``.
A transcript the server gave up (its worker crashed on the audio again and again)
keeps the finals it had and says why in ``failed``. This module only reads those files
(no Qt): the sessions dialog lists what :func:`list_sessions` finds, and the pane shows
what :func:`load_transcript` reads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from meetcap.errors import UsageError
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment

log = logging.getLogger(__name__)

TRANSCRIPT_SUFFIX = ".transcript.json"


@dataclass(frozen=True, slots=True)
class StoredSession:
    """One stored session: ``started_at`` is the epoch time of its first frame."""

    session_id: str
    folder: Path
    started_at: float
    duration_s: float
    finished: bool

    @property
    def wav(self) -> Path:
        return self.folder / f"{self.session_id}.wav"

    @property
    def transcript_json(self) -> Path:
        return self.folder / f"{self.session_id}{TRANSCRIPT_SUFFIX}"

    def stored_file(self, suffix: str) -> Path:
        """The server's own transcript file with this suffix (".vtt", ".srt")."""
        return self.folder / f"{self.session_id}{suffix}"

    @property
    def has_transcript(self) -> bool:
        return self.transcript_json.is_file()


def _read_sidecar(path: Path) -> StoredSession | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        session_id = str(data["session_id"])
        started = float(data.get("started_at") or data.get("created_at") or 0.0)
        duration = float(data["duration_ms"]) / 1000.0
        finished = bool(data.get("finished", False))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("skipping %s: not a session sidecar (%s)", path, exc)
        return None
    if not (path.parent / f"{session_id}.wav").is_file():
        return None  # the audio is gone: nothing to open or play
    return StoredSession(session_id, path.parent, started, duration, finished)


def list_sessions(folder: Path) -> list[StoredSession]:
    """Every session stored in ``folder``, newest first (none if it does not exist)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.json"):
        if path.name.endswith(TRANSCRIPT_SUFFIX):
            continue
        session = _read_sidecar(path)
        if session is not None:
            found.append(session)
    found.sort(key=lambda s: (s.started_at, s.session_id), reverse=True)
    return found


@dataclass(frozen=True, slots=True)
class StoredTranscript:
    """A session's stored final segments, and the server's sentence when it gave the
    transcript up (None: it did not)."""

    segments: list[TranscriptSegment]
    failed: str | None = None


def load_transcript(session: StoredSession) -> StoredTranscript:
    """The session's stored transcript; no segments when it was not transcribed. A file
    that cannot be read is a UsageError that says which and why."""
    path = session.transcript_json
    if not path.is_file():
        return StoredTranscript([])
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot read the transcript {path}: {exc}") from exc
    try:
        segments = formats.from_json(document)
    except UsageError as exc:
        raise UsageError(f"the transcript {path} is damaged: {exc}") from exc
    failed = document.get("failed")
    return StoredTranscript(segments, str(failed) if failed else None)


def transcript_summary(session: StoredSession) -> str:
    """The sessions list's word for a session's transcript: "yes", "none", "given up"
    (the server stopped transcribing it) or "damaged"."""
    if not session.has_transcript:
        return "none"
    try:
        return "given up" if load_transcript(session).failed else "yes"
    except UsageError:
        return "damaged"


__all__ = ["StoredSession", "StoredTranscript", "list_sessions", "load_transcript",
           "transcript_summary"]
