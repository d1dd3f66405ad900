"""Run a meetcap server in a background thread (for the desktop app and tests).

The server gets its own asyncio loop in a daemon thread; the caller's thread (the Qt
GUI thread, say) only starts and stops it::

    server = EmbeddedServer(ServerConfig(tokens={token: "me"}, port=0, data_dir=d)).start()
    print(server.url)       # ws://127.0.0.1:<port>/v1/stream
    ...
    server.stop()           # graceful: going_away + 1012 to every client, storage flushed
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from meetcap.errors import UsageError
from meetcap.server.app import MeetcapServer, serve
from meetcap.server.config import ServerConfig

log = logging.getLogger(__name__)


class EmbeddedServer:
    """A :class:`MeetcapServer` on its own event-loop thread. Not reusable after stop().

    ``on_failure`` (optional) hears, on the server's thread, a sentence when the server
    stops by itself after it started (a bug, an unexpected error): the app shows it.
    """

    def __init__(self, config: ServerConfig,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._on_failure = on_failure
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: MeetcapServer | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def server(self) -> MeetcapServer:
        if self._server is None:
            raise UsageError("the embedded server is not running; call start() first")
        return self._server

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    def start(self, timeout_s: float = 30.0) -> EmbeddedServer:
        """Start the thread and return once the server listens.

        Raises what :func:`~meetcap.server.app.serve` raised (ConfigError, StorageError,
        OSError), or TimeoutError.
        """
        if self._thread is not None:
            raise UsageError("EmbeddedServer.start() may be called only once")
        self._thread = threading.Thread(target=self._run, name="meetcap-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError(f"the embedded server did not start within {timeout_s:g} s")
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Shut down gracefully and join the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        if self._server is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._server.request_shutdown)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"the embedded server did not stop within {timeout_s:g} s")

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._server = await serve(self.config)
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._server.wait_closed()
        except Exception as exc:  # noqa: BLE001 - told to the owner, never only logged
            log.exception("the embedded server stopped")
            if self._on_failure is not None:
                self._on_failure(f"the built-in server stopped ({type(exc).__name__}: {exc}); "
                                 "recorded audio waits in the spool")
