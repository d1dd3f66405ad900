"""meetcap-server: receives meetcap streams, stores each session as one gapless WAV.

Modules, one job each: :mod:`.config` (settings, tokens), :mod:`.auth` (handshake
checks), :mod:`.handler` (one connection), :mod:`.app` (the server), :mod:`.storage`,
:mod:`.wavfile`, :mod:`.sidecar`, :mod:`.flusher` (durable writes), :mod:`.state`
(embedded or Redis), :mod:`.ratelimit`, :mod:`.sink` (where stored audio goes next),
:mod:`.embedded` (a server in a thread), :mod:`.cli` (``meetcap-server``).
"""

from meetcap.server.app import MeetcapServer, serve
from meetcap.server.config import ServerConfig, load_tokens
from meetcap.server.embedded import EmbeddedServer
from meetcap.server.sink import LoggingSink, SessionSummary, Sink, StoredBatch

__all__ = [
    "EmbeddedServer", "LoggingSink", "MeetcapServer", "ServerConfig", "SessionSummary", "Sink",
    "StoredBatch", "load_tokens", "serve",
]
