"""The operating-system calls that exist on some systems only, behind one portable face.

Linux, macOS and Windows differ in how a file is locked, read or written at an offset
and made durable, and in how a process hears SIGTERM and Ctrl-C. Every module of
meetcap goes through this one for those: no other module imports ``fcntl``, ``msvcrt``
or ``resource``, or calls a POSIX-only ``os`` function (``pread``, ``pwrite``,
``fdatasync``...). Each choice is made once, at import, on ``sys.platform`` (which type
checkers follow too: ``mypy --platform win32`` checks the Windows branches).

What each call does where:

* :func:`open_file`: os.open; on Windows with O_BINARY (else text mode).
* :func:`lock_exclusive` / :func:`unlock`: flock (POSIX); msvcrt.locking (Windows).
* :func:`pread` / :func:`pwrite`: os.pread / os.pwrite; on Windows lseek + read/write
  under a per-descriptor lock.
* :func:`datasync`: os.fdatasync (Linux); fcntl F_FULLFSYNC, else fsync (macOS, whose
  fsync stops at the drive's cache); os.fsync (Windows: FlushFileBuffers).
* :func:`fsync_dir`: fsync of the directory (POSIX); nothing on Windows (a directory
  cannot be opened there; NTFS journals renames).
* :func:`on_shutdown_signals`: loop.add_signal_handler (POSIX); signal.signal +
  call_soon_threadsafe on Windows, whose event loops have no signal handlers.
* :func:`syncfs_function`: syncfs(2) on Linux, None elsewhere.
* :func:`raise_open_file_limit`: setrlimit (POSIX), nothing on Windows.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

# Windows opens descriptors in text mode unless told otherwise: "\n" would be written as
# "\r\n" and a 0x1A byte would read as the end of the file.
_O_BINARY: int = getattr(os, "O_BINARY", 0)

# Windows locks byte ranges, and a locked range cannot be read by other handles: lock one
# byte far past any data a file will hold (a WAV holds at most 4 GiB), so readers of the
# data are never blocked. Seeking and locking past the end of a file is allowed there.
_WINDOWS_LOCK_OFFSET = 2**40

# -- per-descriptor locks: the lseek + read/write fallback must not interleave ------------

_fd_locks: dict[int, threading.Lock] = {}
_fd_locks_guard = threading.Lock()


def _fd_lock(fd: int) -> threading.Lock:
    """The lock of descriptor ``fd`` (a reused number reuses its lock, which is harmless)."""
    lock = _fd_locks.get(fd)
    if lock is None:
        with _fd_locks_guard:
            lock = _fd_locks.setdefault(fd, threading.Lock())
    return lock


# -- opening ------------------------------------------------------------------------------


def open_file(path: str | Path, flags: int, mode: int = 0o600) -> int:
    """``os.open`` in binary mode on every system (Windows defaults to text mode)."""
    return os.open(path, flags | _O_BINARY, mode)


# -- positional reads and writes ----------------------------------------------------------


def _seek_pread(fd: int, n: int, offset: int) -> bytes:
    with _fd_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.read(fd, n)


def _seek_pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    with _fd_lock(fd):
        os.lseek(fd, offset, os.SEEK_SET)
        return os.write(fd, data)


_pread: Callable[[int, int, int], bytes] = getattr(os, "pread", _seek_pread)
_pwrite: Callable[[int, bytes | memoryview, int], int] = getattr(os, "pwrite", _seek_pwrite)


def pread(fd: int, n: int, offset: int) -> bytes:
    """Up to ``n`` bytes of ``fd`` from ``offset`` (fewer at the end of the file)."""
    return _pread(fd, n, offset)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write ``data`` at ``offset`` of ``fd``; returns how many bytes were written."""
    return _pwrite(fd, data, offset)


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` of ``fd`` (a write may take only part of it).
    Does not move the file position on systems with pwrite; never use it on an
    O_APPEND descriptor (Linux appends there whatever the offset)."""
    view = memoryview(data)
    while view:
        written = pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


# -- locks --------------------------------------------------------------------------------


if sys.platform == "win32":
    import msvcrt

    def _locking(fd: int, mode: int) -> None:
        with _fd_lock(fd):
            here = os.lseek(fd, 0, os.SEEK_CUR)
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(fd, mode, 1)  # locks 1 byte at the file position
            finally:
                os.lseek(fd, here, os.SEEK_SET)

    def lock_exclusive(fd: int) -> bool:
        """Take an exclusive lock on the open file ``fd`` without waiting: True when
        taken, False when another descriptor (of this process or another) holds it. The
        lock goes with the descriptor: closing it, or the process dying, releases it."""
        try:
            _locking(fd, msvcrt.LK_NBLCK)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EDEADLK):  # held by another handle
                return False
            raise
        return True

    def unlock(fd: int) -> None:
        """Release the lock :func:`lock_exclusive` took on ``fd``. Call it before closing
        the descriptor: Windows releases a closed file's locks only eventually."""
        _locking(fd, msvcrt.LK_UNLCK)

else:
    import fcntl

    def lock_exclusive(fd: int) -> bool:
        """Take an exclusive lock on the open file ``fd`` without waiting: True when
        taken, False when another descriptor (of this process or another) holds it. The
        lock goes with the descriptor: closing it, or the process dying, releases it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(fd: int) -> None:
        """Release the lock :func:`lock_exclusive` took on ``fd``. Call it before closing
        the descriptor: Windows releases a closed file's locks only eventually."""
        fcntl.flock(fd, fcntl.LOCK_UN)


# -- durability ---------------------------------------------------------------------------


if sys.platform == "darwin":
    # macOS fsync() stops at the drive, whose cache may still lose the data in a power
    # cut: F_FULLFSYNC flushes that cache too. Filesystems without it (network shares,
    # FAT) refuse it: then fsync is the best there is.
    _F_FULLFSYNC: int | None = getattr(fcntl, "F_FULLFSYNC", None)

    def datasync(fd: int) -> None:
        """Make the data written to ``fd`` durable (and the metadata needed to read it
        back). Blocks until the disk has it: call it off the event loop."""
        if _F_FULLFSYNC is not None:
            try:
                fcntl.fcntl(fd, _F_FULLFSYNC)
                return
            except OSError:
                pass
        os.fsync(fd)

elif sys.platform == "win32":

    def datasync(fd: int) -> None:
        """Make the data written to ``fd`` durable (and the metadata needed to read it
        back). Blocks until the disk has it: call it off the event loop."""
        os.fsync(fd)  # _commit: FlushFileBuffers

else:

    def datasync(fd: int) -> None:
        """Make the data written to ``fd`` durable (and the metadata needed to read it
        back). Blocks until the disk has it: call it off the event loop."""
        os.fdatasync(fd)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (files created, renamed or removed in it) durable.
    Nothing on Windows: a directory cannot be opened there, and NTFS journals renames."""
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        datasync(fd)
    finally:
        os.close(fd)


def syncfs_function() -> Callable[[int], None] | None:
    """syncfs(2) (Linux: make a whole filesystem durable through any descriptor on it),
    or None where the system has no such call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    syncfs = getattr(libc, "syncfs", None)
    if syncfs is None:  # pragma: no cover - a libc older than glibc 2.14
        return None

    def call(fd: int) -> None:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))

    return call


# -- processes ----------------------------------------------------------------------------


def raise_open_file_limit() -> None:
    """Lift the soft limit of open descriptors to the hard one (POSIX; Linux desktops
    default to 1,024). Nothing where the system has no such limit (Windows)."""
    if sys.platform == "win32":
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass  # keep the soft limit; the caller still runs, with fewer descriptors


def shutdown_signals() -> tuple[signal.Signals, ...]:
    """The signals that ask a process to stop: SIGTERM, SIGINT (Ctrl-C) and, on Windows,
    SIGBREAK (Ctrl-Break)."""
    extra = (signal.SIGBREAK,) if hasattr(signal, "SIGBREAK") else ()
    return (signal.SIGTERM, signal.SIGINT, *extra)


def on_shutdown_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[], Any]) -> None:
    """Call ``callback`` on ``loop`` when the process is asked to stop (see
    :func:`shutdown_signals`). Call it from the main thread, on the loop's thread.

    POSIX loops watch signals themselves (add_signal_handler). Windows' loops cannot: a
    plain signal handler (run by Python on the main thread, between bytecodes) hands the
    call to the loop instead.
    """
    if sys.platform != "win32":
        for signum in shutdown_signals():
            loop.add_signal_handler(signum, callback)
        return

    def handle(signum: int, frame: object) -> None:
        loop.call_soon_threadsafe(callback)

    for signum in shutdown_signals():
        signal.signal(signum, handle)
