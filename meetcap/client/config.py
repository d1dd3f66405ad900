"""Settings of the streaming client, checked up front so mistakes surface before capture."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from meetcap.errors import ConfigError
from meetcap.protocol import STREAM_PATH
from meetcap.redact import REDACTED, redact_text

_URL_EXAMPLE = f"ws://localhost:8765{STREAM_PATH}"
# A bearer token goes into an HTTP header: no whitespace or control characters, or a
# pasted line break would split the request (header injection) instead of failing clearly.
_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{1,4096}")  # full-matched

# The destination of the app's built-in server: its port and token change on every run,
# but the sessions recorded for it belong to it.
BUILTIN_DESTINATION = "builtin"
# The key of the account fingerprint (a fixed label: the fingerprint only has to be
# stable and not reveal the token, see account_fingerprint).
_ACCOUNT_LABEL = b"meetcap account fingerprint v1"
_DEFAULT_PORTS = {"ws": 80, "wss": 443}


@dataclass
class StreamerConfig:
    """Where and how a :class:`~meetcap.client.streamer.Streamer` delivers frames.

    ``url`` is ``ws://`` or ``wss://``; a URL without a path gets the protocol's stream
    path (``/v1/stream``). ``spool_dir`` None means :func:`meetcap.paths.spool_dir` (one
    root for every destination). The timing fields are seconds; tests shorten them.

    ``destination`` is a stable key of where the audio belongs: every spooled session
    records it and is only ever delivered by a streamer whose destination is the same.
    None means derived from the URL and the token (:func:`destination_key`: the
    normalised URL and an account fingerprint, never the token itself). The app's
    built-in server passes :data:`BUILTIN_DESTINATION`, as its port and token change on
    every run.
    """

    url: str
    token: str
    spool_dir: Path | None = None
    backoff_base_s: float = 0.25
    backoff_cap_s: float = 5.0
    spool_cap_bytes: int = 2 * 1024**3
    client_name: str = "meetcap/0.1"
    # A connection welcomed and up this long resets the backoff.
    healthy_after_s: float = 10.0
    # A connection closed within this time of opening is a "quick failure".
    quick_failure_s: float = 2.0
    # Frames outstanding and no ack for this long: the path is dead (a stalled proxy, a
    # half-open TCP connection); drop it and reconnect. The server acks at least every
    # 500 ms while frames arrive (docs/protocol.md), so 10 s is 20 missed acks.
    ack_timeout_s: float = 10.0
    open_timeout_s: float = 5.0
    # How often the spool is fsynced while frames arrive: an OS crash or power cut loses
    # at most this much audio (an app crash loses nothing: every frame is written at once).
    fsync_interval_s: float = 0.1
    # Deliver (and end) sessions that an earlier run left in the spool, alongside the new one.
    deliver_pending: bool = True
    destination: str | None = None
    # Ask the server for the live session's transcript (docs/protocol.md, the transcript
    # extension; a server that does not transcribe ignores it).
    transcript: bool = False
    # Tracks mode (docs/protocol.md 3.5): the spool keeps both lanes of every frame and
    # sends them to a server that accepts the extension; any other gets the mono mix.
    tracks: bool = False

    def __post_init__(self) -> None:
        self.url = validate_url(self.url)
        self.token = validate_token(self.token)
        if self.spool_dir is not None:
            self.spool_dir = Path(self.spool_dir)
        if not 0 < self.backoff_base_s <= self.backoff_cap_s:
            raise ConfigError(
                f"backoff needs 0 < backoff_base_s <= backoff_cap_s, got {self.backoff_base_s} "
                f"and {self.backoff_cap_s} (example: 0.25 and 5.0)"
            )
        if self.spool_cap_bytes <= 0:
            raise ConfigError(f"spool_cap_bytes must be positive, got {self.spool_cap_bytes}")
        for name in ("ack_timeout_s", "open_timeout_s", "fsync_interval_s", "healthy_after_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.destination is not None and (
            not isinstance(self.destination, str) or not self.destination.strip()
        ):
            raise ConfigError(
                f"destination must be None or a non-empty key, got {self.destination!r}"
            )

    def __repr__(self) -> str:
        # A config lands in logs and tracebacks: never the token, nor a URL's password
        # or secret query parameters (meetcap.redact).
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "token":
                shown.append(f"token={REDACTED!r}")
            elif f.name == "url":
                shown.append(f"url={redact_text(value)!r}")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def resolved_spool_dir(self) -> Path:
        """The spool root this configuration uses."""
        if self.spool_dir is not None:
            return self.spool_dir
        from meetcap import paths

        return paths.spool_dir()

    def resolved_destination(self) -> str:
        """The destination key of the sessions this configuration records and delivers."""
        if self.destination is not None:
            return self.destination
        return destination_key(self.url, self.token)

    def account(self) -> str | None:
        """The account fingerprint recorded with new sessions (None for an explicit
        destination such as the built-in server, whose token changes on every run)."""
        if self.destination is not None:
            return None
        return account_fingerprint(self.url, self.token)


def destination_url(url: str) -> str:
    """``url`` normalised for comparing destinations: the stream path added, scheme and
    host in lower case, a default port (80 for ws, 443 for wss) dropped."""
    url = validate_url(url)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    port = parts.port
    netloc = host if port is None or port == _DEFAULT_PORTS.get(parts.scheme) else f"{host}:{port}"
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, ""))


def account_fingerprint(url: str, token: str) -> str:
    """16 hex digits naming the account ``token`` opens on the server at ``url``.

    An HMAC-SHA-256 (key: a fixed label) over the normalised URL and the token, cut to
    64 bits: the same token on the same server always gives the same fingerprint, the
    token cannot be read back from it, and the same token on another server gives
    another one. (Server-issued tokens are long random strings; a short guessable
    token could be found by trying candidates against the fingerprint, as it could
    against the server itself.)
    """
    message = destination_url(url).encode() + b"\0" + validate_token(token).encode()
    return hmac.new(_ACCOUNT_LABEL, message, hashlib.sha256).hexdigest()[:16]


def destination_key(url: str, token: str) -> str:
    """The derived destination of ``url`` + ``token``: ``<normalised url>#<fingerprint>``
    (a stream URL has no #fragment, so the two parts cannot be confused)."""
    return f"{destination_url(url)}#{account_fingerprint(url, token)}"


def validate_token(token: str) -> str:
    """Return ``token`` or raise :class:`ConfigError`: a bearer token goes into an HTTP
    header, so it must be printable text without spaces or line breaks."""
    if not isinstance(token, str) or not _TOKEN_PATTERN.fullmatch(token):
        raise ConfigError(
            "the server token must be non-empty printable text without spaces or line "
            "breaks (copy it again from the server's token list)"
        )
    return token


def validate_url(url: str) -> str:
    """Return the normalised stream URL or raise :class:`ConfigError` saying what is wrong."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"the server URL is empty (example: {_URL_EXAMPLE})")
    url = url.strip()
    parts = urlsplit(url)
    shown = redact_text(url)  # what error messages quote: no password, no secret query
    if parts.scheme not in ("ws", "wss"):
        hint = ""
        if parts.scheme in ("http", "https"):
            hint = f" (use {'wss' if parts.scheme == 'https' else 'ws'}:// for the same server)"
        raise ConfigError(
            f"the server URL must start with ws:// or wss://, got {shown!r}{hint}; "
            f"example: {_URL_EXAMPLE}"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"the server URL {shown!r} has an invalid port: {exc}") from exc
    if not parts.hostname:
        raise ConfigError(f"the server URL {shown!r} names no host; example: {_URL_EXAMPLE}")
    if parts.username or parts.password:
        raise ConfigError(
            f"the server URL {shown!r} carries a user name or password; pass the token with "
            "--token instead"
        )
    if parts.fragment:
        raise ConfigError(f"the server URL {shown!r} must not have a #fragment")
    del port  # validated above; urlsplit keeps it in netloc
    path = parts.path if parts.path not in ("", "/") else STREAM_PATH
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
