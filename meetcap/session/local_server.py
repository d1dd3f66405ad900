"""The built-in server: where the app streams when no server address is set.

It is a real meetcap-server (:class:`~meetcap.server.EmbeddedServer`) on the loopback
interface, so a session recorded without any server set up still goes through the same
spool, acks and gapless storage, and lands as ``<session id>.wav`` in the user's data
folder. The token is random for each run of the app (nothing else on the machine can
stream into it); sessions belong to one fixed local user, so a session left in the spool
by an earlier run resumes under the new token.

No Qt here: the app runs :meth:`start`/:meth:`stop` off the GUI thread. The server
package is imported on the first start, not with this module, so the app opens its
window without loading the server's storage code.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from meetcap.errors import UsageError

if TYPE_CHECKING:
    from meetcap.server import EmbeddedServer

LOCAL_USER = "local"
# One client on the same machine: group commits every 200 ms instead of the server's
# 10 ms default (which suits many clients; docs/server.md) cut the fsyncs and wake-ups
# twentyfold and still ack well within the protocol's 500 ms.
FLUSH_INTERVAL_MS = 200
# After a stop, the port can stay busy for a moment (the old socket closing).
_REBIND_ATTEMPTS = 20
_REBIND_WAIT_S = 0.1


class LocalServer:
    """A restartable embedded server that keeps its port once it has one.

    ``port=0`` picks a free port at the first :meth:`start`; later starts reuse it, so a
    streamer that was connected reconnects to the same address (this is what lets the
    app, and its tests, stop and restart the server under a live session).
    """

    def __init__(self, data_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 on_failure: Callable[[str], None] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.on_failure = on_failure  # a sentence, when the server stops by itself
        self.host = host
        self.port = port
        self.token = secrets.token_urlsafe(24)
        self._server: EmbeddedServer | None = None
        self._transcribing = False  # the running server transcribes
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        """ws://127.0.0.1:<port>/v1/stream (valid once started)."""
        if self._server is not None:
            return self._server.url
        if not self.port:
            raise UsageError("the built-in server has not been started yet")
        return f"ws://{self.host}:{self.port}/v1/stream"

    @property
    def transcribing(self) -> bool:
        """The running server transcribes its sessions (issue 9)."""
        return self._server is not None and self._transcribing

    @property
    def partials(self) -> bool:
        """The running server transcribes with live partial text (its workers' config)."""
        server = self._server
        return (server is not None and server.config.transcription is not None
                and server.config.transcription.partials)

    def start(self, *, transcribe: bool = False, partials: bool = True) -> str:
        """Start (if not running) and return the URL. Raises StorageError (data folder
        not writable) or OSError (the port is taken by someone else).

        ``transcribe``: the server transcribes every session live (the packaged model);
        ``partials``: with live partial text (off: finals only, less CPU); a running
        server started with another choice is restarted. A model that cannot
        load does not stop recording: the server starts without transcription and
        ``on_failure`` says why."""
        with self._lock:
            if self._server is not None and (self._transcribing != transcribe or (
                    transcribe and self.partials != partials)):
                server, self._server = self._server, None
                server.stop()
            if self._server is not None:
                return self._server.url
            if transcribe:
                from meetcap.errors import ConfigError

                try:
                    return self._start_locked(transcribe=True, partials=partials)
                except ConfigError as exc:
                    if self.on_failure is not None:
                        self.on_failure(f"live transcription is off: {exc}")
            return self._start_locked(transcribe=False)

    def _start_locked(self, *, transcribe: bool, partials: bool = True) -> str:
        from meetcap.server import EmbeddedServer, ServerConfig
        from meetcap.server.transcription import TranscriptionConfig

        last_error: OSError | None = None
        for _ in range(_REBIND_ATTEMPTS if self.port else 1):
            config = ServerConfig(
                tokens={self.token: LOCAL_USER}, host=self.host, port=self.port,
                data_dir=self.data_dir, flush_interval_ms=FLUSH_INTERVAL_MS,
                transcription=TranscriptionConfig(partials=partials) if transcribe else None,
            )
            try:
                server = EmbeddedServer(config, on_failure=self.on_failure).start()
            except OSError as exc:
                last_error = exc
                time.sleep(_REBIND_WAIT_S)
                continue
            self._server = server
            self._transcribing = transcribe
            self.port = server.port
            return server.url
        assert last_error is not None
        raise last_error

    def stop(self) -> None:
        """Stop gracefully (clients are told to come back later); idempotent."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    def session_file(self, session_id: str) -> Path:
        """Where the server stores a session's audio."""
        return self.data_dir / f"{session_id}.wav"
