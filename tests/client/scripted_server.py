"""A scripted stand-in for meetcap-server, for client-only behaviours.

It speaks the real protocol through meetcap.protocol.ServerConnection over real
websockets on loopback, keeps sessions in memory, and can be told to misbehave in ways
the real server never does (ack a frame that was never sent, close every connection at
once, stop acking). Every test that proves delivery under faults runs against the real
meetcap-server instead (test_faults.py).
"""

from __future__ import annotations

import hashlib
import http
import secrets
import threading
from dataclasses import dataclass, field

from websockets.asyncio.server import ServerConnection as WebSocket
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

from meetcap.constants import FRAME_MS
from meetcap.protocol import (
    CloseCode,
    DuplicateReceived,
    Ended,
    EndReceived,
    FrameReceived,
    HelloReceived,
    ProtocolViolation,
    ServerConnection,
    Welcome,
)
from tests.support.loop_thread import LoopThreadServer


@dataclass
class ScriptedSession:
    session_id: str
    token: str
    frames: list[bytes] = field(default_factory=list)
    epoch: int = 0
    ended: bool = False


class ScriptedServer(LoopThreadServer):
    """Start with :meth:`start`, stop with :meth:`stop`; ``mode`` picks the misbehaviour.

    Modes: ``normal``; ``ack_unsent`` (the first ack names a frame 5 past the last
    received); ``close_at_once`` (every connection is closed with 1011 right after the
    handshake); ``no_acks`` (frames are taken, never acked); ``lose_ended`` (the session
    is ended on ``end`` but the connection drops before ``ended`` is sent; a later resume
    is refused with 4012 session_ended, as meetcap-server does); ``before_create`` (a
    server older than hello.create: a hello with a session id it does not know is
    refused with 4005 unknown_session whatever ``create`` says, as meetcap-server did).
    In every other mode a ``hello.create`` for an unknown id makes the session under the
    client's id and token, as meetcap-server does (docs/protocol.md 4).

    ``stale_held``: session id -> the ``held`` count to claim; a resume of such a session
    is refused with 4006 bad_resume_token carrying it (true or not: a server bug the
    client must survive). :meth:`drop_all` cuts every open connection (1006).
    """

    def __init__(self, token: str = "test-token", mode: str = "normal") -> None:
        super().__init__()
        self.token = token
        self.mode = mode
        self.sessions: dict[str, ScriptedSession] = {}
        self.connections = 0
        self.hellos: list = []  # every hello received, in order
        self.stale_held: dict[str, int] = {}
        self._open: set[WebSocket] = set()

    async def listen(self) -> None:
        async with serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_auth, compression=None
        ) as server:
            self.ready(next(iter(server.sockets)).getsockname()[1])
            await self.stopped()

    def _check_auth(self, connection, request):
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return connection.respond(http.HTTPStatus.UNAUTHORIZED, "bad token\n")
        return None

    async def _handle(self, ws: WebSocket) -> None:
        self.connections += 1
        self._open.add(ws)
        try:
            await self._converse(ws)
        except ConnectionClosed:
            pass  # the client went away (or was made to): nothing to clean up in memory
        finally:
            self._open.discard(ws)

    def drop_all(self) -> None:
        """Cut every open connection without a close frame (from any thread); returns
        once they are cut, so nothing sent after it reaches them."""
        done = threading.Event()

        def drop() -> None:
            for ws in list(self._open):
                ws.transport.abort()
            done.set()

        assert self._loop is not None
        self._loop.call_soon_threadsafe(drop)
        assert done.wait(5), "the scripted server's loop did not answer"

    async def _converse(self, ws: WebSocket) -> None:
        if self.mode == "close_at_once":
            await ws.close(1011, "scripted failure")
            return
        conn = ServerConnection()
        session: ScriptedSession | None = None
        acked_unsent = False
        async for message in ws:
            events = (
                conn.receive_text(message) if isinstance(message, str)
                else conn.receive_binary(message)
            )
            for event in events:
                if isinstance(event, ProtocolViolation):
                    await ws.send(event.error_text)
                    await ws.close(event.close_code)
                    return
                if isinstance(event, HelloReceived):
                    self.hellos.append(event.hello)
                    refusal = self._refusal(event.hello)
                    if refusal is not None:
                        code, text, extra = refusal
                        violation = conn.refuse(code, text, **extra)
                        await ws.send(violation.error_text)
                        await ws.close(violation.close_code)
                        return
                    session = self._attach(event.hello)
                    if session.ended:
                        violation = conn.refuse(CloseCode.SESSION_ENDED, "session has ended")
                        await ws.send(violation.error_text)
                        await ws.close(violation.close_code)
                        return
                    await ws.send(conn.accept(Welcome(
                        session_id=session.session_id, resume_token=session.token,
                        acked=len(session.frames) - 1, epoch=session.epoch,
                    )))
                elif isinstance(event, FrameReceived):
                    assert session is not None
                    session.frames.append(event.frame.pcm)
                    if self.mode == "no_acks":
                        continue
                    seq = event.frame.seq
                    if self.mode == "ack_unsent" and not acked_unsent:
                        acked_unsent = True
                        seq += 5
                    await ws.send(conn.ack(seq))
                elif isinstance(event, DuplicateReceived):
                    await ws.send(conn.ack(event.seq))
                elif isinstance(event, EndReceived):
                    assert session is not None
                    session.ended = True
                    if self.mode == "lose_ended":
                        ws.transport.abort()
                        return
                    pcm = b"".join(session.frames)
                    await ws.send(conn.ended(Ended(
                        session_id=session.session_id, frames=len(session.frames),
                        duration_ms=len(session.frames) * FRAME_MS,
                        sha256=hashlib.sha256(pcm).hexdigest(),
                    )))
                    await ws.close(1000)
                    return

    def _refusal(self, hello) -> tuple[CloseCode, str, dict] | None:
        """Why ``hello`` is refused (code, message, extra error fields), or None."""
        session_id = hello.session_id
        if session_id is None:
            return None
        if session_id in self.stale_held:
            held = self.stale_held[session_id]
            return CloseCode.BAD_RESUME_TOKEN, "stale resume token", {"held": held}
        if session_id not in self.sessions and (not hello.create or self.mode == "before_create"):
            return CloseCode.UNKNOWN_SESSION, "unknown session", {}
        return None

    def _attach(self, hello) -> ScriptedSession:
        if hello.session_id is None:
            session = ScriptedSession(secrets.token_urlsafe(16), secrets.token_urlsafe(16))
            self.sessions[session.session_id] = session
        elif hello.session_id not in self.sessions:  # hello.create (see _refusal)
            session = ScriptedSession(hello.session_id, hello.resume_token)
            self.sessions[session.session_id] = session
        else:
            session = self.sessions[hello.session_id]
            assert hello.resume_token == session.token, "client resumed with a stale token"
            session.token = secrets.token_urlsafe(16)
            session.epoch += 1
        return session
