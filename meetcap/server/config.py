"""Settings of one meetcap-server instance, and the bearer tokens it accepts.

:class:`ServerConfig` is what both the command line (:mod:`.cli`) and Python callers
(the desktop app's embedded server, tests) build; every limit of docs/protocol.md that
an operator may tune is a field here with its unit in the name.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from meetcap import paths
from meetcap.errors import ConfigError

if TYPE_CHECKING:
    from meetcap.server.sink import Sink
    from meetcap.server.transcription import TranscriptionConfig

log = logging.getLogger(__name__)

TOKENS_ENV = "MEETCAP_TOKENS"
# User names end up in Redis keys, log lines and sidecar files: keep them plain.
# Both full-matched: "$" would also accept a value that ends in a newline.
_USER_PATTERN = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_TOKEN_PATTERN = re.compile(r"[\x21-\x7e]{8,256}")  # printable ASCII, no spaces
FsyncMode = Literal["file", "syncfs"]


def default_data_dir() -> Path:
    """Where sessions are stored when no --data-dir is given: the sessions folder of
    the user's data root (meetcap/paths.py), the built-in server's folder too."""
    return paths.sessions_dir()


@dataclass
class ServerConfig:
    """Everything one server instance needs. Only ``tokens`` has no usable default.

    ``tokens`` maps each accepted bearer token to its user name. ``port`` 0 picks a free
    port (read it back from the running server). ``redis_url`` None keeps the session
    state embedded in ``data_dir``; with a URL, several instances sharing that Redis and
    the same ``data_dir`` serve the same sessions (docs/protocol.md, "Deployment").
    """

    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)  # secrets
    host: str = "127.0.0.1"
    port: int = 8765
    data_dir: Path = field(default_factory=default_data_dir)
    redis_url: str | None = None
    allowed_origins: tuple[str, ...] = ()
    # Flood rule: a session's audio may run ahead of the wall clock since it started by
    # at most this much (network jitter, a client's send buffer).
    realtime_slack_s: float = 2.0
    # A session's clock may start this long before the server created it, when the
    # client says (hello.started_at) it captured audio while the server was unreachable.
    offline_grace_s: float = 30.0
    # Catch-up after a reconnect is read at most this many times real time per session.
    catchup_x: float = 4.0
    max_sessions_per_user: int = 8  # connected at the same time
    new_sessions_per_minute: int = 20  # per user
    # Group commit: one write+fsync round for every session with new frames, at most
    # this often. Acks follow each round, so this bounds ack latency from below.
    flush_interval_ms: int = 10
    fsync_mode: FsyncMode = "file"
    fsync_threads: int = 8
    hello_timeout_s: float = 10.0
    # A connection with no message for this long gets a ping; no pong in as long: dropped.
    idle_timeout_s: float = 20.0
    going_away_max_ms: int = 2000
    # How long a resume waits for another instance to let go of the session's file.
    takeover_wait_s: float = 5.0
    session_ttl_s: int = 7 * 24 * 3600  # Redis keeps idle session state this long
    max_pending_frames: int = 100  # received but not yet stored, per connection
    # The tracks extension (docs/protocol.md 3.5): accept two-lane frames from clients
    # that offer them (off: answer like a server that does not know the extension).
    accept_tracks: bool = True
    # Bytes the server may hold unsent for one connection before it closes the peer with
    # not_reading (4013). What it sends is small (acks of ~25 bytes, pongs): reaching
    # this needs the kernel's socket buffers full too, a peer that stopped reading.
    send_limit_bytes: int = 128 * 1024
    # Per peer address (iplimits.py; 0 turns a limit off): connections open at once, and
    # upgrade requests a second with bursts; beyond either HTTP 429. Exempt networks
    # (loopback: a TLS proxy on this host, the desktop app) are not limited.
    max_connections_per_ip: int = 64
    handshakes_per_ip_per_s: float = 5.0
    handshake_burst_per_ip: int = 30
    ip_limits_exempt: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    stats_interval_s: float = 0.0  # log a stats line this often (0: never)
    sink: Sink | None = None
    # Live transcription of every session (meetcap/server/transcription); None: off.
    transcription: TranscriptionConfig | None = None
    log_level: str = "info"

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        self.allowed_origins = tuple(self.allowed_origins)
        self.ip_limits_exempt = tuple(self.ip_limits_exempt)
        self.tokens = dict(self.tokens)
        checks = [
            (0 <= self.port <= 65535, "port must be 0-65535 (0 picks a free port)"),
            (self.realtime_slack_s >= 0, "realtime_slack_s must be >= 0"),
            (self.offline_grace_s >= 0, "offline_grace_s must be >= 0"),
            (self.catchup_x >= 1, "catchup_x must be >= 1 (1 = real time)"),
            (self.max_sessions_per_user >= 1, "max_sessions_per_user must be >= 1"),
            (self.new_sessions_per_minute >= 1, "new_sessions_per_minute must be >= 1"),
            (1 <= self.flush_interval_ms <= 500, "flush_interval_ms must be 1-500"),
            (self.fsync_mode in ("file", "syncfs"), "fsync_mode must be 'file' or 'syncfs'"),
            (self.fsync_threads >= 1, "fsync_threads must be >= 1"),
            (self.hello_timeout_s > 0, "hello_timeout_s must be > 0"),
            (self.idle_timeout_s > 0, "idle_timeout_s must be > 0"),
            (self.going_away_max_ms >= 0, "going_away_max_ms must be >= 0"),
            (self.max_pending_frames >= 1, "max_pending_frames must be >= 1"),
            (self.send_limit_bytes >= 16 * 1024, "send_limit_bytes must be >= 16384"),
            (self.max_connections_per_ip >= 0, "max_connections_per_ip must be >= 0 (0: off)"),
            (self.handshakes_per_ip_per_s >= 0, "handshakes_per_ip_per_s must be >= 0 (0: off)"),
            (self.handshake_burst_per_ip >= 0, "handshake_burst_per_ip must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        for token, user in self.tokens.items():
            check_token_pair(user, token, "the token list")
        for network in self.ip_limits_exempt:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError as exc:
                raise ConfigError(
                    f"ip_limits_exempt: {network!r} is not a network (example: 10.0.0.0/8)"
                ) from exc


def check_token_pair(user: str, token: str, where: str) -> None:
    """Raise ConfigError unless ``user`` and ``token`` are usable (``where`` names the source)."""
    if not _USER_PATTERN.fullmatch(user):
        raise ConfigError(
            f"{where}: user name {user!r} must be 1-64 letters, digits or _ . @ + -"
        )
    if not _TOKEN_PATTERN.fullmatch(token):
        raise ConfigError(
            f"{where}: the token of user {user!r} must be 8-256 printable characters without "
            "spaces (generate one with: "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))')"
        )


def _add(tokens: dict[str, str], user: str, token: str, where: str) -> None:
    check_token_pair(user, token, where)
    if token in tokens and tokens[token] != user:
        raise ConfigError(f"{where}: the same token is given to {tokens[token]!r} and {user!r}")
    tokens[token] = user


def parse_tokens_file(path: Path) -> dict[str, str]:
    """Read ``<user> <token>`` lines (blank lines and ``#`` comments skipped): token -> user.

    Warns (one log line, as ssh does for a key) when other users may read the file.
    """
    try:
        data = Path(path).read_bytes()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror or exc}") from exc
    if os.name == "posix" and stat.S_ISREG(mode) and mode & 0o077:
        log.warning(
            "the tokens file %s is accessible by other users (mode %04o): anyone who can "
            "read it can stream as any user in it; run: chmod 600 %s",
            path, stat.S_IMODE(mode), path,
        )
    tokens: dict[str, str] = {}
    for number, raw_bytes in enumerate(data.splitlines(), 1):
        try:
            raw = raw_bytes.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{path} line {number}: not UTF-8 text") from None
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(
                f"{path} line {number}: expected '<user> <token>', got {len(parts)} words"
            )
        _add(tokens, parts[0], parts[1], f"{path} line {number}")
    return tokens


def parse_tokens_env(value: str) -> dict[str, str]:
    """Parse ``user:token,user2:token2`` (the MEETCAP_TOKENS variable): token -> user."""
    tokens: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        user, sep, token = item.partition(":")
        if not sep:
            # Not quoted: an item without its user is most likely a bare token.
            raise ConfigError(f"{TOKENS_ENV}: expected 'user:token' pairs, got an item without ':'")
        _add(tokens, user, token, TOKENS_ENV)
    return tokens


def load_tokens(
    files: Iterable[Path] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Merge the tokens of every file and of MEETCAP_TOKENS; token -> user."""
    env = os.environ if environ is None else environ
    tokens: dict[str, str] = {}
    for path in files:
        for token, user in parse_tokens_file(path).items():
            _add(tokens, user, token, str(path))
    for token, user in parse_tokens_env(env.get(TOKENS_ENV, "")).items():
        _add(tokens, user, token, TOKENS_ENV)
    return tokens
