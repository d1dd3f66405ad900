"""meetcap on a **simulated** Windows and macOS (tests/platform/simulate.py says what is
and is not simulated): every module imports, and the spool and server storage suites
pass, in a Python that has the other system's sys.platform, os functions and modules.

Each test runs a fresh .venv Python whose start-up (site/sitecustomize.py) simulates the
system before anything imports meetcap; the meetcap-server subprocesses of the storage
tests inherit the simulation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "site"
SYSTEMS = {"windows": "win32", "macos": "darwin"}

# The suites whose subject is the platform layer: the client spool (its lock, positional
# reads, fsync) and the server's storage (WAV lock, pwrite/pread, datasync, takeover of
# a session another instance holds), crash recovery (kill -9 + restart), graceful
# shutdown (the CLI's signal handling), and storage seen end to end. test_redis_failover
# needs Debian's redis-server, which this machine runs natively (on Windows the server
# would reach a Redis elsewhere); it exercises the WAV lock between two instances.
STORAGE_SUITES = (
    "tests/client/test_spool.py",
    "tests/server/test_storage_failure.py",
    "tests/server/test_crash_recovery.py",
    "tests/server/test_shutdown.py",
    "tests/server/test_streaming.py",
    "tests/server/test_inprocess.py",
    "tests/server/test_redis_failover.py",
)

_WALK = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys, traceback

    import meetcap

    failed = {}
    names = []
    for info in pkgutil.walk_packages(meetcap.__path__, "meetcap.", onerror=lambda n: None):
        if info.name.rpartition(".")[2] == "__main__":
            continue  # importing it would run the program; what it imports is walked
        names.append(info.name)
        try:
            importlib.import_module(info.name)
        except BaseException as exc:
            last = traceback.extract_tb(exc.__traceback__)[-1]
            failed[info.name] = f"{type(exc).__name__}: {exc} ({last.filename}:{last.lineno})"
    print(json.dumps({"platform": sys.platform, "modules": names, "failed": failed}))
    """
)


def simulated_env(system: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(SITE), str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(
        os.environ, MEETCAP_SIMULATE_OS=SYSTEMS[system], PYTHONPATH=path,
        QT_QPA_PLATFORM="offscreen",
    )


def run_simulated(system: str, args: list[str], timeout_s: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=simulated_env(system), capture_output=True,
        text=True, timeout=timeout_s,
    )


def check_every_module_imports(system: str) -> None:
    proc = run_simulated(system, ["-c", _WALK], timeout_s=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["platform"] == SYSTEMS[system]
    assert len(report["modules"]) > 40, report["modules"]  # the walk found the package
    failures = "\n".join(f"  {name}: {why}" for name, why in sorted(report["failed"].items()))
    assert not report["failed"], f"modules that fail to import on simulated {system}:\n{failures}"


# The only skips allowed in those suites, by system: syncfs(2) is Linux's; on simulated
# Windows the test support looks for redis-server with Windows' rules (PATHEXT: .EXE...)
# and does not find the Linux binary, so the Redis failover tests skip there.
ALLOWED_SKIPS = {
    "windows": ("syncfs(2) is Linux-only", "redis-server is not installed"),
    "macos": ("syncfs(2) is Linux-only",),
}


def check_suites_pass(system: str) -> None:
    proc = run_simulated(
        system, ["-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *STORAGE_SUITES],
        timeout_s=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    skips = [line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")]
    unexpected = [s for s in skips if not any(why in s for why in ALLOWED_SKIPS[system])]
    assert not unexpected, "\n".join(unexpected)
    print(proc.stdout.strip().splitlines()[-1])  # "N passed, M skipped in T s" (with -s)


def test_every_module_imports_on_simulated_windows():
    check_every_module_imports("windows")


def test_every_module_imports_on_simulated_macos():
    check_every_module_imports("macos")


def test_spool_and_storage_suites_pass_on_simulated_windows():
    check_suites_pass("windows")


def test_spool_and_storage_suites_pass_on_simulated_macos():
    check_suites_pass("macos")


@pytest.mark.parametrize("system", sorted(SYSTEMS))
def test_the_platform_layer_takes_the_simulated_systems_paths(system, tmp_path):
    """The simulation reaches oscalls: the lseek fallback and msvcrt lock on Windows,
    F_FULLFSYNC on macOS; and a second descriptor is refused the lock on both."""
    probe = textwrap.dedent(
        f"""
        import os, sys
        from meetcap import oscalls
        from tests.platform import simulate

        path = {str(tmp_path / "f")!r}
        fd = oscalls.open_file(path, os.O_RDWR | os.O_CREAT)
        other = oscalls.open_file(path, os.O_RDWR)
        oscalls.pwrite_all(fd, b"hello world", 0)
        oscalls.pwrite_all(fd, b"W", 6)
        assert oscalls.pread(fd, 5, 6) == b"World", oscalls.pread(fd, 5, 6)
        oscalls.datasync(fd)
        assert oscalls.lock_exclusive(fd)
        assert not oscalls.lock_exclusive(other)
        oscalls.unlock(fd)
        assert oscalls.lock_exclusive(other)
        oscalls.fsync_dir({str(tmp_path)!r})
        lock = "msvcrt" if hasattr(oscalls, "msvcrt") else "fcntl"
        print(sys.platform, oscalls._pread.__name__, lock, simulate.FULLFSYNC_CALLS[0])
        """
    )
    proc = run_simulated(system, ["-c", probe], timeout_s=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    platform, pread, lock, fullfsyncs = proc.stdout.split()
    if system == "windows":
        assert (platform, pread, lock) == ("win32", "_seek_pread", "msvcrt")
    else:
        assert (platform, pread, lock) == ("darwin", "pread", "fcntl")
        assert int(fullfsyncs) >= 2  # the file, then its directory
