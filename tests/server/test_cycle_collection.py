"""The command-line server frees finished connections' objects within a minute, though
its collector thresholds leave the oldest generation uncollected for long (issue 11,
"server memory flat").

Every connection's objects end in reference cycles (websockets' connection and tasks,
asyncio futures, the handler's closures), freed only by the cyclic collector. The CLI
raises the collector's thresholds and freezes startup objects (cli.py), so those cycles
waited in the oldest generation: the single-instance soak grew 1.2-2 MB a minute.
Here the collector is off while real sessions run (what the raised thresholds amount to
between rare full collections): the objects are still alive afterwards, and one round of
the server's own periodic collection (cli.collect_cycles) frees every one of them.
Counts of objects, not RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc

from meetcap.server import cli, memtrace
from tests.server.inprocess import running
from tests.server.test_no_growth import PER_CONNECTION_TYPES, one_round, quiet
from tests.server.wire import run


def alive(objects) -> dict[str, int]:
    return {t: objects[t] for t in PER_CONNECTION_TYPES if objects[t]}


def test_periodic_collection_frees_every_finished_connection(tmp_path):
    async def scenario():
        async with running(
            tmp_path, max_sessions_per_user=1000, new_sessions_per_minute=100_000
        ) as server:
            await quiet(server)
            gc.collect()
            gc.disable()
            try:
                await one_round(server.url, 0)
                await quiet(server)
                left = alive(memtrace.object_counts())  # get_objects does not collect
                collector = asyncio.create_task(cli.collect_cycles(interval_s=0.05))
                await asyncio.sleep(0.2)  # a few of its rounds
                collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collector
                after = alive(memtrace.object_counts())
            finally:
                gc.enable()
            return left, after

    left, after = run(scenario())
    assert left.get("ConnectionHandler", 0) > 0, left  # the cycles this is about
    assert after == {}, after
