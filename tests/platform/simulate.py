"""Make this Linux Python look like Windows or macOS before meetcap is imported.

Nothing here runs on a real Windows or Mac: these are **simulations**, good for what a
missing module or function does to meetcap, not for how the other system behaves.

Used through ``tests/platform/site/sitecustomize.py``: a Python started with
``MEETCAP_SIMULATE_OS=win32`` (or ``darwin``) and that folder on ``PYTHONPATH`` calls
:func:`simulate` before anything else, and so does every Python it starts in turn (the
``meetcap-server`` subprocesses of the storage tests inherit both variables).

Simulated:

* ``sys.platform`` is ``"win32"`` / ``"darwin"``.
* ``os`` loses the names that the target's CPython does not have (``pread``,
  ``pwrite``, ``fdatasync``, ``getuid``... on Windows; ``fdatasync``, ``sched_*``...
  on macOS).
* Windows: the POSIX-only modules (``fcntl``, ``termios``, ``resource``, ``pwd``...)
  cannot be imported (a meta-path finder raises ImportError); a stand-in ``msvcrt``
  offers ``locking`` with ``LK_NBLCK`` / ``LK_UNLCK``, **implemented with the real
  fcntl.flock, captured before fcntl is hidden**: it ignores the byte range and keeps
  flock's semantics (another descriptor, of this process or another, is refused), not
  Windows' mandatory byte-range locks. ``os.O_BINARY`` exists, and ``os.open`` called
  from meetcap without it fails: Windows would open the file in text mode. The known
  folders platformdirs asks Windows for (AppData...) are folders under the temp dir.
* macOS: ``fcntl.F_FULLFSYNC`` exists; ``fcntl.fcntl(fd, F_FULLFSYNC)`` is served by
  ``os.fsync`` and counted in :data:`FULLFSYNC_CALLS`.

Not simulated: ``os.name`` stays ``"posix"`` and ``os.path`` stays ``posixpath``
(pathlib, shutil and tempfile choose their implementation from them at call time and
would try Windows paths on Linux), so meetcap decides on ``sys.platform`` and on what
``os`` offers, never on ``os.name``. The standard-library modules that load
Windows-only C modules when imported on "win32" (asyncio, subprocess,
multiprocessing...) are imported first, as their Linux builds; so are PySide6 and
soundfile, which load a Windows DLL (or macOS dylib) of their wheel when imported.
The event loop stays the Linux selector loop (Windows uses the Proactor loop), signals
are still delivered the POSIX way, and the files live on a Linux filesystem.
"""

from __future__ import annotations

import importlib
import importlib.abc
import io
import os
import sys
import tempfile
import types

# Imported before sys.platform changes, as their Linux builds: on "win32" they would load
# Windows-only C modules (_winapi, _overlapped, msvcrt...) or macOS ones (_scproxy).
_PRELOAD = (
    "asyncio", "concurrent.futures", "concurrent.futures.process", "ctypes", "ctypes.util",
    "getpass", "locale", "logging.handlers", "mimetypes", "multiprocessing",
    "multiprocessing.connection", "pathlib", "platform", "selectors", "shutil", "signal",
    "socket", "ssl", "subprocess", "tempfile", "threading", "urllib.request", "uuid",
    "webbrowser",
)
# Third-party packages that load their native library by platform when imported (a
# Windows DLL or macOS dylib from their wheel, which this Linux install does not have).
_PRELOAD_OPTIONAL = ("PySide6", "soundfile")

# What CPython 3.11's os module lacks on each system (of what it has on Linux). Flags that
# the (Linux) standard library itself reads at call time, such as O_TMPFILE in tempfile,
# stay: their absence would break the stand-in, not test meetcap.
_MISSING_IN_OS = {
    "win32": (
        "pread", "pwrite", "preadv", "pwritev", "fdatasync", "sync", "getuid", "geteuid",
        "getgid", "getegid", "getgroups", "setuid", "seteuid", "setgid", "setegid", "fork",
        "forkpty", "setsid", "getsid", "setpgid", "getpgid", "getpgrp", "killpg", "uname",
        "fchmod", "fchown", "chown", "lchown", "chroot", "mkfifo", "mknod", "nice",
        "openpty", "pipe2", "posix_fadvise", "posix_fallocate", "sched_getaffinity",
        "sched_setaffinity", "getloadavg", "statvfs", "fstatvfs", "sendfile", "wait3",
        "wait4", "waitid", "O_DIRECTORY",
    ),
    "darwin": (
        "fdatasync", "sched_getaffinity", "sched_setaffinity", "pipe2", "posix_fadvise",
        "posix_fallocate", "memfd_create", "eventfd", "eventfd_read", "eventfd_write",
        "splice", "copy_file_range", "getxattr", "setxattr", "listxattr", "removexattr",
        "getrandom", "pidfd_open",
    ),
}
# Modules that exist on POSIX systems only.
_POSIX_ONLY_MODULES = frozenset(
    {"fcntl", "termios", "tty", "pty", "resource", "pwd", "grp", "syslog", "crypt", "nis",
     "spwd", "_posixshmem"}
)

