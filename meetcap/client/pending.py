"""Recordings waiting in the spool: list them, deliver one, discard one (no Qt).

Used by ``meetcap spool`` and by the app's dialog. Every spooled session records its
destination (the server URL and an account fingerprint, or ``"builtin"`` for the app's
built-in server; see :class:`~meetcap.client.spool.SpoolMeta`) and a streamer delivers
only the sessions of its own destination. What it leaves behind (another server,
another account, a refused token, a session from before destinations were recorded)
waits here until a person delivers it (:func:`deliver`, possibly with new credentials)
or discards it (:func:`discard`).

Nothing here holds a session's cross-process lock longer than the operation: listing
only probes it (a session held by another meetcap process is reported as such and left
alone), :func:`deliver` and :func:`discard` refuse a session another process holds.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from meetcap.client.config import BUILTIN_DESTINATION, StreamerConfig, validate_url
from meetcap.client.spool import (
    LOCK_NAME,
    META_NAME,
    Spool,
    SpoolMeta,
    count_frames,
    cut_ranges,
    describe_lost,
    merge_ranges,
    meta_problem,
    spooled_frames,
    survey,
)
from meetcap.client.status import FinishResult, StreamStatus, format_duration
from meetcap.client.streamer import Streamer
from meetcap.constants import FRAME_MS
from meetcap.errors import ConfigError, RetryableError, StorageError

WHY_NOT_DELIVERED = "not yet delivered"
WHY_BUSY = "being delivered by another meetcap process"
WHY_UNKNOWN = "destination unknown"
WHY_UNREADABLE = f"its {META_NAME} cannot be read"

# waiting: will be delivered by the next start for its destination (or `deliver`)
# refused: the server refused it for good last time (why says how); deliver with new
#          credentials, or discard
# busy: another meetcap process holds it (recording or delivering it now)
# unknown_destination: recorded before destinations existed: deliver with a token
# damaged: part of its audio is damaged or missing on disk (why says which frames); the
#          rest is delivered as usual, the damaged frames as silence at their own place
# unreadable: its metadata is missing or damaged; it can only be discarded
PendingState = Literal[
    "waiting", "refused", "busy", "unknown_destination", "damaged", "unreadable"
]


class PendingNotFound(ConfigError):
    """No recording with that id waits in the spool."""


class PendingBusy(RetryableError):
    """Another meetcap process holds the recording (it is recording or delivering it)."""


@dataclass(frozen=True, slots=True)
class PendingRecording:
    """One recording waiting in the spool, as :func:`list_pending` found it.

    ``destination`` is the recorded key (None: unknown); ``url`` the server it was
    recorded for; ``account`` the account fingerprint (None for the built-in server or
    old sessions); ``frames`` the frames captured (``duration_s`` of audio), of which
    ``frames_acked`` the server already confirmed; ``session_id`` the server's session
    id once a welcome confirmed it (None before: the id the client chose for it may not
    be on the server); ``why`` in words why it waits (see :data:`PendingState`);
    ``refused_code`` the close code or HTTP status of the last refusal, if any;
    ``damage`` what of its audio is damaged or missing on disk, in words (None: nothing
    found; the state is then not "damaged"), also part of ``why``.
    """

    local_id: str
    state: PendingState
    why: str
    destination: str | None
    url: str | None
    account: str | None
    started_at: float | None
    frames: int
    duration_s: float
    frames_acked: int
    session_id: str | None
    refused_code: int | None = None
    refused_at: float | None = None
    path: str = ""
    damage: str | None = None

    @property
    def builtin(self) -> bool:
        """Recorded for the app's built-in server."""
        return self.destination == BUILTIN_DESTINATION

    @property
    def frames_waiting(self) -> int:
        return max(0, self.frames - self.frames_acked)

    def describe_destination(self) -> str:
        """Where it belongs, in words."""
        if self.builtin:
            return "the app's built-in server"
        if self.destination is None:
            return f"unknown (recorded for {self.url})" if self.url else "unknown"
        account = f" (account {self.account})" if self.account else ""
        return f"{self.url}{account}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["builtin"] = self.builtin
        data["frames_waiting"] = self.frames_waiting
        return data


