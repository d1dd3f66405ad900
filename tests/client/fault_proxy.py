"""A TCP proxy on loopback that breaks the path between client and server on command.

Runs its own asyncio loop in a thread (the tests and the streamer are threads too).
Faults: cut every connection after N more client bytes (mid-frame: the cut falls inside
a WebSocket message), stall (hold all data, keep the sockets open), chop (forward in
pieces of 1-7 bytes), and retarget (new connections go to another server).
"""

from __future__ import annotations

import asyncio
import random
import socket
import threading

from tests.support.loop_thread import LoopThreadServer


class FaultProxy(LoopThreadServer):
    """``start()``, point clients at :attr:`url`, break things, ``stop()``."""

    def __init__(self, target_port: int, seed: int = 0) -> None:
        super().__init__()
        self.target_port = target_port
        self.connections = 0
        self.cuts = 0
        self.chop = False
        self._rng = random.Random(seed)
        self._cut_after: int | None = None  # client->server bytes still allowed
        self._flowing = threading.Event()
        self._flowing.set()
        self._server: asyncio.base_events.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._stop: asyncio.Event | None = None
        self._resume: asyncio.Event | None = None

    # -- control (from the test thread)

    def retarget(self, port: int) -> None:
        """New connections go to ``port``; existing ones are left as they are."""
        self.target_port = port

    def cut_after(self, nbytes: int) -> None:
        """Abort the connection once ``nbytes`` more client->server bytes passed."""
        self._call(lambda: setattr(self, "_cut_after", nbytes))

    def cut_now(self) -> None:
        """Abort every connection (RST, no close frames)."""
        self._call(self._abort_all)

    def stall(self) -> None:
        """Hold every byte in both directions; the sockets stay open."""
        self._call(lambda: self._resume.clear())  # type: ignore[union-attr]

    def resume(self) -> None:
        self._call(lambda: self._resume.set())  # type: ignore[union-attr]

    def _call(self, fn) -> None:
        assert self._loop is not None
        done = threading.Event()

        def run() -> None:
            fn()
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(5)

    # -- the loop

    async def listen(self) -> None:
        self._resume = asyncio.Event()
        self._resume.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.ready(self._server.sockets[0].getsockname()[1])
        await self.stopped()
        self._server.close()
        self._abort_all()

    def _abort_all(self) -> None:
        for client, upstream in list(self._pairs):
            for writer in (client, upstream):
                writer.transport.abort()
        self._pairs.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()  # the server is down: the client sees a refused path
            return
        for w in (writer, up_writer):
            w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(
            self._pump(reader, up_writer, pair, upstream=True),
            self._pump(up_reader, writer, pair, upstream=False),
            return_exceptions=True,
        )
        self._pairs.discard(pair)
        for w in pair:
            w.transport.abort()

    async def _pump(self, reader, writer, pair, upstream: bool) -> None:
        assert self._resume is not None
        while True:
            data = await reader.read(65536)
            if not data:
                writer.transport.abort()
                return
            await self._resume.wait()
            if upstream and self._cut_after is not None:
                if len(data) >= self._cut_after:
                    writer.write(data[: self._cut_after])
                    self._cut_after = None
                    self.cuts += 1
                    for w in pair:
                        w.transport.abort()
                    return
                self._cut_after -= len(data)
            if self.chop:
                i = 0
                while i < len(data):
                    step = self._rng.randint(1, 7)
                    writer.write(data[i : i + step])
                    await writer.drain()
                    i += step
                    if self._rng.random() < 0.05:
                        await asyncio.sleep(0)
            else:
                writer.write(data)
                await writer.drain()
