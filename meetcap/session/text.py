"""Messages in words: one rule for turning an error's text into a sentence to show."""

from __future__ import annotations


def as_sentence(text: str) -> str:
    """``text`` as a sentence: capital first letter, final full stop (errors' messages
    are written lower-case, to be embedded: "cannot open ...")."""
    text = text.strip()
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
