"""Only meetcap/oscalls.py makes the calls that exist on some systems only: read from the
source of every module (the simulated-platform tests show what happens when it slips)."""

from __future__ import annotations

import ast
from pathlib import Path

import meetcap

PACKAGE = Path(meetcap.__file__).resolve().parent
PLATFORM_LAYER = PACKAGE / "oscalls.py"

# Modules a Windows (or macOS) Python does not have.
SYSTEM_MODULES = {"fcntl", "msvcrt", "resource", "termios", "tty", "pty", "pwd", "grp",
                  "winreg", "_winapi"}
# os functions and flags missing on Windows or macOS.
POSIX_ONLY_OS = {
    "pread", "pwrite", "preadv", "pwritev", "fdatasync", "sync", "getuid", "geteuid",
    "getgid", "getegid", "fork", "setsid", "killpg", "getpgid", "uname", "fchmod",
    "fchown", "chown", "statvfs", "fstatvfs", "sched_getaffinity", "posix_fallocate",
    "posix_fadvise", "O_DIRECTORY", "add_dll_directory",
}
# Signals Windows does not have (SIGTERM and SIGINT exist everywhere).
POSIX_ONLY_SIGNALS = {"SIGHUP", "SIGKILL", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGCHLD",
                      "SIGPIPE", "SIGQUIT", "SIGSTOP", "SIGCONT"}
# Calls that exist on POSIX event loops and select only.
POSIX_ONLY_METHODS = {"add_signal_handler", "remove_signal_handler", "poll"}

# Code that runs on one system only, by construction.
EXEMPT = {
    # The PulseAudio backend: its os.getuid runs only where PulseAudio is the backend.
    ("audio/linux_pulse.py", "os.getuid"),
}


def _offences(source: str, rel: str) -> list[str]:
    """``rel:line: what`` for each system-specific call in ``source`` (of file ``rel``)."""
    tree = ast.parse(source, rel)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        what = None
        if isinstance(node, ast.Import):
            names = [alias.name.partition(".")[0] for alias in node.names]
            what = next((f"import {n}" for n in names if n in SYSTEM_MODULES), None)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            root = node.module.partition(".")[0]
            if root in SYSTEM_MODULES:
                what = f"from {root} import ..."
            elif root in ("os", "signal"):
                bad = POSIX_ONLY_OS | POSIX_ONLY_SIGNALS
                what = next((f"from {root} import {a.name}" for a in node.names
                             if a.name in bad), None)
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner == "os" and node.attr in POSIX_ONLY_OS:
                what = f"os.{node.attr}"
            elif owner == "signal" and node.attr in POSIX_ONLY_SIGNALS:
                what = f"signal.{node.attr}"
            elif owner == "select" and node.attr == "poll":
                what = "select.poll"
            elif node.attr in POSIX_ONLY_METHODS - {"poll"}:
                what = f".{node.attr}"
        if what is not None and (rel, what) not in EXEMPT:
            found.append((node.lineno, what))
    return [f"{rel}:{line}: {what}" for line, what in sorted(found)]


def test_only_the_platform_layer_makes_system_specific_calls():
    offences = [
        offence
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PLATFORM_LAYER
        for offence in _offences(path.read_text(), path.relative_to(PACKAGE).as_posix())
    ]
    assert not offences, "go through meetcap.oscalls instead:\n" + "\n".join(offences)


def test_the_boundary_check_sees_what_it_looks_for():
    """The checker itself: each kind of call it must catch, it catches."""
    code = (
        "import fcntl\nimport os, signal\nfrom os import pwrite\n"
        "os.fdatasync(1)\nsignal.SIGHUP\nloop.add_signal_handler(1, f)\n"
    )
    offences = _offences(code, "sample.py")
    assert [o.split(": ", 1)[1] for o in offences] == [
        "import fcntl", "from os import pwrite", "os.fdatasync", "signal.SIGHUP",
        ".add_signal_handler",
    ], offences
