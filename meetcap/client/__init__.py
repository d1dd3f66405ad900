"""The streaming client: a disk spool, reconnects with backoff, and the streamer thread.

Modules: :mod:`.config` (StreamerConfig, URL checks), :mod:`.spool` (unacked frames on
disk), :mod:`.backoff` (when to reconnect), :mod:`.outcomes` (why a connection ended,
retry or stop), :mod:`.link` (one session over successive connections), :mod:`.streamer`
(the thread the app talks to), :mod:`.status` (snapshots for the app).
"""

from meetcap import redact
from meetcap.client.backoff import Backoff, ConnectionSpan
from meetcap.client.config import StreamerConfig, validate_url
from meetcap.client.spool import Spool, SpoolSession
from meetcap.client.status import FinishResult, StreamStatus
from meetcap.client.streamer import Streamer, deliver_pending

# At debug level websockets logs the Authorization header and the resume tokens in
# frames: blank them in whatever process streams (meetcap/redact.py).
redact.install()

__all__ = [
    "Backoff", "ConnectionSpan", "FinishResult", "Spool", "SpoolSession", "StreamStatus",
    "Streamer", "StreamerConfig", "deliver_pending", "validate_url",
]
