"""Export a transcript as Markdown, plain text, SRT or WebVTT (no Qt).

The text comes from the same functions that write the server's stored files
(meetcap/transcribe/formats.py), so an exported ``.srt`` or ``.vtt`` is byte for byte
the server's ``<id>.srt`` / ``<id>.vtt`` of the same segments. Only final segments are
exported: a partial is a guess that its final replaces.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from meetcap.durable import atomic_write_bytes
from meetcap.errors import UsageError
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment


@dataclass(frozen=True, slots=True)
class ExportFormat:
    key: str
    title: str  # what the menu says
    suffix: str
    render: Callable[[Sequence[TranscriptSegment]], str]


EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat("markdown", "Markdown (.md)", ".md", formats.to_markdown),
    ExportFormat("text", "Plain text (.txt)", ".txt", formats.to_text),
    ExportFormat("srt", "Subtitles, SRT (.srt)", ".srt", formats.to_srt),
    ExportFormat("vtt", "Subtitles, WebVTT (.vtt)", ".vtt", formats.to_vtt),
)
BY_KEY = {f.key: f for f in EXPORT_FORMATS}


def render(segments: Sequence[TranscriptSegment], key: str) -> bytes:
    """The exported file's bytes (UTF-8, line ends as the formatter writes them)."""
    try:
        fmt = BY_KEY[key]
    except KeyError:
        raise UsageError(f"no export format {key!r}; use one of {', '.join(BY_KEY)}") from None
    return fmt.render([s for s in segments if s.final]).encode("utf-8")


def export_transcript(segments: Sequence[TranscriptSegment], key: str, path: Path) -> Path:
    """Write the transcript to ``path`` (atomically: a crash leaves the old file or the
    new one, never half). Returns ``path``; an unwritable place is a UsageError."""
    data = render(segments, key)
    try:
        atomic_write_bytes(Path(path), data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return Path(path)


__all__ = ["BY_KEY", "EXPORT_FORMATS", "ExportFormat", "export_transcript", "render"]
