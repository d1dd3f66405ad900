"""One exception tree for all of meetcap.

Every error a user can meet says what happened and what to do next. The tree splits
into errors worth retrying (the same call may work later) and fatal ones (retrying the
same thing will fail the same way until a person changes something). Every class in it
is raised somewhere; the errors of one module live beside the code that raises them::

    MeetcapError
    ├── UsageError                the caller used an API wrongly: a bug in the caller
    ├── Refusal                   server/state/base.py: the state store refuses a create or
    │                             resume; its close code says whether a retry can help
    ├── RetryableError            try again later: the cause may go away by itself
    │   ├── SessionLocked         server/storage.py: another server instance still holds
    │   │                         the session's files
    │   ├── StateUnavailable      server/state/base.py: the session store (Redis) cannot
    │   │                         be reached
    │   └── PendingBusy           client/pending.py: another meetcap process holds a
    │                             recording waiting in the spool
    └── FatalError                a person must change something first
        ├── ConfigError           a bad setting: URL, path, gain out of range
        │   └── PendingNotFound   client/pending.py: no such recording waits in the spool
        ├── DeviceError           a device cannot be found or opened
        ├── ModelError            the VAD or Whisper model cannot be loaded or run
        ├── SpoolFullError        the disk spool reached its cap: capture stops, loudly
        ├── StorageError          audio cannot be written (disk full, permissions)
        ├── ProtocolError         the peer broke the wire protocol (carries a close code)
        ├── SessionFull           server/storage.py: a session holds the most audio one WAV
        │                         file can (about 37 hours)
        ├── SessionSuperseded     server/storage.py: a newer connection took the session over
        └── AudioFileMissing      server/storage.py: the state store knows a session this
                                  data directory has no audio for

Which close code the server answers each one with is one table,
:data:`meetcap.server.refusals.CLOSE_CODES`. Raise with ``raise ... from exc`` so the
cause stays visible.
"""

from __future__ import annotations


class MeetcapError(Exception):
    """Base of every meetcap error. ``str(err)`` is a sentence fit to show a user."""


class UsageError(MeetcapError):
    """The caller used the API wrongly: a bug in the caller, never shown as a network or
    device problem (for example ``submit()`` after ``finish()``)."""


class RetryableError(MeetcapError):
    """The operation may succeed if tried again later."""


class FatalError(MeetcapError):
    """Retrying will not help until a person changes something."""


class ConfigError(FatalError):
    """A setting is invalid: the message names the setting and a valid example."""


class DeviceError(FatalError):
    """An audio device cannot be found or opened."""


class ModelError(FatalError):
    """The VAD or speech-to-text model cannot be loaded or run. Never treated as silence
    or as an empty transcript."""


class SpoolFullError(FatalError):
    """The disk spool of unacknowledged frames reached its cap; capture must stop."""


class StorageError(FatalError):
    """Audio cannot be stored (disk full, no permission)."""


class ProtocolError(FatalError):
    """The peer broke the wire protocol.

    ``code`` is the WebSocket close code from docs/protocol.md that the receiver answers
    with; ``name`` is its short machine-readable name (for example ``"bad_checksum"``).
    """

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.name = name
