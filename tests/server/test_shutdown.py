"""SIGTERM: every client gets its final ack, going_away and close 1012; the session
resumes after the restart with nothing lost."""

from __future__ import annotations

import asyncio

from meetcap.protocol import CloseCode
from tests.server.conftest import FAST
from tests.server.wire import Recording, run


def test_sigterm_sends_going_away_and_1012_after_storing_everything(meetcap_server_factory):
    server = meetcap_server_factory(**dict(FAST, going_away_max_ms=800))
    rec = Recording(seed=40)
    rec.extend(50)

    async def scenario():
        wire = await rec.open(server.url)
        await rec.send_from_ack(wire, upto=30)
        await asyncio.sleep(0.05)
        code = await asyncio.to_thread(server.terminate)
        closed = await wire.closed()
        acked = wire.acked
        await wire.__aexit__()
        await asyncio.to_thread(server.start)
        wire = await rec.open(server.url)
        resumed_at = wire.welcome.acked
        await rec.send_from_ack(wire)
        ended = await wire.end(49)
        await wire.__aexit__()
        return code, closed, acked, resumed_at, ended

    code, closed, acked, resumed_at, ended = run(scenario())
    assert code == 0
    assert closed.code == CloseCode.SERVICE_RESTART
    assert closed.going_away is not None and 0 <= closed.going_away.retry_after_ms <= 800
    assert acked == 29  # every frame received before the shutdown was stored and acked
    assert resumed_at == 29
    assert ended.sha256 == rec.sha256()
