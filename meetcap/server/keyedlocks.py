"""One asyncio lock per key (a session id), kept only while someone holds or awaits it.

A ``defaultdict(asyncio.Lock)`` keeps a lock for every key ever asked about: a peer
probing random session ids would grow it without bound. Here an entry lives exactly
as long as a task is inside :meth:`KeyedLocks.hold` for its key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """``async with locks.hold(key):`` serialises the tasks that hold the same key."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1  # counted before the wait, so a waiter keeps the entry alive
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._entries[key]

    def busy(self, key: str) -> bool:
        """True while a task holds or waits for ``key``."""
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["KeyedLocks"]