_WINDOWS_O_BINARY = 0x8000  # msvcrt's _O_BINARY
_F_FULLFSYNC = 51  # macOS <sys/fcntl.h>

FULLFSYNC_CALLS = [0]  # how many F_FULLFSYNC the simulated macOS served


class _BlockPosixModules(importlib.abc.MetaPathFinder):
    """Refuses the modules a Windows Python does not have."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in _POSIX_ONLY_MODULES:
            raise ImportError(f"No module named {fullname!r} (simulated Windows)", name=fullname)
        return None


def _stand_in_msvcrt() -> types.ModuleType:
    """msvcrt.locking with the real fcntl.flock underneath (captured here, before the
    simulation hides fcntl). Raises PermissionError (EACCES) when held, as msvcrt does."""
    import errno
    import fcntl

    flock, lock_ex, lock_nb, lock_un = fcntl.flock, fcntl.LOCK_EX, fcntl.LOCK_NB, fcntl.LOCK_UN
    module = types.ModuleType("msvcrt", "Simulated Windows: msvcrt.locking over fcntl.flock.")
    module.LK_UNLCK, module.LK_LOCK, module.LK_NBLCK, module.LK_RLCK, module.LK_NBRLCK = (
        0, 1, 2, 3, 4,
    )

    def locking(fd: int, mode: int, nbytes: int) -> None:
        if mode == module.LK_UNLCK:
            flock(fd, lock_un)
            return
        if mode not in (module.LK_NBLCK, module.LK_NBRLCK):
            raise NotImplementedError("the simulated msvcrt only takes non-blocking locks")
        try:
            flock(fd, lock_ex | lock_nb)
        except BlockingIOError:
            raise PermissionError(errno.EACCES, "Permission denied") from None

    module.locking = locking
    return module


def _require_o_binary() -> None:
    real_open = os.open

    def open_(path, flags, mode=0o777, *, dir_fd=None):
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("meetcap") and not flags & _WINDOWS_O_BINARY:
            raise AssertionError(
                f"simulated Windows: {caller} opened {path} without os.O_BINARY; Windows "
                "would open it in text mode (\\n written as \\r\\n, 0x1A read as the end)"
            )
        return real_open(path, flags & ~_WINDOWS_O_BINARY, mode, dir_fd=dir_fd)

    os.open = open_
    os.O_BINARY = _WINDOWS_O_BINARY


def _full_fsync_fcntl() -> None:
    import fcntl

    real_fcntl = fcntl.fcntl

    def fcntl_(fd, cmd, arg=0):
        if cmd == _F_FULLFSYNC:
            FULLFSYNC_CALLS[0] += 1
            os.fsync(fd)
            return 0
        return real_fcntl(fd, cmd, arg)

    fcntl.F_FULLFSYNC = _F_FULLFSYNC
    fcntl.fcntl = fcntl_


def simulate(target: str) -> None:
    """Turn this interpreter into a simulated ``target`` ("win32" or "darwin")."""
    if target not in _MISSING_IN_OS:
        raise ValueError(f"cannot simulate {target!r}: 'win32' or 'darwin'")
    if "meetcap" in sys.modules:
        raise RuntimeError("simulate() must run before meetcap is imported")
    for name in _PRELOAD:
        importlib.import_module(name)
    for name in _PRELOAD_OPTIONAL:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if target == "win32":
        msvcrt = _stand_in_msvcrt()  # captures fcntl before it is hidden
        sys.meta_path.insert(0, _BlockPosixModules())
        for name in list(sys.modules):
            if name.partition(".")[0] in _POSIX_ONLY_MODULES:
                del sys.modules[name]  # already imported by the preloads: hide them too
        sys.modules["msvcrt"] = msvcrt
        _require_o_binary()
        # Windows' console stream class; pytest checks stdout against it on "win32". No
        # stream here is a Windows console.
        io._WindowsConsoleIO = type("_WindowsConsoleIO", (), {})
    else:
        _full_fsync_fcntl()
    for name in _MISSING_IN_OS[target]:
        if hasattr(os, name):
            delattr(os, name)
    sys.platform = target
    if target == "win32":
        _windows_known_folders()


def _windows_known_folders() -> None:
    """platformdirs asks Windows where AppData is (SHGetKnownFolderPath through
    ctypes.windll, which Linux lacks): answer with folders under this machine's temp
    directory, so meetcap's defaults still go through platformdirs' Windows rules."""
    try:
        import platformdirs.windows
    except ImportError:
        return
    root = os.path.join(tempfile.gettempdir(), "meetcap-simulated-windows")
    platformdirs.windows._RESOLVE_WIN_FOLDER = lambda csidl_name: os.path.join(
        root, csidl_name.removeprefix("CSIDL_")
    )
