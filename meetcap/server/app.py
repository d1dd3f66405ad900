"""The meetcap server: websockets' asyncio server plus the parts every connection shares.

Start it with ``server = await serve(config)`` on a running loop (the CLI does that);
the desktop app runs one in a thread with :class:`meetcap.server.embedded.EmbeddedServer`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server
from websockets.asyncio.server import ServerConnection as WebSocket
from websockets.asyncio.server import serve as ws_serve

from meetcap import redact
from meetcap.protocol import STREAM_PATH, TRACKS_MESSAGE_BYTES, CloseCode
from meetcap.server.auth import Authenticator, handshake_checker
from meetcap.server.config import ServerConfig
from meetcap.server.flusher import Flusher
from meetcap.server.handler import ConnectionHandler
from meetcap.server.iplimits import PerIpLimits
from meetcap.server.keyedlocks import KeyedLocks
from meetcap.server.sendlimit import BoundedConnection
from meetcap.server.sink import LoggingSink, StoredBatch, TeeSink, call_sink
from meetcap.server.sink import log as sink_log
from meetcap.server.state import StateStore, open_store
from meetcap.server.storage import Batch, Storage

if TYPE_CHECKING:
    from meetcap.server.transcription.service import TranscriptionService

log = logging.getLogger(__name__)

_WATCH_INTERVAL_S = 0.5  # epoch watch (Redis) and keepalive checks
_SHUTDOWN_TIMEOUT_S = 10.0


# asyncio's socket transport reads with sock.recv(256 KiB) (a class attribute); an
# allocation that large goes through mmap/munmap in glibc, on every read of a 3 KB
# frame. 64 KiB stays on the heap: measured 17 us less kernel time per frame on this
# machine (bench/server.py), a quarter of the websockets cost per message.
_READ_SIZE = 64 * 1024


def _limit_read_size(transport: object) -> None:
    if isinstance(getattr(transport, "max_size", None), int):
        transport.max_size = _READ_SIZE  # type: ignore[attr-defined]


class _Stats:
    """The periodic stats line: load, write rounds, event-loop lag (for operators and
    bench/server.py). Off unless config.stats_interval_s > 0."""

    def __init__(self, server: MeetcapServer) -> None:
        self.server = server
        self.interval_s = server.config.stats_interval_s
        server.flusher.keep_round_times = self.interval_s > 0
        self.started = time.monotonic()
        self.frames = 0
        self.loop_lag_s = 0.0

    def maybe_report(self) -> None:
        now = time.monotonic()
        if self.interval_s <= 0 or now - self.started < self.interval_s:
            return
        flusher = self.server.flusher
        rounds = sorted(flusher.round_times_s)
        flusher.round_times_s.clear()
        p99 = rounds[min(len(rounds) - 1, int(len(rounds) * 0.99))] if rounds else 0.0
        log.info(
            "stats: %d connections, %d sessions attached, %.0f frames/s stored, %d rounds, "
            "round p99 %.1f ms max %.1f ms, loop lag max %.1f ms",
            len(self.server.handlers), len(self.server.attachments),
            (flusher.frames_stored - self.frames) / (now - self.started), len(rounds),
            p99 * 1000, (rounds[-1] if rounds else 0.0) * 1000, self.loop_lag_s * 1000,
        )
        self.started, self.frames, self.loop_lag_s = now, flusher.frames_stored, 0.0


class MeetcapServer:
    """A listening server. Read :attr:`url` / :attr:`port`; stop with :meth:`shutdown`."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.sink = config.sink if config.sink is not None else LoggingSink()
        self._quiet_default_sink = type(self.sink) is LoggingSink
        # Live transcription: its own worker processes, fed through the sink.
        self.transcription: TranscriptionService | None = None
        if config.transcription is not None:
            from meetcap.server.transcription.service import TranscriptionService

            self.transcription = TranscriptionService(
                config.transcription, config.data_dir, log_level=config.log_level
            )
            self.sink = TeeSink(self.transcription, self.sink)
            self._quiet_default_sink = False
        self.flusher = Flusher(
            config.flush_interval_ms / 1000, mode=config.fsync_mode,
            threads=config.fsync_threads, data_dir=config.data_dir, on_stored=self._on_stored,
        )
        self.storage = Storage(config.data_dir, self.flusher)
        self.store: StateStore = open_store(
            config.data_dir, config.redis_url,
            max_sessions_per_user=config.max_sessions_per_user,
            new_sessions_per_minute=config.new_sessions_per_minute,
            session_ttl_s=config.session_ttl_s,
        )
        self.auth = Authenticator(config.tokens)
        self.handlers: set[ConnectionHandler] = set()
        self.attachments: dict[str, ConnectionHandler] = {}
        self._attach_locks = KeyedLocks()
        self.ip_limits = PerIpLimits(
            max_connections=config.max_connections_per_ip,
            handshakes_per_s=config.handshakes_per_ip_per_s,
            handshake_burst=config.handshake_burst_per_ip, exempt=config.ip_limits_exempt,
        )
        self.closing = False
        self._ws_server: Server | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._closed = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None
        self.port = config.port

    @property
    def url(self) -> str:
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        return f"ws://{shown}:{self.port}{STREAM_PATH}"

    async def start(self) -> None:
        """Prepare storage and state, then listen. Raises ConfigError / StorageError / OSError."""
        if not self.config.tokens:
            log.warning("no tokens configured: every connection will be refused with 401")
        redact.install()  # websockets logs headers and frames at debug level: no secrets
        await asyncio.to_thread(self.storage.prepare)
        if self.transcription is not None:
            await self.transcription.start()  # a missing or broken model fails here
        await self.store.start()
        self.flusher.start()
        self._ws_server = await ws_serve(
            self._handle,
            self.config.host,
            self.config.port,
            process_request=handshake_checker(
                self.auth, self.config.allowed_origins, lambda: self.closing, self.ip_limits
            ),
            compression=None,  # audio does not compress; deflate costs memory per link
            # The tracks extension's audio message is the largest; the handler closes
            # anything else over 3,216 bytes with 1009 itself (meetcap.server.msgsize).
            max_size=TRACKS_MESSAGE_BYTES,
            # Our own keepalive (see _watch): a websockets ping waits behind the audio a
            # paced catch-up has not read yet and would time out a healthy connection.
            ping_interval=None,
            close_timeout=2.0,
            open_timeout=10.0,
            # Our own sends wait while 32 KiB are unsent; a peer that makes us owe more
            # than send_limit_bytes (a ping flood it never reads) is closed with 4013.
            write_limit=32 * 1024,
            create_connection=functools.partial(  # type: ignore[arg-type]
                BoundedConnection, send_limit_bytes=self.config.send_limit_bytes,
                ip_limits=self.ip_limits,
            ),
        )
        self.port = self._ws_server.sockets[0].getsockname()[1]
        self._watch_task = asyncio.create_task(self._watch(), name="meetcap-watch")
        log.info(
            "listening on %s (%s state, data in %s)", self.url,
            "Redis" if self.config.redis_url else "embedded", self.config.data_dir,
        )

    def attach_lock(self, session_id: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Serialises attaches of one session in this process (the store serialises them
        across processes), so the later epoch always registers last."""
        return self._attach_locks.hold(session_id)

    async def _handle(self, ws: WebSocket) -> None:
        assert ws.request is not None
        _limit_read_size(ws.transport)
        user = self.auth.user_for(ws.request.headers)
        if user is None:  # process_request already refused it; belt and braces
            await ws.close(CloseCode.POLICY_VIOLATION, "unauthorized")
            return
        handler = ConnectionHandler(self, ws, user)
        if isinstance(ws, BoundedConnection):
            ws.describe = lambda: f"session {handler.session_id or '(none)'} of {user}"
        self.handlers.add(handler)
        try:
            await handler.run()
        except Exception:
            log.exception("connection of %s failed", user)
            await ws.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.handlers.discard(handler)

    def _on_stored(self, batch: Batch) -> None:
        # The default sink only logs batches at debug level: skip building them (one
        # per frame under load) unless someone listens.
        if self._quiet_default_sink and not sink_log.isEnabledFor(logging.DEBUG):
            return
        meta = batch.writer.meta
        call_sink(
            self.sink, "frames_stored",
            StoredBatch(meta.user, meta.session_id, batch.first_seq, batch.data,
                        tuple(map(bool, batch.flags))),
        )

    async def _watch(self) -> None:
        """Every half second: keepalive pings for quiet connections; with Redis, take
        over sessions another instance resumed, and refresh our connected-session leases;
        every ``stats_interval_s``, a stats line in the log."""
        leases_at = 0.0
        failing = False
        stats = _Stats(self)
        while True:
            before = time.monotonic()
            await asyncio.sleep(_WATCH_INTERVAL_S)
            stats.loop_lag_s = max(stats.loop_lag_s, time.monotonic() - before - _WATCH_INTERVAL_S)
            try:
                stats.maybe_report()
                self._keepalive()
                if self.store.shared:
                    await self._watch_epochs()
                    now = time.monotonic()
                    if now - leases_at >= 10.0:
                        leases_at = now
                        await self._refresh_leases()
                if failing:
                    failing = False
                    log.warning("the connection watch works again")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Redis restarting fails every round for a while: one line, not a
                # traceback every half second (the traceback at debug level).
                if not failing:
                    failing = True
                    log.warning(
                        "the connection watch failed (will retry every %.1f s): %s",
                        _WATCH_INTERVAL_S, redact.redact_text(f"{type(exc).__name__}: {exc}"),
                    )
                log.debug("the connection watch failed", exc_info=True)

    def _keepalive(self) -> None:
        now = time.monotonic()
        idle_s = self.config.idle_timeout_s
        for handler in list(self.handlers):
            waiter = handler.ping_waiter
            if waiter is not None and not waiter.done():
                if now - handler.ping_sent_s > idle_s:
                    log.info("session %s: no pong for %.0f s, dropping", handler.session_id, idle_s)
                    handler.ws.transport.abort()
                continue
            if now - max(handler.last_receive_s, handler.ping_sent_s) > idle_s:
                handler.ping_sent_s = now
                asyncio.create_task(self._ping(handler))

    @staticmethod
    async def _ping(handler: ConnectionHandler) -> None:
        try:
            handler.ping_waiter = asyncio.ensure_future(await handler.ws.ping())
        except Exception:
            pass  # the connection is closing anyway

    async def _watch_epochs(self) -> None:
        attached = dict(self.attachments)
        if not attached:
            return
        epochs = await self.store.current_epochs(attached)
        for session_id, handler in attached.items():
            if self.attachments.get(session_id) is not handler or handler.record is None:
                continue
            epoch = epochs.get(session_id)
            if epoch is None:
                # The record is gone (Redis lost its data): no takeover, write it back.
                if await handler.reinstate_if_lost():
                    continue
            elif epoch == handler.epoch:
                continue
            log.info("session %s was resumed on another instance", session_id)
            await handler.take_over()

    async def _refresh_leases(self) -> None:
        by_user: dict[str, list[str]] = collections.defaultdict(list)
        for session_id, handler in self.attachments.items():
            by_user[handler.user].append(session_id)
        await self.store.refresh_leases(by_user)

    # ---------------------------------------------------------------- shutdown

    def request_shutdown(self) -> None:
        """Start a graceful shutdown (safe from a signal handler on the loop thread)."""
        if self._shutdown_task is None:
            self._shutdown_task = asyncio.create_task(self.shutdown())

    async def shutdown(self) -> None:
        """Stop listening; for every connection store what arrived, ack it, send
        going_away and close with 1012; then stop storage and state."""
        if self.closing:
            await self._closed.wait()
            return
        self.closing = True
        try:
            if self._ws_server is not None:
                self._ws_server.close(close_connections=False)
            handlers = list(self.handlers)
            if handlers:
                done, pending = await asyncio.wait(
                    [asyncio.create_task(h.go_away()) for h in handlers],
                    timeout=_SHUTDOWN_TIMEOUT_S,
                )
                for task in pending:
                    task.cancel()
            if self._ws_server is not None:
                # Connections that did not finish their close handshake in time.
                self._ws_server.close(close_connections=True)
                try:
                    await asyncio.wait_for(self._ws_server.wait_closed(), _SHUTDOWN_TIMEOUT_S)
                except asyncio.TimeoutError:
                    log.warning("some connections did not close in time")
            if self._watch_task is not None:
                self._watch_task.cancel()
                await asyncio.gather(self._watch_task, return_exceptions=True)
            await self.flusher.stop()
            await self.store.close()
            if self.transcription is not None:
                await self.transcription.stop()
            log.info("stopped")
        finally:
            self._closed.set()

    async def wait_closed(self) -> None:
        """Return once a shutdown has completed."""
        await self._closed.wait()


async def serve(config: ServerConfig) -> MeetcapServer:
    """Start a server on the running loop and return it once it listens.

    Raises ConfigError (bad settings, Redis unreachable), StorageError (data directory
    not writable) or OSError (port taken).
    """
    server = MeetcapServer(config)
    try:
        await server.start()
    except BaseException:
        await server.flusher.stop()
        with contextlib.suppress(Exception):
            await server.store.close()
        if server.transcription is not None:
            await server.transcription.stop()
        raise
    return server


__all__ = ["MeetcapServer", "serve"]
