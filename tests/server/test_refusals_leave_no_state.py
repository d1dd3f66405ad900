"""A refused request leaves nothing behind (issue 11, finding 2): before the fix every
resume of an unknown session id left a lock in the embedded store for good (10,000
probes, 10,000 entries). Nothing the server keeps may grow with refused requests."""

from __future__ import annotations

import asyncio
import secrets

from meetcap.protocol import CloseCode
from tests.server.inprocess import running
from tests.server.wire import Recording, Wire, run
from tests.support.server_proc import OTHER_TOKEN

PROBES = 300


def per_session_tables(server) -> dict[str, int]:
    """Every in-memory table of the server and its store that is keyed by session."""
    store = server.store
    return {
        "store locks": len(store._locks),
        "store records": len(store._records),
        "attach locks": len(server._attach_locks),
        "attachments": len(server.attachments),
        "handlers": len(server.handlers),
    }


async def refused_resume(url: str, session_id: str, resume_token: str, **wire) -> int | None:
    async with Wire(url, **wire) as client:
        return (await client.hello(session_id, resume_token)).code


def test_resumes_of_unknown_sessions_leave_no_state(tmp_path):
    async def scenario():
        async with running(tmp_path) as server:
            codes = set()
            for _ in range(PROBES // 10):
                codes.update(await asyncio.gather(*(
                    refused_resume(server.url, secrets.token_urlsafe(16), "t" * 22)
                    for _ in range(10)
                )))
            await asyncio.sleep(0.2)  # let the handlers finish detaching
            return codes, per_session_tables(server)

    codes, tables = run(scenario())
    assert codes == {CloseCode.UNKNOWN_SESSION}
    assert tables == dict.fromkeys(tables, 0), tables


def test_refused_resumes_of_a_real_session_leave_no_state(tmp_path):
    """Wrong token, another user's session, an ended session: refused, nothing kept."""
    async def scenario():
        async with running(tmp_path) as server:
            live = Recording(seed=90)
            wire = await live.open(server.url)
            await wire.__aexit__()
            ended = Recording(seed=91)
            wire = await ended.open(server.url)
            await wire.end(-1)
            await wire.__aexit__()
            await asyncio.sleep(0.2)
            codes = []
            for _ in range(20):
                codes.append(await refused_resume(server.url, live.session_id, "w" * 22))
                codes.append(await refused_resume(
                    server.url, live.session_id, live.token, token=OTHER_TOKEN))
                codes.append(await refused_resume(server.url, ended.session_id, ended.token))
            await asyncio.sleep(0.2)
            tables = per_session_tables(server)
            # The refusals did not hurt the real session: it still resumes.
            wire = await live.open(server.url)
            await wire.end(-1)
            await wire.__aexit__()
            return set(codes), tables

    codes, tables = run(scenario())
    assert codes == {CloseCode.BAD_RESUME_TOKEN, CloseCode.FORBIDDEN, CloseCode.SESSION_ENDED}
    assert tables == dict.fromkeys(tables, 0), tables


def test_refused_creates_and_resumes_leave_no_files(tmp_path):
    """Nothing on disk either: a refused hello writes no state, audio or sidecar file."""
    def files() -> set[str]:
        return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()}

    async def scenario():
        async with running(tmp_path, max_sessions_per_user=1) as server:
            holder = Wire(server.url)
            await holder.__aenter__()
            await holder.hello()  # alice's only slot
            before = files()
            codes = set()
            for _ in range(20):
                async with Wire(server.url) as wire:
                    codes.add((await wire.hello()).code)
                codes.add(await refused_resume(server.url, secrets.token_urlsafe(16), "t" * 22))
            after = files()
            tables = per_session_tables(server)
            await holder.end(-1)
            await holder.__aexit__()
            return codes, before, after, tables

    codes, before, after, tables = run(scenario())
    assert codes == {CloseCode.TOO_MANY_SESSIONS, CloseCode.UNKNOWN_SESSION}
    assert after == before
    assert tables["store locks"] == tables["attach locks"] == 0
    assert tables["store records"] == tables["attachments"] == 1  # the holder's
