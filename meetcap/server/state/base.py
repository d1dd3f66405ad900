"""The state interface every backend implements, and the rules they share.

Resume-token rule (docs/protocol.md, "Sessions and resume"): each session keeps two
token hashes, ``confirmed`` (the token the client last proved it holds) and ``issued``
(the newest one sent in a welcome). A resume is accepted if its token's hash equals
``issued`` (then ``confirmed := issued``) or ``confirmed``; either way a fresh token is
issued and the epoch goes up. A client whose welcome was lost can therefore retry with
the token it holds, and a token dies as soon as its successor has been used.
"""

from __future__ import annotations

import abc
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from meetcap.errors import MeetcapError, RetryableError
from meetcap.protocol import CloseCode

# How long a "too many connected sessions" refusal asks the client to wait.
CONCURRENT_RETRY_MS = 5_000
NEW_SESSION_WINDOW_S = 60.0


def new_session_id() -> str:
    """128 random bits, URL-safe (22 characters)."""
    return secrets.token_urlsafe(16)


def new_token() -> str:
    """A fresh resume token: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


def hash_token(token: str) -> str:
    """What the store keeps instead of a token: its SHA-256, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A session as the store returns it after a successful create or resume."""

    session_id: str
    user: str
    epoch: int
    created_at_s: float
    started_at_s: float


class StateUnavailable(RetryableError):
    """The state store cannot be reached (Redis down or restarting): the client is told
    so and retries; nothing about the session changed."""


@dataclass(frozen=True, slots=True)
class LostRecord:
    """What is needed to write a lost session record again (from the attached connection
    or from the session's sidecar): the token hashes the client may hold, and the times."""

    confirmed: str  # hash of the token the client proved it holds ("" after a create)
    issued: str  # hash of the newest token sent in a welcome
    created_at_s: float
    started_at_s: float


def recovered_epoch(now_s: float) -> int:
    """The epoch of a session recovered from its files. The lost epoch is unknown, and a
    connection elsewhere may still hold it: a millisecond clock reading is above any
    epoch counted up from 0 by resumes, so the recovered one differs from (and is newer
    than) every epoch in use, and the older connection sees itself taken over."""
    return int(now_s * 1000)


class Refusal(MeetcapError):
    """The store refuses a create or resume; the handler sends ``code`` to the client.

    Retryable or fatal by its code (a session cap lifts with time, a wrong token does
    not), so it sits under MeetcapError itself: ``is_retryable(refusal.code)`` says which.
    """

    def __init__(self, code: CloseCode, message: str, retry_after_ms: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after_ms = retry_after_ms


def refusal_for(outcome: str, session_id: str, retry_after_ms: int | None = None) -> Refusal:
    """The refusal for one of the outcome names both backends return."""
    messages = {
        "unknown_session": (CloseCode.UNKNOWN_SESSION, f"no session {session_id} on this server"),
        "forbidden": (CloseCode.FORBIDDEN, f"session {session_id} belongs to another user"),
        "bad_resume_token": (
            CloseCode.BAD_RESUME_TOKEN,
            f"the resume token of session {session_id} is wrong or was replaced",
        ),
        "session_ended": (
            CloseCode.SESSION_ENDED, f"session {session_id} has ended; it takes no more audio"
        ),
        "too_many_concurrent": (
            CloseCode.TOO_MANY_SESSIONS,
            "this user already has the most sessions connected that the server allows",
        ),
        "too_many_new": (
            CloseCode.TOO_MANY_SESSIONS,
            "this user started the most new sessions a minute that the server allows",
        ),
    }
    code, message = messages[outcome]
    if outcome == "too_many_concurrent" and retry_after_ms is None:
        retry_after_ms = CONCURRENT_RETRY_MS
    return Refusal(code, message, retry_after_ms)


def check_resume(
    *, owner: str, user: str, confirmed: str | None, issued: str, ended: bool, token_hash: str
) -> tuple[str | None, str]:
    """Apply the resume rule (module doc) to a stored session.

    Returns ``(None, new_confirmed)`` when accepted, else ``(outcome, "")`` with an
    outcome name for :func:`refusal_for`. The same rule is written in Lua in redis.py.
    """
    if owner != user:
        return "forbidden", ""
    if token_hash == issued:
        confirmed = issued
    elif confirmed is None or token_hash != confirmed:
        return "bad_resume_token", ""
    if ended:
        return "session_ended", ""
    return None, confirmed


class StateStore(abc.ABC):
    """Session records, token rotation, epochs and per-user caps.

    Every method that checks and then writes is atomic with respect to every other
    call on the same session, in this process and (Redis) in every instance.
    """

    #: True when other processes may take a session over (the server must then watch
    #: the epochs of the sessions it serves).
    shared: bool = False

    async def start(self) -> None:  # noqa: B027 - an optional hook, nothing to do by default
        """Connect / load; raise ConfigError or StorageError with a clear message."""

    async def close(self) -> None:  # noqa: B027 - an optional hook
        """Release connections and files."""

    @abc.abstractmethod
    async def create(
        self, user: str, session_id: str, token_hash: str, started_at_s: float, now_s: float
    ) -> SessionRecord:
        """Create a session for ``user`` (epoch 0), counting it against the user's caps
        (connected sessions, new sessions a minute). Durable before it returns."""

    @abc.abstractmethod
    async def resume(
        self, user: str, session_id: str, token_hash: str, new_token_hash: str, now_s: float
    ) -> SessionRecord:
        """Check the token (module doc) and the caps, rotate the token, bump the epoch:
        one atomic step, durable before it returns. Raises :class:`Refusal`."""

    @abc.abstractmethod
    async def release(self, user: str, session_id: str, epoch: int) -> None:
        """The attachment with ``epoch`` is gone: free its connected-session slot, unless
        a newer epoch holds the session now."""

    @abc.abstractmethod
    async def mark_ended(self, session_id: str, epoch: int) -> bool:
        """Mark the session ended if ``epoch`` is still current; False if taken over."""

    @abc.abstractmethod
    async def current_epochs(self, session_ids: Iterable[str]) -> dict[str, int | None]:
        """The current epoch of each session (None for an unknown one)."""

    @abc.abstractmethod
    async def reinstate(self, record: SessionRecord, lost: LostRecord, now_s: float) -> int | None:
        """The store lost ``record`` while it is attached here (Redis restarted without
        persistence, flushed, or evicted the key): put it back as it was, unless it exists
        again. Returns the epoch current afterwards (another one: a newer resume won)."""

    @abc.abstractmethod
    async def recover(
        self, user: str, session_id: str, lost: LostRecord, now_s: float
    ) -> SessionRecord:
        """A resume of a session the store does not know but whose files this server holds
        (its sidecar names ``user`` and no end): create the record again with
        ``lost.confirmed`` (the hash of the token the client presented), ``lost.issued``
        (the hash of the fresh token) and :func:`recovered_epoch`,
        counting the connected cap. If the record exists again by now, this is a plain
        :meth:`resume`. Raises :class:`Refusal`."""

    async def refresh_leases(  # noqa: B027 - only a shared store has leases
        self, attached: Mapping[str, Iterable[str]]
    ) -> None:
        """Redis: keep the connected-session slots of this instance (user -> session ids)
        alive; slots of an instance that died expire on their own."""
