"""The recording session, with no Qt: what the app and ``meetcap record`` both drive.

- :mod:`meetcap.session.settings`: :class:`SessionSettings`, the one settings record
- :mod:`meetcap.session.recorder`: :class:`Recorder`, one session end to end
- :mod:`meetcap.session.local_server`: the app's built-in server
"""

from meetcap.session.recorder import (
    BUILTIN_DESTINATION,
    Phase,
    Recorder,
    RecorderListener,
    SessionInfo,
)
from meetcap.session.settings import SessionSettings

__all__ = [
    "BUILTIN_DESTINATION", "Phase", "Recorder", "RecorderListener", "SessionInfo",
    "SessionSettings",
]
