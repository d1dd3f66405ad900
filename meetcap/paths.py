"""Where meetcap keeps its files on this computer: one place for every folder name.

The app, ``meetcap record``, ``meetcap spool`` and the server's defaults all find their
folders here, so one user has one layout::

    <data root>/                   platformdirs.user_data_dir("meetcap"), or --data-dir
    <data root>/sessions/          the built-in server's stored sessions (WAV + JSON)
    <data root>/spool/             audio the server has not acknowledged yet; each
                                   spooled session records its own destination
                                   (meetcap/client/spool.py), so one root serves every
                                   server and account

``MEETCAP_DATA_DIR`` in the environment moves the data root (tests, portable installs);
an explicit argument wins over it.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "MEETCAP_DATA_DIR"
SESSIONS_DIR_NAME = "sessions"
SPOOL_DIR_NAME = "spool"


def data_root(explicit: str | Path | None = None) -> Path:
    """The data root: ``explicit`` if given, else ``$MEETCAP_DATA_DIR``, else the user's
    data folder (``~/.local/share/meetcap`` on Linux, ``%LOCALAPPDATA%\\meetcap`` on
    Windows, ``~/Library/Application Support/meetcap`` on macOS)."""
    if explicit is not None and str(explicit):
        return Path(explicit).expanduser()
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        return Path(from_env).expanduser()
    import platformdirs  # only needed for the default location

    return Path(platformdirs.user_data_dir("meetcap", appauthor=False))


def sessions_dir(root: str | Path | None = None) -> Path:
    """Where the built-in server stores sessions."""
    return data_root(root) / SESSIONS_DIR_NAME


def spool_dir(root: str | Path | None = None) -> Path:
    """The spool root shared by every destination (each session knows its own)."""
    return data_root(root) / SPOOL_DIR_NAME
