"""Session state for one server process: memory, backed by one JSON file per session.

Each session's record lives in ``<data_dir>/state/<id>.json``, replaced atomically with
fsync + rename whenever it changes (create, resume, end; never per frame), so a kill -9
and restart finds every session exactly as its last welcome left it. Per-user caps
(connected sessions, new sessions a minute) are counted in memory: a restart empties
them, which is right for connections (they all dropped) and lenient for the minute window.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from meetcap.durable import atomic_write_json, read_json
from meetcap.errors import StorageError
from meetcap.server.keyedlocks import KeyedLocks
from meetcap.server.state.base import (
    NEW_SESSION_WINDOW_S,
    LostRecord,
    SessionRecord,
    StateStore,
    check_resume,
    recovered_epoch,
    refusal_for,
)

log = logging.getLogger(__name__)


class EmbeddedStore(StateStore):
    """See module doc. All methods run on one event loop; a per-session asyncio lock
    makes each check-and-write atomic across the awaits of its durable write."""

    shared = False

    def __init__(
        self, data_dir: Path, *, max_sessions_per_user: int, new_sessions_per_minute: int
    ) -> None:
        self.dir = Path(data_dir) / "state"
        self._max_connected = max_sessions_per_user
        self._per_minute = new_sessions_per_minute
        # Cached while a session is attached (a refused request keeps nothing).
        self._records: dict[str, dict[str, Any]] = {}
        self._locks = KeyedLocks()
        self._connected: dict[str, set[str]] = collections.defaultdict(set)
        self._created: dict[str, collections.deque[float]] = collections.defaultdict(
            collections.deque
        )

    async def start(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the state directory {self.dir}: {exc}") from exc

    def _path(self, session_id: str) -> Path:
        return self.dir / f"{session_id}.json"

    async def _load(self, session_id: str) -> dict[str, Any] | None:
        record = self._records.get(session_id)
        if record is None:
            try:
                record = await asyncio.to_thread(read_json, self._path(session_id))
            except (OSError, ValueError) as exc:  # an unreadable disk, a damaged file
                raise StorageError(
                    f"cannot read the state of session {session_id}: {_reason(exc)}"
                ) from exc
            if record is not None:
                self._records[session_id] = record
        return record

    async def _save(self, session_id: str, record: dict[str, Any]) -> None:
        """Write the record durably; StorageError (4011 to the client) if the disk is
        full or read-only: the session is as it was, the client may retry."""
        try:
            await asyncio.to_thread(atomic_write_json, self._path(session_id), record)
        except OSError as exc:
            raise StorageError(
                f"cannot store the state of session {session_id}: {_reason(exc)}"
            ) from exc
        self._records[session_id] = record

    def _check_connected(self, user: str, session_id: str) -> None:
        connected = self._connected[user]
        if session_id not in connected and len(connected) >= self._max_connected:
            raise refusal_for("too_many_concurrent", session_id)

    @staticmethod
    def _as_record(session_id: str, record: dict[str, Any]) -> SessionRecord:
        return SessionRecord(
            session_id, record["user"], record["epoch"], record["created_at"], record["started_at"]
        )

    async def create(
        self, user: str, session_id: str, token_hash: str, started_at_s: float, now_s: float
    ) -> SessionRecord:
        created = self._created[user]
        while created and created[0] <= now_s - NEW_SESSION_WINDOW_S:
            created.popleft()
        if len(created) >= self._per_minute:
            wait_ms = int((created[0] + NEW_SESSION_WINDOW_S - now_s) * 1000) + 1
            raise refusal_for("too_many_new", session_id, max(wait_ms, 1))
        self._check_connected(user, session_id)
        # Reserve both slots before the first await, so concurrent creates count them.
        created.append(now_s)
        self._connected[user].add(session_id)
        record = {
            "user": user, "confirmed": None, "issued": token_hash, "epoch": 0,
            "created_at": now_s, "started_at": started_at_s, "ended": False,
        }
        try:
            async with self._locks.hold(session_id):
                await self._save(session_id, record)
        except BaseException:
            self._connected[user].discard(session_id)
            raise
        return self._as_record(session_id, record)

    async def resume(
        self, user: str, session_id: str, token_hash: str, new_token_hash: str, now_s: float
    ) -> SessionRecord:
        async with self._locks.hold(session_id):
            record = await self._load(session_id)
            if record is None:
                raise refusal_for("unknown_session", session_id)
            try:
                outcome, confirmed = check_resume(
                    owner=record["user"], user=user, confirmed=record["confirmed"],
                    issued=record["issued"], ended=record["ended"], token_hash=token_hash,
                )
                if outcome is not None:
                    raise refusal_for(outcome, session_id)
                self._check_connected(user, session_id)
                updated = dict(record, confirmed=confirmed, issued=new_token_hash)
                updated["epoch"] = record["epoch"] + 1
                await self._save(session_id, updated)
            except BaseException:
                self._forget_unless_attached(session_id, record)
                raise
            self._connected[user].add(session_id)
            return self._as_record(session_id, updated)

    def _forget_unless_attached(self, session_id: str, record: dict[str, Any]) -> None:
        """A refused request caches nothing: drop the record unless a connection holds
        the session (its slot is counted for the owner)."""
        if session_id not in self._connected.get(record["user"], ()):
            self._records.pop(session_id, None)

    async def release(self, user: str, session_id: str, epoch: int) -> None:
        record = self._records.get(session_id)
        if record is None or record["epoch"] == epoch:
            self._connected[user].discard(session_id)
            # Nobody is attached: forget the cached record (it reloads from disk).
            if not self._locks.busy(session_id):
                self._records.pop(session_id, None)

    async def mark_ended(self, session_id: str, epoch: int) -> bool:
        async with self._locks.hold(session_id):
            record = await self._load(session_id)
            if record is None or record["epoch"] != epoch:
                return False
            await self._save(session_id, dict(record, ended=True, ended_at=time.time()))
            return True

    async def reinstate(self, record: SessionRecord, lost: LostRecord, now_s: float) -> int | None:
        async with self._locks.hold(record.session_id):
            stored = await self._load(record.session_id)
            if stored is not None:
                return int(stored["epoch"])
            await self._save(record.session_id, self._lost_record(record.user, record.epoch, lost))
            return record.epoch

    async def recover(
        self, user: str, session_id: str, lost: LostRecord, now_s: float
    ) -> SessionRecord:
        async with self._locks.hold(session_id):
            exists = await self._load(session_id) is not None
            if not exists:
                self._check_connected(user, session_id)
                record = self._lost_record(user, recovered_epoch(now_s), lost)
                await self._save(session_id, record)
                self._connected[user].add(session_id)
                return self._as_record(session_id, record)
        return await self.resume(user, session_id, lost.confirmed, lost.issued, now_s)

    @staticmethod
    def _lost_record(user: str, epoch: int, lost: LostRecord) -> dict[str, Any]:
        return {
            "user": user, "confirmed": lost.confirmed or None, "issued": lost.issued,
            "epoch": epoch, "created_at": lost.created_at_s, "started_at": lost.started_at_s,
            "ended": False,
        }

    async def current_epochs(self, session_ids: Iterable[str]) -> dict[str, int | None]:
        result: dict[str, int | None] = {}
        for session_id in session_ids:
            record = self._records.get(session_id)
            result[session_id] = None if record is None else record["epoch"]
        return result


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
