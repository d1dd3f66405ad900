"""A graceful shutdown that begins while a connection's hello is being attached answers
it with going_away and 1012, like every other connection, and logs no internal error.

Before the fix the attach went on after go_away had closed the protocol state: the
welcome could not be built ("accept() needs a pending hello, state is closed"), the
server logged a traceback and tried a 1011 (found by tests/server/test_no_growth.py's
rounds when one of them failed and the server shut down under them).
"""

from __future__ import annotations

import asyncio
import logging

from meetcap.protocol import CloseCode
from tests.server.inprocess import running
from tests.server.wire import Closed, Wire, run


def test_shutdown_during_an_attach_sends_going_away_without_an_internal_error(
    tmp_path, caplog
):
    async def scenario():
        async with running(tmp_path) as server:
            store = server.store
            entered, gate = asyncio.Event(), asyncio.Event()
            real_create = store.create

            async def held_create(*args, **kwargs):
                entered.set()
                await gate.wait()  # the shutdown starts while the attach is under way
                return await real_create(*args, **kwargs)

            store.create = held_create
            async with Wire(server.url) as wire:
                hello = asyncio.create_task(wire.hello(timeout_s=10))
                await asyncio.wait_for(entered.wait(), 5)
                shutdown = asyncio.create_task(server.shutdown())
                for _ in range(100):  # until go_away has been sent to this connection
                    if wire.going_away is not None:
                        break
                    await asyncio.sleep(0.02)
                gate.set()
                result = await hello
                await asyncio.wait_for(shutdown, 15)
            return result

    caplog.set_level(logging.INFO, logger="meetcap")
    result = run(scenario())
    assert isinstance(result, Closed), result
    assert result.code == CloseCode.SERVICE_RESTART
    assert result.going_away is not None
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, [r.getMessage() for r in failures]
