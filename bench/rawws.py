"""A lean WebSocket client for load generation (bench/server.py only).

A thousand websockets-library clients in one Python process cost about as much CPU as
the server under test, on a 2-core machine that would measure the load generator, not
the server. This client speaks the same bytes (RFC 6455) with almost no per-message
work: frames are built with a fixed header, and masked with an all-zero masking key
(a legal key value; the server still runs its unmasking step, so its work is
unchanged). Not for production: a real client must use an unpredictable key (RFC 6455
section 10.3), which meetcap.client does through websockets.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from collections.abc import Callable
from urllib.parse import urlsplit

_ZERO_KEY = b"\0\0\0\0"


def _frame(opcode: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + _ZERO_KEY + payload


class RawWebSocket(asyncio.Protocol):
    """One client connection. ``on_text(str)`` gets every text message; ``closed`` is a
    future with the close code (None when the TCP connection broke)."""

    def __init__(self, on_text: Callable[[str], None]) -> None:
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.open = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self._handshake_done = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        # See meetcap/server/app.py _READ_SIZE: 256 KiB reads cost an mmap each.
        if isinstance(getattr(transport, "max_size", None), int):
            transport.max_size = 64 * 1024

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self._handshake_done:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buffer[:end]).split(b"\r\n", 1)[0]
            del self.buffer[: end + 4]
            if b" 101 " not in status + b" ":
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                self.transport.close()
                return
            self._handshake_done = True
            self.open.set_result(None)
        buf = self.buffer
        while len(buf) >= 2:
            opcode, size = buf[0] & 0x0F, buf[1] & 0x7F
            offset = 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, offset = struct.unpack_from("!H", buf, 2)[0], 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, offset = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < offset + size:
                return
            payload = bytes(buf[offset : offset + size])
            del buf[: offset + size]
            if opcode == 0x1:
                self.on_text(payload.decode())
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                if not self.closed.done():
                    self.closed.set_result(code)
                self.transport.write(_frame(0x8, payload[:2]))
                self.transport.close()
            elif opcode == 0x9:
                self.transport.write(_frame(0xA, payload))

    def connection_lost(self, exc) -> None:
        if not self.open.done():
            self.open.set_exception(ConnectionError("connection lost during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)

    def send_text(self, text: str) -> None:
        self.transport.write(_frame(0x1, text.encode()))

    def send_binary(self, data: bytes) -> None:
        self.transport.write(_frame(0x2, data))


async def connect_raw(url: str, token: str, on_text: Callable[[str], None]) -> RawWebSocket:
    """Open ``url`` (ws://host:port/path) with a bearer token; returns once upgraded."""
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(
        lambda: RawWebSocket(on_text), parts.hostname, parts.port
    )
    key = base64.b64encode(os.urandom(16)).decode()
    protocol.transport.write(
        (
            f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    await protocol.open
    return protocol
