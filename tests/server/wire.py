"""A minimal client for the server tests: meetcap.protocol.ClientConnection over websockets.

Deliberately not meetcap.client: these tests prove the server against the protocol
alone. :class:`Wire` is one connection with helpers to send, wait for acks and read
the close; :class:`Recording` is the "record everything, then check" side of a test
(Jepsen style): every frame it ever made, to compare SHA-256 with what was stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from meetcap.constants import FRAME_BYTES
from meetcap.protocol import (
    Ack,
    ClientConnection,
    Ended,
    Error,
    GoingAway,
    MessageReceived,
    ProtocolViolation,
    Welcome,
)
from tests.support.server_proc import TOKEN


def run(coro, timeout_s: float = 60.0):
    """Run a test's coroutine on a fresh event loop, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def make_pcm(seq: int, seed: int = 0) -> bytes:
    """Deterministic, distinct audio for frame ``seq`` (so a doubled or lost frame shows)."""
    return random.Random(seed * 1_000_003 + seq).randbytes(FRAME_BYTES)


def wav_pcm(path: Path) -> bytes:
    """The PCM of a stored session, read through the wave module (checks the header)."""
    with wave.open(str(path), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        return wav.readframes(wav.getnframes())


@dataclass
class Closed:
    """How a connection ended: the close code and the last error/going_away, if any."""

    code: int | None
    error: Error | None = None
    going_away: GoingAway | None = None
    ended: Ended | None = None


class Wire:
    """One protocol connection. Use ``async with Wire(url) as w: await w.hello()``."""

    def __init__(self, url: str, token: str = TOKEN, **connect_options: object) -> None:
        self.url = url
        self.token = token
        self.connect_options = connect_options
        self.conn = ClientConnection()
        self.ws: WebSocket | None = None
        self.welcome: Welcome | None = None
        self.acked = -1
        self.error: Error | None = None
        self.going_away: GoingAway | None = None
        self.ended: Ended | None = None
        self.ack_times: dict[int, float] = {}
        self._reader: asyncio.Task[None] | None = None
        self._progress = asyncio.Event()

    async def __aenter__(self) -> Wire:
        self.ws = await connect(
            self.url, additional_headers={"Authorization": f"Bearer {self.token}"},
            compression=None, open_timeout=5, close_timeout=2, ping_interval=None,
            **self.connect_options,  # type: ignore[arg-type]
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            self.ws.transport.abort()

    async def hello(
        self, session_id: str | None = None, resume_token: str | None = None,
        started_at: float | None = None, timeout_s: float = 5.0,
    ) -> Welcome | Closed:
        """Send hello; return the welcome, or how the connection closed instead."""
        assert self.ws is not None
        started = time.time() if started_at is None else started_at
        await self.ws.send(self.conn.hello(session_id, resume_token, started))
        self._reader = asyncio.create_task(self._read())
        deadline = time.monotonic() + timeout_s
        while self.welcome is None and not self._reader.done():
            await self._wait_progress(deadline)
        return self.welcome if self.welcome is not None else await self.closed()

    async def _wait_progress(self, deadline: float) -> None:
        self._progress.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no progress from the server in time")
        try:
            await asyncio.wait_for(self._progress.wait(), remaining)
        except asyncio.TimeoutError:
            raise TimeoutError("no progress from the server in time") from None

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                events = (
                    self.conn.receive_text(message) if isinstance(message, str)
                    else self.conn.receive_binary(message)
                )
                for event in events:
                    if isinstance(event, ProtocolViolation):
                        raise AssertionError(f"the server broke the protocol: {event.error}")
                    assert isinstance(event, MessageReceived)
                    msg = event.message
                    if isinstance(msg, Welcome):
                        self.welcome, self.acked = msg, msg.acked
                    elif isinstance(msg, Ack):
                        self.acked = max(self.acked, msg.seq)
                        self.ack_times.setdefault(msg.seq, time.monotonic())
                    elif isinstance(msg, Error):
                        self.error = msg
                    elif isinstance(msg, GoingAway):
                        self.going_away = msg
                    elif isinstance(msg, Ended):
                        self.ended = msg
                self._progress.set()
        except ConnectionClosed:
            pass
        finally:
            self._progress.set()

    async def send_frame(self, seq: int, pcm: bytes, speech: bool = False) -> None:
        assert self.ws is not None
        await self.ws.send(self.conn.frame(seq, pcm, speech))

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def wait_acked(self, seq: int, timeout_s: float = 5.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.acked < seq:
            if self._reader is None or self._reader.done():
                raise ConnectionError(f"closed before frame {seq} was acked: {await self.closed()}")
            await self._wait_progress(deadline)

    async def end(self, last_seq: int, timeout_s: float = 10.0) -> Ended:
        assert self.ws is not None
        await self.ws.send(self.conn.end(last_seq))
        deadline = time.monotonic() + timeout_s
        while self.ended is None:
            if self._reader is None or self._reader.done():
                raise ConnectionError(f"closed without ended: {await self.closed()}")
            await self._wait_progress(deadline)
        return self.ended

    async def closed(self, timeout_s: float = 5.0) -> Closed:
        """Wait for the server to close; returns the close code and the last messages."""
        assert self.ws is not None
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
        await asyncio.wait_for(asyncio.shield(self._reader), timeout_s)
        return Closed(self.ws.close_code, self.error, self.going_away, self.ended)


@dataclass
class Recording:
    """Every frame a test client ever made for one session, and the session's handle.

    :meth:`deliver` sends frames from the server's ack on, over as many connections as
    it takes (a dropped connection, a killed server): nothing lost, nothing doubled.
    """

    seed: int = 0
    frames: list[bytes] = field(default_factory=list)
    session_id: str | None = None
    token: str | None = None
    connections: int = 0

    def extend(self, count: int) -> None:
        start = len(self.frames)
        self.frames.extend(make_pcm(seq, self.seed) for seq in range(start, start + count))

    def sha256(self) -> str:
        return hashlib.sha256(b"".join(self.frames)).hexdigest()

    async def open(self, url: str, token: str = TOKEN) -> Wire:
        """Connect, hello (create or resume) and keep the new resume token."""
        wire = Wire(url, token)
        await wire.__aenter__()
        result = await wire.hello(self.session_id, self.token)
        if isinstance(result, Closed):
            await wire.__aexit__()
            raise ConnectionError(f"hello refused: {result}")
        # The protocol: keep the fresh token before sending anything on this connection.
        self.session_id, self.token = result.session_id, result.resume_token
        self.connections += 1
        return wire

    async def send_from_ack(self, wire: Wire, upto: int | None = None, pace_s: float = 0.0) -> None:
        """Send frames acked+1 .. ``upto`` (default: all) on ``wire``."""
        assert wire.welcome is not None
        end = len(self.frames) if upto is None else upto
        for seq in range(wire.welcome.acked + 1, end):
            await wire.send_frame(seq, self.frames[seq], speech=seq % 10 < 3)
            if pace_s:
                await asyncio.sleep(pace_s)
