"""A fault proxy that can also hold what the server sends while the client's bytes still
reach the server: the server stores frames (or creates a session) and answers, and the
client hears nothing of it. That is how a test puts the client exactly where the server
has done something the client does not know yet (acks not counted, a welcome not read).
"""

from __future__ import annotations

import asyncio

from tests.client.fault_proxy import FaultProxy


class ReplyHoldingProxy(FaultProxy):
    """:class:`FaultProxy` plus :meth:`hold_replies` / :meth:`release_replies`. The first
    reply of a connection (the HTTP upgrade answer) always passes, so a held connection
    still sends its hello. Bytes held on a connection that is cut meanwhile
    (:meth:`cut_now`) are dropped with it."""

    def __init__(self, target_port: int, seed: int = 0) -> None:
        super().__init__(target_port, seed)
        self._replies: asyncio.Event | None = None
        self._hold_from = 0

    async def listen(self) -> None:
        self._replies = asyncio.Event()
        self._replies.set()
        await super().listen()

    def hold_replies(self, from_connection: int = 0) -> None:
        """Hold what the server sends on connections numbered ``from_connection`` on
        (:attr:`connections` counts them from 1), and on every one by default."""

        def hold() -> None:
            assert self._replies is not None
            self._hold_from = from_connection
            self._replies.clear()

        self._call(hold)

    def release_replies(self) -> None:
        self._call(lambda: self._replies.set())  # type: ignore[union-attr]

    async def _pump(self, reader, writer, pair, upstream: bool) -> None:
        if upstream:
            return await super()._pump(reader, writer, pair, upstream)
        assert self._replies is not None
        number = self.connections  # this connection's: pumps start right after accept
        first = True
        while True:
            data = await reader.read(65536)
            if not data:
                writer.transport.abort()
                return
            if not first and number >= self._hold_from:
                await self._replies.wait()
            first = False
            if writer.transport.is_closing():
                return  # cut while held: what was held goes with the connection
            writer.write(data)
            await writer.drain()
