"""The exception tree as drawn in meetcap/errors.py is the tree in the code, and the
server answers each error with the close code of the one table (server/refusals.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import meetcap
from meetcap import errors
from meetcap.errors import MeetcapError, RetryableError, StorageError
from meetcap.protocol import CloseCode, is_retryable
from meetcap.server import refusals, storage
from meetcap.server.refusals import ANSWERED, CLOSE_CODES, answer_for
from meetcap.server.state.base import Refusal

PACKAGE = Path(meetcap.__file__).resolve().parent
_NODE = re.compile(r"^(?P<indent>[ │]*)[├└]── (?P<name>\w+)")


def drawn_tree() -> dict[str, str]:
    """Class name -> parent name, read from the drawing in errors.py's docstring."""
    parents: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (errors.__doc__ or "").splitlines():
        if line.strip() == "MeetcapError":
            stack = [(0, "MeetcapError")]
            continue
        match = _NODE.match(line)
        if not match or not stack:
            continue
        depth = len(match["indent"]) // 4
        while stack[-1][0] >= depth:
            stack.pop()
        parents[match["name"]] = stack[-1][1]
        stack.append((depth, match["name"]))
    return parents


def defined_errors() -> dict[str, str]:
    """Class name -> base name of every MeetcapError subclass in the package's source."""
    bases: dict[str, str] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and node.bases:
                base = node.bases[0]
                if isinstance(base, ast.Name):
                    bases[node.name] = base.id
    found: dict[str, str] = {}
    grew = True
    while grew:  # the subclasses of MeetcapError, then theirs...
        known = {"MeetcapError", *found}
        new = {n: b for n, b in bases.items() if b in known and n not in found}
        found.update(new)
        grew = bool(new)
    return found


def test_the_drawn_tree_is_the_tree_in_the_code():
    drawn = drawn_tree()
    assert drawn == defined_errors()


def test_every_close_code_in_the_table_says_retry_exactly_when_the_error_does():
    for error_type, (code, _message) in CLOSE_CODES.items():
        assert issubclass(error_type, MeetcapError)
        if error_type is StorageError:
            # Fatal where it happens (a person must free the server's disk), yet worth a
            # retry for the client, who keeps its spool meanwhile: docs/protocol.md 4011.
            assert is_retryable(code)
            continue
        assert is_retryable(code) == issubclass(error_type, RetryableError), error_type


def test_an_error_is_answered_by_its_nearest_class_in_the_table():
    class DiskOnFire(StorageError):
        pass

    answer = answer_for(DiskOnFire("the disk is on fire"))
    assert answer == (CloseCode.STORAGE_FAILED, "the disk is on fire", None)
    assert isinstance(DiskOnFire("x"), ANSWERED)


def test_a_refusal_carries_its_own_code_and_wait():
    answer = answer_for(Refusal(CloseCode.TOO_MANY_SESSIONS, "too many", retry_after_ms=500))
    assert answer == (CloseCode.TOO_MANY_SESSIONS, "too many", 500)


def test_the_server_errors_speak_to_the_client_in_their_own_words_or_the_tables():
    assert answer_for(storage.SessionLocked("/data/x.wav")).message.endswith("retry shortly")
    full = storage.SessionFull("session x reached 1 frames")
    assert answer_for(full) == (CloseCode.BAD_MESSAGE, "session x reached 1 frames", None)


def test_an_error_outside_the_table_is_a_bug_said_loudly():
    with pytest.raises(TypeError, match="CLOSE_CODES"):
        refusals.answer_for(ValueError("not a refusal"))