def list_pending(spool_root: Path | str) -> list[PendingRecording]:
    """Every recording waiting in the spool at ``spool_root``, oldest first.

    Reads only: nothing is delivered, changed or (beyond a probe of a moment) locked.
    Sessions already ended and sessions with nothing to deliver are not listed.
    """
    root = Path(spool_root)
    if not root.is_dir():
        return []
    found = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        recording = _describe(directory)
        if recording is not None:
            found.append(recording)
    return sorted(found, key=lambda r: (r.started_at or 0.0, r.local_id))


def find_pending(spool_root: Path | str, local_id: str) -> PendingRecording:
    """The waiting recording ``local_id``; raises :class:`PendingNotFound`."""
    recording = _describe(_session_dir(Path(spool_root), local_id))
    if recording is None:
        raise PendingNotFound(
            f"recording {local_id!r} has nothing left to deliver (already delivered, or "
            "empty)"
        )
    return recording


def has_pending(
    spool_root: Path | str,
    destination_filter: str | Callable[[PendingRecording], bool] | None = None,
) -> bool:
    """Whether a recording waits that no other meetcap process is handling.

    ``destination_filter``: None (any), a destination key (only that destination), or a
    predicate on :class:`PendingRecording`.
    """
    for recording in list_pending(spool_root):
        if recording.state == "busy":
            continue
        if destination_filter is None:
            return True
        if callable(destination_filter):
            if destination_filter(recording):
                return True
        elif recording.destination == destination_filter:
            return True
    return False


def deliver(
    spool_root: Path | str,
    local_id: str,
    url: str | None = None,
    token: str | None = None,
    *,
    destination: str | None = None,
    timeout_s: float = 120.0,
    on_status: Callable[[StreamStatus], None] | None = None,
    streamer_options: Mapping[str, Any] | None = None,
) -> FinishResult:
    """Deliver one waiting recording and end it on the server; returns how it went.

    The target is ``url`` (default: the recorded one) with ``token``, and the
    destination ``destination`` (default: derived from ``url`` and ``token``, see
    :meth:`StreamerConfig.resolved_destination`). When the target differs from the
    recorded destination (new server, new token, a session of unknown destination), the
    recording is first re-bound to it, durably: from then on it belongs there (this is
    how a recording refused with a bad token is retried with new credentials). A token
    is always needed (meetcap never stores one): the error says what to pass.

    ``result.ok`` False (refused, or not confirmed within ``timeout_s``): the recording
    stays in the spool and ``result.message`` says why. Raises
    :class:`PendingNotFound` (no such id), :class:`PendingBusy` (another meetcap
    process holds it), :class:`~meetcap.errors.ConfigError` (missing or bad URL/token).
    ``on_status`` gets progress snapshots on the streamer's thread.
    """
    root = Path(spool_root)
    directory = _session_dir(root, local_id)
    try:
        meta = Spool.read_meta(directory)
    except (FileNotFoundError, ValueError, OSError, RecursionError) as exc:
        why = meta_problem(directory, None if isinstance(exc, FileNotFoundError) else exc)
        raise StorageError(
            f"recording {local_id} cannot be delivered: {why}; discard it with "
            f"`meetcap spool discard {local_id}`"
        ) from exc
    if meta.ended:
        raise PendingNotFound(f"recording {local_id} was already delivered")
    target_url = url
    if target_url is None:
        if meta.destination == BUILTIN_DESTINATION and destination != BUILTIN_DESTINATION:
            raise ConfigError(
                f"recording {local_id} belongs to the app's built-in server: open the meetcap "
                "app to deliver it, or pass --url URL --token TOKEN to send it to another "
                "server"
            )
        target_url = meta.url
    target_url = validate_url(target_url)
    if not token:
        account = f" (account {meta.account})" if meta.account else ""
        raise ConfigError(
            f"delivering recording {local_id} needs the token for {target_url}{account}: "
            "pass --token TOKEN, or --url URL --token TOKEN to send it to another server or "
            "account"
        )
    options = dict(streamer_options or {})
    config = StreamerConfig(
        url=target_url, token=token, spool_dir=root, destination=destination, **options
    )
    target = config.resolved_destination()
    if target != meta.destination:
        _rebind(directory, local_id, meta, target, config)
    streamer = Streamer(config, on_status, capture=False, pending_ids=[local_id])
    streamer.start()
    result = streamer.finish(timeout_s)
    if not result.earlier:
        # Damaged beyond delivery, another process took the lock between the re-bind and
        # the start, or it vanished.
        if not directory.exists():
            raise PendingNotFound(f"recording {local_id} is no longer in the spool")
        prefix = f"recording {local_id}: "
        for problem in streamer.status().spool_problems:
            if problem.startswith(prefix):
                raise StorageError(
                    f"recording {local_id} cannot be delivered: {problem[len(prefix):]}"
                )
        raise PendingBusy(f"recording {local_id} is {WHY_BUSY}; try again when it is done")
    return result.earlier[0]


