"""Session state behind one interface (:class:`StateStore`), two backends.

* :class:`~meetcap.server.state.embedded.EmbeddedStore` - one server process, no
  services: one small JSON file per session in the data directory, replaced atomically.
* :class:`~meetcap.server.state.redis.RedisStore` - several instances sharing one Redis;
  every read-check-write is one Lua script naming all its keys.

Use :func:`open_store` to get the one the configuration asks for.
"""

from __future__ import annotations

from meetcap.server.state.base import (
    LostRecord,
    Refusal,
    SessionRecord,
    StateStore,
    StateUnavailable,
    hash_token,
    new_session_id,
    new_token,
)


def open_store(
    data_dir, redis_url: str | None, *, max_sessions_per_user: int, new_sessions_per_minute: int,
    session_ttl_s: int,
) -> StateStore:
    """The embedded store in ``data_dir``, or the Redis store when ``redis_url`` is set.

    The redis package is imported only in the second case.
    """
    if redis_url:
        from meetcap.server.state.redis import RedisStore

        return RedisStore(
            redis_url, max_sessions_per_user=max_sessions_per_user,
            new_sessions_per_minute=new_sessions_per_minute, session_ttl_s=session_ttl_s,
        )
    from meetcap.server.state.embedded import EmbeddedStore

    return EmbeddedStore(
        data_dir, max_sessions_per_user=max_sessions_per_user,
        new_sessions_per_minute=new_sessions_per_minute,
    )


__all__ = [
    "LostRecord", "Refusal", "SessionRecord", "StateStore", "StateUnavailable", "hash_token",
    "new_session_id", "new_token", "open_store",
]
