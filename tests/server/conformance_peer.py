"""A raw WebSocket peer that speaks docs/protocol.md byte by byte (no meetcap client code
decides what it sends), for the conformance and fuzz tests: it sends exactly the bytes a
test names and reports what the server answered before it closed."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from dataclasses import dataclass, field

from meetcap.constants import FRAME_BYTES
from tests.server.rawpeer import (
    OP_BINARY,
    OP_TEXT,
    client_frame,
    parse_server_frames,
    upgrade_request,
)
from tests.support.server_proc import TOKEN

FORMAT = {"encoding": "s16le", "sample_rate": 16000, "channels": 1, "frame_ms": 100}


def hello(**fields: object) -> bytes:
    body: dict[str, object] = {"type": "hello", "version": 1, "format": FORMAT}
    body.update(fields)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def frame(seq: int, pcm: bytes | None = None, *, flags: int = 0, crc_delta: int = 0) -> bytes:
    """A binary audio message written from section 3.1 of the spec."""
    pcm = bytes((seq + i) % 256 for i in range(FRAME_BYTES)) if pcm is None else pcm
    prefix = b"MC" + bytes([1, flags]) + seq.to_bytes(8, "big")
    crc = (zlib.crc32(pcm, zlib.crc32(prefix)) + crc_delta) & 0xFFFFFFFF
    return prefix + crc.to_bytes(4, "big") + pcm


@dataclass
class Answer:
    """What the server sent, parsed: JSON texts and the close code (None: no close frame)."""

    texts: list[dict] = field(default_factory=list)
    close_code: int | None = None

    def types(self) -> list[str]:
        return [t.get("type", "?") for t in self.texts]

    def first(self, kind: str) -> dict:
        return next(t for t in self.texts if t.get("type") == kind)


async def exchange(
    port: int, messages: list[bytes | tuple[int, bytes]], *, token: str = TOKEN,
    timeout_s: float = 5.0, until_welcome: bool = False, raw: bytes = b"",
) -> Answer:
    """Upgrade, send ``messages`` (bytes: text if they parse as UTF-8 JSON-ish, else give
    ``(opcode, payload)``), then read until the server's close frame (or its welcome)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(upgrade_request(port, token))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b" 101 " in head, head
        for message in messages:
            opcode, payload = message if isinstance(message, tuple) else (
                (OP_BINARY, message) if message[:2] == b"MC" else (OP_TEXT, message)
            )
            writer.write(client_frame(opcode, payload))
        writer.write(raw)
        await writer.drain()
        data = b""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 16), left)
            except (asyncio.TimeoutError, ConnectionError):
                break
            if not chunk:
                break
            data += chunk
            parsed = parse_server_frames(data)
            if parsed.close_code is not None:
                break
            if until_welcome and any('"welcome"' in t for t in parsed.texts):
                break
        parsed = parse_server_frames(data)
        return Answer([json.loads(t) for t in parsed.texts], parsed.close_code)
    finally:
        writer.transport.abort()
