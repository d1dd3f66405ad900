"""Transcript files: every format parses back to the segments it was made from."""

from __future__ import annotations

import json
import re

import pytest

from meetcap.errors import UsageError
from meetcap.transcribe.formats import (
    from_json,
    to_json,
    to_markdown,
    to_srt,
    to_text,
    to_vtt,
)
from meetcap.transcribe.segments import TranscriptSegment

SEGMENTS = [
    TranscriptSegment(0, 0.6, 5.25, "Good morning, let us begin.", True),
    TranscriptSegment(1, 61.05, 65.5, "Okay.", True, speaker="Ana", minor=True),
    TranscriptSegment(2, 3725.1, 3730.999, "Costs < budget & the --> arrow stays text.", True),
]
PARTIAL = TranscriptSegment(3, 3731.0, 3732.0, "not yet", False)

_TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms) / 1000


def parse_cues(text: str, sep: str) -> list[tuple[float, float, str]]:
    cues = []
    for block in re.split(r"\n\n+", text.strip()):
        lines = block.splitlines()
        timing = next((i for i, line in enumerate(lines) if "-->" in line), None)
        if timing is None:
            continue  # the WEBVTT header
        m = re.fullmatch(f"{_TIME} --> {_TIME}".replace("[,.]", sep), lines[timing])
        assert m, lines[timing]
        g = m.groups()
        cues.append((_seconds(*g[:4]), _seconds(*g[4:]), "\n".join(lines[timing + 1:])))
    return cues


def test_srt_parses_back_with_exact_times_and_numbered_cues():
    text = to_srt(SEGMENTS + [PARTIAL])
    cues = parse_cues(text, ",")
    assert [(a, b) for a, b, _ in cues] == [(0.6, 5.25), (61.05, 65.5), (3725.1, 3730.999)]
    assert [c[2] for c in cues] == [
        "Good morning, let us begin.", "Ana: Okay.", "Costs < budget & the -> arrow stays text.",
    ]
    assert re.findall(r"^(\d+)$", text, re.M) == ["1", "2", "3"]


def test_vtt_parses_back_escaped_with_voices():
    text = to_vtt(SEGMENTS)
    assert text.startswith("WEBVTT\n\n")
    cues = parse_cues(text, r"\.")
    assert [(a, b) for a, b, _ in cues] == [(0.6, 5.25), (61.05, 65.5), (3725.1, 3730.999)]
    assert cues[1][2] == "<v Ana>Okay."
    assert cues[2][2] == "Costs &lt; budget &amp; the -&gt; arrow stays text."


def test_minor_segments_can_be_left_out():
    assert "Okay" not in to_srt(SEGMENTS, include_minor=False)
    assert "Okay" not in to_text(SEGMENTS, include_minor=False)


def test_markdown_and_text_carry_time_and_text():
    md = to_markdown(SEGMENTS, title="Weekly")
    assert md.startswith("# Weekly\n")
    assert "**[00:00]** Good morning, let us begin." in md
    assert "**[01:01]** Ana: Okay." in md
    assert "**[1:02:05]**" in md
    lines = to_text(SEGMENTS).splitlines()
    assert lines[0] == "[00:00:00.600 --> 00:00:05.250] Good morning, let us begin."
    assert len(lines) == 3


def test_json_document_round_trips_finals_only():
    doc = json.loads(json.dumps(to_json(SEGMENTS + [PARTIAL], session_id="s1")))
    assert doc["version"] == 1 and doc["session_id"] == "s1"
    assert from_json(doc) == SEGMENTS


def test_a_malformed_json_document_says_what_is_wrong():
    with pytest.raises(UsageError, match="'text'"):
        from_json({"version": 1, "segments": [{"id": 0, "start_s": 0, "end_s": 1,
                                               "final": True}]})
    with pytest.raises(UsageError, match="version"):
        from_json({"version": 99, "segments": []})