def discard(spool_root: Path | str, local_id: str) -> None:
    """Delete a waiting recording from the spool for good (its audio is lost).

    Raises :class:`PendingNotFound` or :class:`PendingBusy`.
    """
    directory = _session_dir(Path(spool_root), local_id)
    try:
        meta = Spool.read_meta(directory)
    except (FileNotFoundError, ValueError, OSError):
        meta = SpoolMeta(local_id, 0.0, "")  # damaged: it can still be discarded
    try:
        session = Spool.lock(directory, meta)
    except OSError:
        # Its lock file cannot be opened (damaged): so nobody holds it either.
        shutil.rmtree(directory, ignore_errors=True)
        return
    if session is None:
        raise PendingBusy(f"recording {local_id} is {WHY_BUSY}; it was not discarded")
    session.remove()


# -- helpers


def _session_dir(root: Path, local_id: str) -> Path:
    name = str(local_id).strip()
    bad = not name or name in (".", "..") or "/" in name or "\\" in name
    directory = root / name
    if bad or not directory.is_dir():
        raise PendingNotFound(
            f"no recording {local_id!r} waits in the spool at {root} "
            "(`meetcap spool list` shows the ids)"
        )
    return directory


def _rebind(
    directory: Path, local_id: str, meta: SpoolMeta, target: str, config: StreamerConfig
) -> None:
    session = Spool.lock(directory, meta)
    if session is None:
        raise PendingBusy(f"recording {local_id} is {WHY_BUSY}; it was left as it is")
    try:
        session.rebind(target, config.url, config.account())
    finally:
        session.close(keep=False)  # releases the lock; the new meta is already on disk


