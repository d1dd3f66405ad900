"""Nothing the server keeps grows with sessions that have ended (issue 11: "server
memory flat").

Rounds of sessions of every kind a day brings (ended, dropped and resumed, abandoned,
taken over by a newer connection, refused, garbage) go through a real server over real
loopback websockets. Once a round's connections are gone, every table keyed by session,
connection or peer must be back at its empty count, no per-connection object may stay
alive, and no type of object may grow round after round by as much as one per session.
Object and entry counts, not RSS or time: they are exact.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import secrets

from meetcap.protocol import CloseCode
from meetcap.server import memtrace
from tests.server.inprocess import running
from tests.server.wire import Closed, Recording, Wire, run

SESSIONS_PER_KIND = 6
KINDS = 6
PER_ROUND = SESSIONS_PER_KIND * KINDS
ROUNDS = 4
# Types of which every connection or session makes its own; none may outlive it.
PER_CONNECTION_TYPES = (
    "ConnectionHandler", "SessionWriter", "BoundedConnection", "SessionRecord", "SessionMeta",
    "AudioClock", "Pacer", "Batch", "ServerConnection",
)


async def ended(url: str, seed: int) -> None:
    rec = Recording(seed=seed)
    rec.extend(5)
    wire = await rec.open(url)
    await rec.send_from_ack(wire)
    await wire.end(4)
    await wire.__aexit__()


async def dropped_then_resumed(url: str, seed: int) -> None:
    rec = Recording(seed=seed)
    rec.extend(6)
    wire = await rec.open(url)
    await rec.send_from_ack(wire, upto=3)
    await wire.wait_acked(2)
    await wire.__aexit__()  # the TCP connection drops, no end
    wire = await rec.open(url)
    await rec.send_from_ack(wire)
    await wire.end(5)
    await wire.__aexit__()


async def abandoned(url: str, seed: int) -> None:
    rec = Recording(seed=seed)
    rec.extend(3)
    wire = await rec.open(url)
    await rec.send_from_ack(wire)
    await wire.wait_acked(2)
    await wire.__aexit__()  # never comes back


async def taken_over(url: str, seed: int) -> None:
    rec = Recording(seed=seed)
    rec.extend(6)
    old = await rec.open(url)
    await rec.send_from_ack(old, upto=3)
    await old.wait_acked(2)
    new = await rec.open(url)  # resumes while the old connection is still up
    assert (await old.closed()).code == CloseCode.TAKEN_OVER
    await rec.send_from_ack(new)
    await new.end(5)
    await old.__aexit__()
    await new.__aexit__()


async def refused(url: str, seed: int) -> None:
    async with Wire(url) as wire:
        result = await wire.hello(secrets.token_urlsafe(16), "t" * 22)
        assert isinstance(result, Closed) and result.code == CloseCode.UNKNOWN_SESSION


async def garbage(url: str, seed: int) -> None:
    rec = Recording(seed=seed)
    wire = await rec.open(url)
    await wire.send_raw("{garbage")
    assert (await wire.closed()).code == CloseCode.BAD_MESSAGE
    await wire.__aexit__()


async def one_round(url: str, round_no: int) -> None:
    kinds = (ended, dropped_then_resumed, abandoned, taken_over, refused, garbage)
    assert len(kinds) == KINDS
    await asyncio.gather(*(
        kind(url, seed=round_no * 1000 + k * 100 + i)
        for k, kind in enumerate(kinds) for i in range(SESSIONS_PER_KIND)
    ))


async def quiet(server) -> None:
    """Wait until every connection of the round has detached (bounded)."""
    for _ in range(200):
        if not server.handlers and not server.attachments:
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # the last closes' callbacks


def counts(server) -> tuple[dict[str, int], collections.Counter[str]]:
    gc.collect()
    tables = memtrace.table_sizes(server)
    store = server.store
    tables["store connected slots"] = sum(len(s) for s in store._connected.values())
    objects = memtrace.object_counts()
    # A cancelled timer (a wait_for that finished early, a close timeout) stays in the
    # loop's queue, with its own Context, until its time comes: counted only when live.
    cancelled = sum(
        1 for o in gc.get_objects() if isinstance(o, asyncio.TimerHandle) and o.cancelled()
    )
    objects["TimerHandle"] -= cancelled
    objects["Context"] -= cancelled
    return tables, objects


def test_sessions_that_ended_leave_nothing_behind(tmp_path):
    async def scenario():
        async with running(
            tmp_path, max_sessions_per_user=1000, new_sessions_per_minute=100_000
        ) as server:
            await quiet(server)
            before, _ = counts(server)
            rounds = []
            for round_no in range(ROUNDS):
                await one_round(server.url, round_no)
                await quiet(server)
                rounds.append(counts(server))
            return before, rounds

    before, rounds = run(scenario(), timeout_s=120)
    per_session = (
        "handlers", "attachments", "attach locks", "ip open", "flusher dirty",
        "store records", "store locks", "store connected slots",
    )
    for tables, objects in rounds:
        assert {k: tables[k] for k in per_session} == dict.fromkeys(per_session, 0), tables
        assert tables["asyncio tasks"] == before["asyncio tasks"], (before, tables)
        assert tables["ip buckets"] <= 1, tables  # loopback's one bucket, if any
        assert {t: objects[t] for t in PER_CONNECTION_TYPES} == dict.fromkeys(
            PER_CONNECTION_TYPES, 0
        )
    # Anything kept per session grows by about PER_ROUND every round; what is merely in
    # flight (a closure in a pending callback) comes and goes. So a type is a leak when it
    # grew by half a round's sessions in each of the last two rounds.
    second, third, fourth = (objects for _, objects in rounds[1:])
    grown = {
        t: (third[t] - second[t], n - third[t]) for t, n in fourth.items()
        if min(third[t] - second[t], n - third[t]) >= PER_ROUND // 2
    }
    assert not grown, grown
