"""Session state in Redis, shared by several server instances.

Keys (``meetcap:`` prefix; one Redis, not a Cluster: a script touches a session key and
its user's keys, which would live in different slots):

* ``meetcap:s:<session id>`` hash: user, confirmed, issued, epoch, created_at,
  started_at, ended. Expires ``session_ttl_s`` after its last create/resume/end.
* ``meetcap:u:<user>:connected`` sorted set: session id -> lease expiry (epoch seconds).
  Each instance refreshes the leases of the sessions it serves every few seconds; the
  slots of an instance that died expire by themselves after ``LEASE_S``.
* ``meetcap:u:<user>:new`` sorted set: session id -> creation time, for the per-minute cap.

Every read-check-write is ONE Lua script that names all its keys (Redis runs a script
atomically), so two instances resuming the same session at once are serialised: the
second sees the first's rotation and epoch. Times come from the calling instance
(``now``), so instances need synchronised clocks (NTP) for the minute window.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from meetcap.errors import ConfigError
from meetcap.redact import redact_text
from meetcap.server.state.base import (
    NEW_SESSION_WINDOW_S,
    LostRecord,
    SessionRecord,
    StateStore,
    StateUnavailable,
    recovered_epoch,
    refusal_for,
)

log = logging.getLogger(__name__)

PREFIX = "meetcap:"
LEASE_S = 30.0  # a connected-session slot outlives its instance by at most this
LEASE_REFRESH_S = LEASE_S / 3

# KEYS: session, connected, new. ARGV: user, session_id, issued, now, started_at,
# max_connected, per_minute, window_s, ttl_s, lease_until
_CREATE = """
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[8]))
if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[7]) then
  local oldest = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
  return {'too_many_new', tostring(tonumber(oldest[2]) + tonumber(ARGV[8]) - now)}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then
  return {'too_many_concurrent'}
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'confirmed', '', 'issued', ARGV[3], 'epoch', 0,
           'created_at', ARGV[4], 'started_at', ARGV[5], 'ended', 0)
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('ZADD', KEYS[3], now, ARGV[2])
redis.call('EXPIRE', KEYS[3], math.ceil(tonumber(ARGV[8])) + 1)
redis.call('ZADD', KEYS[2], ARGV[10], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[9])
return {'ok', '0', ARGV[4], ARGV[5]}
"""

# KEYS: session, connected. ARGV: user, token_hash, new_hash, now, max_connected, ttl_s,
# lease_until, session_id. The token rule is check_resume() in base.py.
_RESUME = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown_session'}
end
local s = redis.call('HMGET', KEYS[1], 'user', 'confirmed', 'issued', 'epoch', 'ended',
                     'created_at', 'started_at')
if s[1] ~= ARGV[1] then
  return {'forbidden'}
end
local confirmed = s[2]
if ARGV[2] == s[3] then
  confirmed = s[3]
elseif confirmed == '' or ARGV[2] ~= confirmed then
  return {'bad_resume_token'}
end
if s[5] == '1' then
  return {'session_ended'}
end
local now = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if not redis.call('ZSCORE', KEYS[2], ARGV[8]) and
   redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return {'too_many_concurrent'}
end
local epoch = tonumber(s[4]) + 1
redis.call('HSET', KEYS[1], 'confirmed', confirmed, 'issued', ARGV[3], 'epoch', epoch)
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return {'ok', tostring(epoch), s[6], s[7]}
"""

# KEYS: session, connected. ARGV: session_id, epoch
_RELEASE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch or epoch == ARGV[2] then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: session. ARGV: epoch, ttl_s, now
_END = """
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'ended', 1, 'ended_at', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


# Writes a session's record afresh and counts its connection (both scripts below).
# KEYS: session, connected. ARGV 1-9: user, confirmed, issued, epoch, created_at,
# started_at, ttl_s, lease_until, session_id.
_WRITE_RECORD = """
redis.call('HSET', KEYS[1], 'user', ARGV[1], 'confirmed', ARGV[2], 'issued', ARGV[3],
           'epoch', ARGV[4], 'created_at', ARGV[5], 'started_at', ARGV[6], 'ended', 0)
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[7])
"""

# The record vanished while a connection here holds the session: write it back as it was.
# KEYS: session, connected. ARGV: user, confirmed, issued, epoch, created_at, started_at,
# ttl_s, lease_until, session_id. Returns the epoch current afterwards.
_REINSTATE = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if epoch then
  return epoch
end
""" + _WRITE_RECORD + """
return ARGV[4]
"""

