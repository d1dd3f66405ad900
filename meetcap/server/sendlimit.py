"""A bound on what one peer can make the server hold for it: the unsent-bytes limit.

websockets answers every ping with a pong as soon as the ping is read, without flow
control (``write_limit`` only pauses the server's own ``send()`` calls). A peer that
floods pings and never reads would make the server buffer every pong it owes, without
bound (measured: +33.5 MB for 300,000 pings). :class:`BoundedConnection` checks the
connection's unsent bytes after every read; beyond ``send_limit_bytes`` it stops reading
the peer, queues the JSON ``error`` and a close with ``not_reading`` (4013) behind what
is already queued, and drops the TCP connection if the peer has not read them within
5 s (docs/protocol.md, sections 2 and 8.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.protocol import OPEN

from meetcap.protocol import CloseCode, Error, encode_message
from meetcap.server.iplimits import CONNECTIONS_RETRY_S, PerIpLimits

log = logging.getLogger(__name__)

# How long a peer over the limit has to read the error and the close before its TCP
# connection is dropped (and what was queued for it freed).
DROP_AFTER_S = 5.0


_TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\nContent-Type: text/plain\r\n"
    b"Content-Length: 40\r\nConnection: close\r\n\r\ntoo many connections from this address\r\n"
    % CONNECTIONS_RETRY_S
)


class BoundedConnection(ServerConnection):
    """websockets' server connection, closing peers that leave too much unread."""

    def __init__(
        self, *args: Any, send_limit_bytes: int, ip_limits: PerIpLimits | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.send_limit_bytes = send_limit_bytes
        # Counts this connection against its address from accept to close (iplimits.py).
        self.ip_limits = ip_limits
        self.peer_ip: str | None = None
        self.not_reading = False  # over the limit: the peer is being closed
        # Who this peer is, for the log line (the server names the session once known).
        self.describe: Callable[[], str] = lambda: f"connection from {_peer(self)}"
        self._drop: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if self.not_reading:
            # Nothing this peer says matters any more (and a ping would owe a pong).
            self.transport.pause_reading()
            return
        super().data_received(data)
        unsent = self.transport.get_write_buffer_size()
        if unsent > self.send_limit_bytes:
            self._give_up(unsent)

    def _give_up(self, unsent: int) -> None:
        self.not_reading = True
        self.transport.pause_reading()  # TCP backpressure: the peer's sends stall
        message = (
            f"this client left {unsent} bytes unread (the limit is {self.send_limit_bytes}): "
            "it must read what the server sends (acks, pongs)"
        )
        log.info(
            "%s: closing with not_reading (%d): %s", self.describe(), CloseCode.NOT_READING,
            message,
        )
        if self.protocol.state is OPEN:
            # Behind everything already queued: a peer that starts reading gets them.
            error = Error(code="not_reading", message=message)
            self.protocol.send_text(encode_message(error).encode())
            self.protocol.send_close(CloseCode.NOT_READING, "not reading")
            self.send_data()
        if self.transport.can_write_eof():
            self.transport.write_eof()  # FIN once the queue is flushed
        # A peer that does not read the close either is cut off (its buffer freed). A
        # send() of the handler meanwhile waits for the same deadline, not its own.
        if self.close_deadline is None:
            self.close_deadline = self.loop.time() + DROP_AFTER_S
        self._drop = self.loop.call_later(DROP_AFTER_S, self.transport.abort)

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        peer = transport.get_extra_info("peername")
        if self.ip_limits is not None and isinstance(peer, tuple):
            self.peer_ip = str(peer[0])
            self.ip_limits.opened(self.peer_ip)
            if self.ip_limits.over_connections(self.peer_ip):
                # Refused at accept, before its request is read: one address cannot hold
                # sockets with half-sent requests (slowloris) until the open timeout.
                transport.write(_TOO_MANY_CONNECTIONS)
                transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._drop is not None:
            self._drop.cancel()
        if self.ip_limits is not None and self.peer_ip is not None:
            self.ip_limits.closed(self.peer_ip)
            self.peer_ip = None
        super().connection_lost(exc)


def _peer(connection: ServerConnection) -> str:
    try:
        address = connection.remote_address
    except Exception:  # noqa: BLE001 - only for a log line
        return "?"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


__all__ = ["DROP_AFTER_S", "BoundedConnection"]
