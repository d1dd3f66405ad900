"""Who may open a stream: checked on the HTTP upgrade request, before the WebSocket opens.

Refusals (docs/protocol.md, "Handshake"): 404 for another path, 503 while the server
shuts down, 400 for a repeated Authorization or Origin header, 403 for a browser Origin
outside the allowed list, 401 for a missing or unknown bearer token. Nothing about
sessions is decided here; that needs the hello.
"""

from __future__ import annotations

import hashlib
import http
from collections.abc import Callable, Mapping

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from meetcap.protocol import STREAM_PATH
from meetcap.server.iplimits import PerIpLimits

# Headers this module reads that a request may carry once only (a repeated one made
# websockets' Headers.get raise: HTTP 500 and a traceback, before any token check).
_SINGLE_HEADERS = ("Authorization", "Origin")


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class Authenticator:
    """Maps bearer tokens to users without comparing secrets byte by byte.

    Tokens are looked up by their SHA-256: the time a lookup takes depends on the hash,
    which an attacker cannot steer towards a real token (no timing oracle).
    """

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._users = {_digest(token): user for token, user in tokens.items()}

    def user_for(self, headers: Headers) -> str | None:
        """The user whose token is in ``Authorization: Bearer <token>``, or None (also
        when the header is repeated: which one would be meant?)."""
        values = headers.get_all("Authorization")
        if len(values) != 1:
            return None
        scheme, _, token = values[0].partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._users.get(_digest(token.strip()))


def handshake_checker(
    auth: Authenticator,
    allowed_origins: tuple[str, ...],
    is_closing: Callable[[], bool],
    ip_limits: PerIpLimits | None = None,
) -> Callable[[ServerConnection, Request], Response | None]:
    """The ``process_request`` hook for websockets' ``serve``: None lets the upgrade go on."""

    def check(connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path != STREAM_PATH:
            return connection.respond(
                http.HTTPStatus.NOT_FOUND, f"no such endpoint; meetcap streams on {STREAM_PATH}\n"
            )
        if is_closing():
            response = connection.respond(
                http.HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down; retry soon\n"
            )
            response.headers["Retry-After"] = "1"
            return response
        peer = getattr(connection, "peer_ip", None)
        refusal = ip_limits.check_handshake(peer) if ip_limits and peer else None
        if refusal is not None:
            response = connection.respond(
                http.HTTPStatus.TOO_MANY_REQUESTS, f"{refusal.message}; retry later\n"
            )
            response.headers["Retry-After"] = str(refusal.retry_after_s)
            return response
        repeated = [name for name in _SINGLE_HEADERS if len(request.headers.get_all(name)) > 1]
        if repeated:
            return connection.respond(
                http.HTTPStatus.BAD_REQUEST,
                f"the request has more than one {' and '.join(repeated)} header\n",
            )
        origin = request.headers.get("Origin")
        # Desktop clients send no Origin; browsers always do, and only listed ones may connect.
        if allowed_origins and origin is not None and origin not in allowed_origins:
            return connection.respond(
                http.HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed\n"
            )
        if auth.user_for(request.headers) is None:
            response = connection.respond(
                http.HTTPStatus.UNAUTHORIZED,
                "missing or unknown token: send 'Authorization: Bearer <token>'\n",
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="meetcap"'
            return response
        return None

    return check
