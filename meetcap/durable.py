"""Durable-file helpers of the client spool and the server: what survives a kill -9
or a power cut is what was fsynced.

Every state file is replaced atomically (write a temporary file, fsync it, rename it over
the old one, fsync the directory) so a reader after any crash sees either the old or
the new content, never half of one (rename is atomic within a filesystem: rename(2) on
POSIX, MoveFileEx on Windows). The system-specific calls are in :mod:`meetcap.oscalls`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from meetcap.oscalls import datasync, fsync_dir, open_file


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a write may take only part of the data)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` durably and atomically. Blocks: call it off the loop."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = open_file(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        write_all(fd, data)
        datasync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """Replace ``path`` with ``obj`` as JSON, durably and atomically (see module doc)."""
    atomic_write_bytes(path, json.dumps(obj, indent=1, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any | None:
    """The JSON in ``path``, or None when the file does not exist."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
