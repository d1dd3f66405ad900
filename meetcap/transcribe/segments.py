"""A transcript segment on a session's timeline, and the filters that mark minor ones."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from meetcap.errors import UsageError

# The seed's rule: fewer than this many words is not worth a reader's attention.
DEFAULT_MIN_WORDS = 4
# Words that carry no content on their own (lower case, punctuation stripped). A segment
# made only of these is minor whatever its length. Whisper's own non-speech tags
# ("[BLANK_AUDIO]", "(music)") are handled apart (see is_minor).
FILLER_WORDS = frozenset({
    "uh", "um", "umm", "uhm", "er", "erm", "ah", "eh", "hm", "hmm", "mm", "mhm", "mmm",
    "oh", "huh", "uh-huh", "ok", "okay", "yeah", "yep", "yes", "no", "so", "well", "like",
    "right", "you", "know", "i", "mean", "and", "the", "a", "thank", "thanks", "bye",
})
_WORD = re.compile(r"[\w']+(?:-[\w']+)*")
# Full-matched (no anchors): ``$`` would also match before a trailing newline.
_NON_SPEECH_TAG = re.compile(r"\s*[\[\(\*][^\]\)\*]*[\]\)\*]\s*")


def words(text: str) -> list[str]:
    """The words of ``text``, lower case, punctuation dropped."""
    return [w.lower() for w in _WORD.findall(text)]


def is_minor(text: str, *, min_words: int = DEFAULT_MIN_WORDS) -> bool:
    """True for text a reader may hide: fewer than ``min_words`` words, only filler
    words, or only a non-speech tag such as ``[MUSIC]``."""
    if _NON_SPEECH_TAG.fullmatch(text):
        return True
    found = words(text)
    if len(found) < min_words:
        return True
    return all(w in FILLER_WORDS for w in found)


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """One segment of a session's transcript.

    ``start_s``/``end_s`` are seconds from the session's first frame, from frame sequence
    numbers (seq * 0.1 s), so they stay exact across reconnects. Final segments' ids are
    0, 1, 2... in order within a session; a partial carries the id its final will take.
    ``speaker`` is None until the frames say who spoke. ``minor`` marks segments a
    consumer may hide (see :func:`is_minor`); they are kept.
    """

    id: int
    start_s: float
    end_s: float
    text: str
    final: bool
    speaker: str | None = None
    minor: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times rounded to the millisecond)."""
        d = asdict(self)
        d["start_s"] = round(self.start_s, 3)
        d["end_s"] = round(self.end_s, 3)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TranscriptSegment:
        """Parse :meth:`to_json`'s dict; a missing or mistyped field is a UsageError
        naming it."""
        try:
            seg = cls(
                id=int(d["id"]),
                start_s=float(d["start_s"]),
                end_s=float(d["end_s"]),
                text=str(d["text"]),
                final=bool(d["final"]),
                speaker=None if d.get("speaker") is None else str(d["speaker"]),
                minor=bool(d.get("minor", False)),
            )
        except KeyError as exc:
            raise UsageError(f"a transcript segment lacks the field {exc.args[0]!r}") from exc
        except (TypeError, ValueError) as exc:
            raise UsageError(f"a transcript segment has a malformed field: {exc}") from exc
        if seg.id < 0 or seg.end_s < seg.start_s:
            raise UsageError(
                f"a transcript segment has id {seg.id} and times {seg.start_s}-{seg.end_s}"
            )
        return seg
