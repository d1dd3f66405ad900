"""One exception tree for all of meetcap.

Every error a user can meet says what happened and what to do next. The tree splits
into errors worth retrying (the same call may work later) and fatal ones (retrying the
same thing will fail the same way until a person changes something)::

    MeetcapError
    ├── RetryableError            try again later: the cause may go away by itself
    │   ├── ConnectionLost        the network or the server went away
    │   ├── ServerBusy            the server refused for now (rate limit, too many sessions)
    │   └── DeviceLost            an audio device vanished mid-capture (unplugged)
    └── FatalError                a person must change something first
        ├── ConfigError           a bad setting: URL, path, gain out of range
        ├── DeviceError           a device cannot be found or opened
        ├── ModelError            the VAD model cannot be loaded or run
        ├── SpoolFullError        the disk spool reached its cap: capture stops, loudly
        ├── StorageError          audio cannot be written (disk full, permissions)
        ├── AuthError             a bad or missing token, or a forbidden session
        └── ProtocolError         the peer broke the wire protocol (carries a close code)

Raise with ``raise ... from exc`` so the cause stays visible.
"""

from __future__ import annotations


class MeetcapError(Exception):
    """Base of every meetcap error. ``str(err)`` is a sentence fit to show a user."""


class UsageError(MeetcapError):
    """The caller used an API wrongly (a bug in the caller): never shown as a network
    or device problem."""


class RetryableError(MeetcapError):
    """The operation may succeed if tried again later."""


class FatalError(MeetcapError):
    """Retrying will not help until a person changes something."""


class ConnectionLost(RetryableError):
    """The connection to the server dropped; the client reconnects and resumes."""


class ServerBusy(RetryableError):
    """The server refused for now (rate limit, session cap); try again after a while."""


class DeviceLost(RetryableError):
    """An audio device disappeared during capture (unplugged, module unloaded)."""


class ConfigError(FatalError):
    """A setting is invalid: the message names the setting and a valid example."""


class DeviceError(FatalError):
    """An audio device cannot be found or opened."""


class ModelError(FatalError):
    """The VAD model cannot be loaded or run. Never treated as silence."""


class SpoolFullError(FatalError):
    """The disk spool of unacknowledged frames reached its cap; capture must stop."""


class StorageError(FatalError):
    """Audio cannot be stored (disk full, no permission)."""


class AuthError(FatalError):
    """A bad or missing token, or an attempt to use another user's session."""


class ProtocolError(FatalError):
    """The peer broke the wire protocol.

    ``code`` is the WebSocket close code from docs/protocol.md that the receiver answers
    with; ``name`` is its short machine-readable name (for example ``"bad_checksum"``).
    """

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