def _describe(directory: Path) -> PendingRecording | None:
    try:
        meta = Spool.read_meta(directory)
    except FileNotFoundError:
        if not any(directory.glob("seg-*")):
            return None  # a crash inside new_session, before any frame; Spool.open cleans it
        return _unreadable(directory, None)
    except (ValueError, OSError) as exc:
        return _unreadable(directory, exc)
    if meta.ended:
        return None  # delivered; the next Spool.open removes the folder
    odd: list[str] = []
    try:
        busy = _held_elsewhere(directory, meta)
    except OSError as exc:  # nobody can hold a lock that cannot be opened
        busy = False
        odd.append(f"its {LOCK_NAME} file cannot be opened ({exc.strerror or exc})")
    damage = None
    if busy:
        # Being written or delivered right now: its files change under us (a segment
        # deleted after an ack would look like a hole), so they are not surveyed.
        frames = max(spooled_frames(directory)[1], meta.acked, meta.spooled_to) + 1
    else:
        # From the files' names and sizes (cheap; records are checked as they are read).
        found = survey(directory, meta.acked, meta.spooled_to)
        frames = found.last_seq + 1
        odd += found.odd
        damage = _damage_words(meta, found.holes, frames, odd)
    if frames == 0 and meta.server_session_id is None and not odd:
        return None  # nothing captured, nothing on the server
    state: PendingState
    if busy:
        state, why = "busy", WHY_BUSY
    elif meta.refused_reason:
        state, why = "refused", meta.refused_reason
    elif meta.destination is None:
        state, why = "unknown_destination", WHY_UNKNOWN
    elif damage:
        state, why = "damaged", WHY_NOT_DELIVERED
    else:
        state, why = "waiting", WHY_NOT_DELIVERED
    if damage:
        why = f"{damage}; {why}"
    if meta.lost_session is not None:
        # Re-opened as a new server session (SpoolSession.reopen_as_new): say so.
        # Its id only once a welcome confirmed it (until then the server may not have it).
        new_id = meta.server_session_id
        new = f"new session {new_id}" if new_id else "a new session"
        why = (
            f"the server lost session {meta.lost_session}: the audio from "
            f"{format_duration(meta.seq_offset * FRAME_MS / 1000)} on goes to {new}; {why}"
        )
    return PendingRecording(
        # The folder's name, which `deliver` and `discard` take (a session.json copied
        # from another folder may say otherwise).
        local_id=directory.name, state=state, why=why,
        destination=meta.destination, url=meta.url or None, account=meta.account,
        started_at=meta.started_at, frames=frames, duration_s=frames * FRAME_MS / 1000,
        frames_acked=meta.acked + 1, session_id=meta.server_session_id,
        refused_code=meta.refused_code, refused_at=meta.refused_at, path=str(directory),
        damage=damage,
    )


def _damage_words(meta: SpoolMeta, holes, frames: int, odd: list[str]) -> str | None:
    """What is known to be damaged, lost or odd in a session, in words (None: nothing)."""
    damaged = cut_ranges(merge_ranges((*meta.damaged, *holes)), -1, meta.acked)
    parts = [f"odd files in its folder, left alone: {'; '.join(odd)}"] if odd else []
    if meta.lost:
        parts.append(f"audio lost from the spool: {describe_lost(meta.lost)}")
    if damaged:
        parts.append(f"audio damaged in the spool: {describe_lost(damaged, sent=False)}")
        waiting = frames - (meta.acked + 1)
        if waiting > 0 and count_frames(damaged) >= waiting and meta.server_session_id is None:
            parts.append("nothing of it can be delivered: discard it")
    return "; ".join(parts) or None


def _unreadable(directory: Path, exc: BaseException | None) -> PendingRecording:
    frames = spooled_frames(directory)[1] + 1
    why = meta_problem(directory, exc)
    return PendingRecording(
        local_id=directory.name, state="unreadable", why=why, destination=None, url=None,
        account=None, started_at=None, frames=frames, duration_s=frames * FRAME_MS / 1000,
        frames_acked=0, session_id=None, path=str(directory), damage=why,
    )


def _held_elsewhere(directory: Path, meta: SpoolMeta) -> bool:
    """Probe the session's lock: taken and released at once (Spool.open retries a held
    lock for a moment, so this probe cannot make a delivering process skip it)."""
    session = Spool.lock(directory, meta)
    if session is None:
        return True
    session.close(keep=False)
    return False


def format_started(started_at: float | None) -> str:
    """A start time for people: local time, to the second."""
    if not started_at:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started_at))


__all__ = [
    "WHY_BUSY", "WHY_NOT_DELIVERED", "WHY_UNKNOWN", "PendingBusy", "PendingNotFound",
    "PendingRecording", "PendingState", "deliver", "discard", "find_pending", "format_duration",
    "format_started", "has_pending", "list_pending",
]