# A resume of a session whose record is gone but whose files this server holds.
# KEYS: session, connected. ARGV: user, confirmed, issued, epoch, created_at, started_at,
# ttl_s, lease_until, session_id, now, max_connected
_RECOVER = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[10]))
if not redis.call('ZSCORE', KEYS[2], ARGV[9]) and
   redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[11]) then
  return {'too_many_concurrent'}
end
""" + _WRITE_RECORD + """
return {'ok', ARGV[4], ARGV[5], ARGV[6]}
"""


_T = TypeVar("_T")
_P = ParamSpec("_P")


def _reachable(
    method: Callable[Concatenate[RedisStore, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[RedisStore, _P], Coroutine[Any, Any, _T]]:
    """Redis down or restarting: StateUnavailable with one sentence (the client is told
    and retries; the log gets one line, not a traceback per connection).

    Typed with the method's own parameters (ParamSpec), so the decorated methods keep
    the signatures StateStore declares and mypy checks them as overrides."""

    @functools.wraps(method)
    async def call(self: RedisStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        import redis.exceptions

        try:
            return await method(self, *args, **kwargs)
        except (OSError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise StateUnavailable(
                "the server's session store (Redis) is unreachable, retry shortly: "
                + redact_text(str(exc))[:120]
            ) from exc

    return call


def config_warnings(settings: Mapping[str, str]) -> list[str]:
    """What is unsafe in Redis's settings (CONFIG GET appendonly, save, maxmemory,
    maxmemory-policy) for meetcap's keys, in words. meetcap survives a loss (a session is
    recovered from its files), but the resume tokens and the caps are lost with it."""
    warnings = []
    appendonly = settings.get("appendonly", "").lower()
    save = settings.get("save", "").strip()
    if appendonly == "no" and not save:
        warnings.append(
            "Redis keeps nothing on disk (appendonly no, save \"\"): a Redis restart forgets "
            "every session's state; meetcap recovers open sessions from their files, but set "
            "appendonly yes (docs/server.md)"
        )
    elif appendonly == "no":
        warnings.append(
            f"Redis only saves snapshots (save {save!r}, appendonly no): a Redis restart "
            "loses the session state changed since the last one; set appendonly yes "
            "(docs/server.md)"
        )
    policy = settings.get("maxmemory-policy", "noeviction")
    if settings.get("maxmemory", "0") not in ("", "0") and policy != "noeviction":
        warnings.append(
            f"Redis may evict meetcap's keys when full (maxmemory {settings['maxmemory']}, "
            f"maxmemory-policy {policy}; meetcap's keys have expiry times, so volatile-* "
            "policies evict them too): set maxmemory-policy noeviction (docs/server.md)"
        )
    return warnings


def _session_key(session_id: str) -> str:
    return f"{PREFIX}s:{session_id}"


def _connected_key(user: str) -> str:
    return f"{PREFIX}u:{user}:connected"


def _new_key(user: str) -> str:
    return f"{PREFIX}u:{user}:new"


class RedisStore(StateStore):
    """See module doc. Needs the ``redis`` package (``pip install meetcap[redis]``)."""

    shared = True

    def __init__(
        self, url: str, *, max_sessions_per_user: int, new_sessions_per_minute: int,
        session_ttl_s: int,
    ) -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError as exc:
            raise ConfigError(
                "--redis needs the redis package: pip install 'meetcap[redis]'"
            ) from exc
        self.url = url
        self._max_connected = max_sessions_per_user
        self._per_minute = new_sessions_per_minute
        self._ttl_s = session_ttl_s
        try:
            pool = aioredis.BlockingConnectionPool.from_url(
                url, decode_responses=True, max_connections=32, timeout=10
            )
        except ValueError as exc:
            raise ConfigError(
                f"the Redis URL {redact_text(url)!r} is not valid: {redact_text(str(exc))}"
            ) from exc
        self._redis: Any = aioredis.Redis(connection_pool=pool)
        self._create = self._redis.register_script(_CREATE)
        self._resume = self._redis.register_script(_RESUME)
        self._release = self._redis.register_script(_RELEASE)
        self._end = self._redis.register_script(_END)
        self._reinstate = self._redis.register_script(_REINSTATE)
        self._recover = self._redis.register_script(_RECOVER)

    async def start(self) -> None:
        import redis.exceptions

        try:
            await self._redis.ping()
        except (OSError, redis.exceptions.RedisError) as exc:
            raise ConfigError(
                f"cannot reach Redis at {redact_text(self.url)}: {redact_text(str(exc))}"
            ) from exc
        await self._check_config()

    async def _check_config(self) -> None:
        """Warn in words when Redis may lose meetcap's keys (docs/server.md, "Redis")."""
        import redis.exceptions

        settings: dict[str, str] = {}
        try:
            for name in ("appendonly", "save", "maxmemory", "maxmemory-policy"):
                settings.update(await self._redis.config_get(name))
        except redis.exceptions.RedisError as exc:  # CONFIG disabled (managed Redis, ACLs)
            log.warning(
                "cannot read Redis's configuration (%s): make sure it keeps its data "
                "(appendonly yes) and never evicts meetcap's keys (maxmemory-policy "
                "noeviction); see docs/server.md", redact_text(str(exc)),
            )
            return
        for warning in config_warnings(settings):
            log.warning("%s", warning)

    async def close(self) -> None:
        await self._redis.aclose()

    @staticmethod
    def _record(session_id: str, user: str, reply: list[str]) -> SessionRecord:
        return SessionRecord(session_id, user, int(reply[1]), float(reply[2]), float(reply[3]))

    @_reachable
    async def create(
        self, user: str, session_id: str, token_hash: str, started_at_s: float, now_s: float
    ) -> SessionRecord:
        reply = await self._create(
            keys=[_session_key(session_id), _connected_key(user), _new_key(user)],
            args=[
                user, session_id, token_hash, repr(now_s), repr(started_at_s),
                self._max_connected, self._per_minute, NEW_SESSION_WINDOW_S, self._ttl_s,
                repr(now_s + LEASE_S),
            ],
        )
        if reply[0] == "too_many_new":
            raise refusal_for("too_many_new", session_id, int(float(reply[1]) * 1000) + 1)
        if reply[0] != "ok":
            if reply[0] == "exists":  # 128 random bits collided: practically never
                raise RuntimeError(f"session id {session_id} already exists")
            raise refusal_for(reply[0], session_id)
        return self._record(session_id, user, reply)

    @_reachable
    async def resume(
        self, user: str, session_id: str, token_hash: str, new_token_hash: str, now_s: float
    ) -> SessionRecord:
        reply = await self._resume(
            keys=[_session_key(session_id), _connected_key(user)],
            args=[
                user, token_hash, new_token_hash, repr(now_s), self._max_connected,
                self._ttl_s, repr(now_s + LEASE_S), session_id,
            ],
        )
        if reply[0] != "ok":
            raise refusal_for(reply[0], session_id)
        return self._record(session_id, user, reply)

    @_reachable
    async def release(self, user: str, session_id: str, epoch: int) -> None:
        await self._release(
            keys=[_session_key(session_id), _connected_key(user)], args=[session_id, epoch]
        )

    @_reachable
    async def mark_ended(self, session_id: str, epoch: int) -> bool:
        import time

        reply = await self._end(
            keys=[_session_key(session_id)], args=[epoch, self._ttl_s, repr(time.time())]
        )
        return bool(reply)

    @_reachable
    async def current_epochs(self, session_ids: Iterable[str]) -> dict[str, int | None]:
        ids = list(session_ids)
        if not ids:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hget(_session_key(session_id), "epoch")
            values = await pipe.execute()
        return {sid: (None if v is None else int(v)) for sid, v in zip(ids, values, strict=True)}

    @_reachable
    async def reinstate(self, record: SessionRecord, lost: LostRecord, now_s: float) -> int | None:
        reply = await self._reinstate(
            keys=[_session_key(record.session_id), _connected_key(record.user)],
            args=[
                record.user, lost.confirmed, lost.issued, record.epoch, repr(lost.created_at_s),
                repr(lost.started_at_s), self._ttl_s, repr(now_s + LEASE_S), record.session_id,
            ],
        )
        return int(reply)

    @_reachable
    async def recover(
        self, user: str, session_id: str, lost: LostRecord, now_s: float
    ) -> SessionRecord:
        reply = await self._recover(
            keys=[_session_key(session_id), _connected_key(user)],
            args=[
                user, lost.confirmed, lost.issued, recovered_epoch(now_s),
                repr(lost.created_at_s), repr(lost.started_at_s), self._ttl_s,
                repr(now_s + LEASE_S), session_id, repr(now_s), self._max_connected,
            ],
        )
        if reply[0] == "exists":  # written back meanwhile (another instance): a plain resume
            return await self.resume(user, session_id, lost.confirmed, lost.issued, now_s)
        if reply[0] != "ok":
            raise refusal_for(reply[0], session_id)
        return self._record(session_id, user, reply)

    @_reachable
    async def refresh_leases(self, attached: Mapping[str, Iterable[str]]) -> None:
        import time

        until = time.time() + LEASE_S
        async with self._redis.pipeline(transaction=False) as pipe:
            for user, session_ids in attached.items():
                mapping = {sid: until for sid in session_ids}
                if mapping:
                    pipe.zadd(_connected_key(user), mapping, xx=True)
            await pipe.execute()
