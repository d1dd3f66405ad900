"""A WebSocket peer written byte by byte, for tests that must misbehave below the level
a WebSocket library allows: flood pings, never read, send odd HTTP requests."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import time
from dataclasses import dataclass, field

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(opcode: int, payload: bytes, mask: bytes | None = None) -> bytes:
    """One final, masked client frame (RFC 6455 5.2)."""
    mask = os.urandom(4) if mask is None else mask
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    key = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(size, "big")
    return head + mask + masked


def upgrade_request(port: int, token: str, extra: str = "", path: str = "/v1/stream") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n{extra}\r\n"
    ).encode()


async def http_exchange(port: int, request: bytes, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """Send a raw HTTP request; return the response's status and its head."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
        return int(head.split(b" ", 2)[1]), head
    finally:
        writer.close()


@dataclass
class ServerFrames:
    """What a raw peer read from the server, parsed."""

    texts: list[str] = field(default_factory=list)
    pongs: int = 0
    close_code: int | None = None
    eof: bool = False


def parse_server_frames(data: bytes) -> ServerFrames:
    """Parse unmasked server frames; stops at a close frame or a truncated frame."""
    out = ServerFrames()
    pos = 0
    while pos + 2 <= len(data):
        opcode, size = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if size == 126:
            (size,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif size == 127:
            (size,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        if pos + size > len(data):
            break
        payload = data[pos : pos + size]
        pos += size
        if opcode == OP_TEXT:
            out.texts.append(payload.decode())
        elif opcode == OP_PONG:
            out.pongs += 1
        elif opcode == OP_CLOSE:
            out.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
            break
    return out


class RawPeer:
    """A raw TCP WebSocket client: upgrade, then frames written by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, token: str) -> RawPeer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(upgrade_request(port, token))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in head, head
        return cls(reader, writer)

    async def hello(self) -> None:
        hello = json.dumps({"type": "hello", "started_at": time.time()}).encode()
        self.writer.write(client_frame(OP_TEXT, hello))
        await self.writer.drain()

    async def read_all(self, timeout_s: float) -> bytes:
        """Read until EOF (or the connection breaks, or ``timeout_s`` passes)."""
        chunks: list[bytes] = []
        deadline = time.monotonic() + timeout_s
        try:
            while (left := deadline - time.monotonic()) > 0:
                chunk = await asyncio.wait_for(self.reader.read(1 << 20), left)
                if not chunk:
                    break
                chunks.append(chunk)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        return b"".join(chunks)

    def abort(self) -> None:
        self.writer.transport.abort()
