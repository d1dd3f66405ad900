"""Transcript files from final segments: SRT, WebVTT, Markdown, plain text and JSON.

``to_json`` is the ``<session-id>.transcript.json`` document the server stores and the
offline CLI prints; ``from_json`` reads it back. Minor segments (see segments.is_minor)
are kept in JSON and written to the other formats too unless ``include_minor=False``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from meetcap.errors import UsageError
from meetcap.transcribe.segments import TranscriptSegment

JSON_FORMAT_VERSION = 1
FORMATS = ("txt", "json", "srt", "vtt", "md")


def _finals(segments: Iterable[TranscriptSegment], include_minor: bool) -> list[TranscriptSegment]:
    return [s for s in segments if s.final and (include_minor or not s.minor)]


def _clock(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _short_clock(seconds: float) -> str:
    total = max(0, int(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def _cue_text(seg: TranscriptSegment) -> str:
    # A blank line would end the cue early; "-->" would be read as a timing line.
    text = " ".join(seg.text.split()).replace("-->", "->")
    return f"{seg.speaker}: {text}" if seg.speaker else text


def to_srt(segments: Iterable[TranscriptSegment], *, include_minor: bool = True) -> str:
    """SubRip: numbered cues from 1, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
    cues = []
    for n, seg in enumerate(_finals(segments, include_minor), start=1):
        cues.append(
            f"{n}\n{_clock(seg.start_s, ',')} --> {_clock(seg.end_s, ',')}\n{_cue_text(seg)}\n"
        )
    return "\n".join(cues)


def to_vtt(segments: Iterable[TranscriptSegment], *, include_minor: bool = True) -> str:
    """WebVTT: a ``WEBVTT`` header, cues identified by segment id, ``HH:MM:SS.mmm``."""
    parts = ["WEBVTT\n"]
    for seg in _finals(segments, include_minor):
        voice = f"<v {seg.speaker}>" if seg.speaker else ""
        text = " ".join(seg.text.split()).replace("-->", "->")
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        parts.append(
            f"{seg.id}\n{_clock(seg.start_s, '.')} --> {_clock(seg.end_s, '.')}\n{voice}{text}\n"
        )
    return "\n".join(parts)


def to_markdown(
    segments: Iterable[TranscriptSegment], *, title: str = "Transcript",
    include_minor: bool = True,
) -> str:
    """A heading, then one paragraph per segment: ``**[mm:ss]** speaker: text``."""
    lines = [f"# {title}", ""]
    for seg in _finals(segments, include_minor):
        who = f" {seg.speaker}:" if seg.speaker else ""
        lines.append(f"**[{_short_clock(seg.start_s)}]**{who} {seg.text.strip()}")
        lines.append("")
    return "\n".join(lines)


def to_text(segments: Iterable[TranscriptSegment], *, include_minor: bool = True) -> str:
    """One line per segment: ``[HH:MM:SS.mmm --> HH:MM:SS.mmm] text``."""
    return "".join(
        f"[{_clock(s.start_s, '.')} --> {_clock(s.end_s, '.')}] {_cue_text(s)}\n"
        for s in _finals(segments, include_minor)
    )


def to_json(
    segments: Iterable[TranscriptSegment], **meta: Any
) -> dict[str, Any]:
    """The transcript document: ``{"version": 1, ...meta, "segments": [...]}``, all
    final segments (minor ones included, marked)."""
    doc: dict[str, Any] = {"version": JSON_FORMAT_VERSION}
    doc.update(meta)
    doc["segments"] = [s.to_json() for s in segments if s.final]
    return doc


def dumps_json(segments: Iterable[TranscriptSegment], **meta: Any) -> str:
    return json.dumps(to_json(segments, **meta), ensure_ascii=False, indent=1) + "\n"


def from_json(doc: dict[str, Any]) -> list[TranscriptSegment]:
    """The segments of a transcript document written by :func:`to_json`."""
    if not isinstance(doc, dict) or not isinstance(doc.get("segments"), list):
        raise UsageError("a transcript document is a JSON object with a 'segments' list")
    if doc.get("version") != JSON_FORMAT_VERSION:
        raise UsageError(
            f"a transcript document of version {doc.get('version')!r}; this meetcap reads "
            f"version {JSON_FORMAT_VERSION}"
        )
    return [TranscriptSegment.from_json(d) for d in doc["segments"]]


def render(fmt: str, segments: list[TranscriptSegment], **meta: Any) -> str:
    """The transcript in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "srt":
        return to_srt(segments)
    if fmt == "vtt":
        return to_vtt(segments)
    if fmt == "md":
        return to_markdown(segments, title=str(meta.get("title", "Transcript")))
    if fmt == "txt":
        return to_text(segments)
    if fmt == "json":
        return dumps_json(segments, **meta)
    raise UsageError(f"unknown transcript format {fmt!r}; use one of {', '.join(FORMATS)}")
