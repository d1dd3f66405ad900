"""A loopback server on its own asyncio loop in a thread, for tests whose client is a
thread too (the streamer): the base of the fault proxy and the scripted server."""

from __future__ import annotations

import abc
import asyncio
import threading


class LoopThreadServer(abc.ABC):
    """``start()`` runs :meth:`listen` on a new loop; it listens, sets :attr:`port`, calls
    :meth:`ready` and returns when :meth:`stop` is called. Clients go to :attr:`url`."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def start(self) -> LoopThreadServer:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._thread.start()
        assert self._ready.wait(5), f"{type(self).__name__} did not start"
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)

    def ready(self, port: int) -> None:
        """Called by :meth:`listen` once it listens on ``port``."""
        self.port = port
        self._ready.set()

    async def stopped(self) -> None:
        """Returns when :meth:`stop` is called."""
        assert self._stop is not None
        await self._stop.wait()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.listen()

    @abc.abstractmethod
    async def listen(self) -> None:
        """Listen, call :meth:`ready`, ``await self.stopped()``, clean up."""
