"""meetcap-server as a real subprocess, for tests that kill it (-9), restart it, or run
several instances side by side.

``meetcap_server_factory(**options)`` starts one server and returns a
:class:`ServerProcess`; every process it started is stopped after the test. Options are
``meetcap-server`` flags in Python spelling (``catchup_x=50`` -> ``--catchup-x 50``,
``transcribe=True`` -> ``--transcribe``);
``data_dir`` defaults to a fresh temporary directory, ``port`` to 0 (a free port, read
from the "listening on" line), and two users are configured: ``alice`` (TOKEN) and
``bob`` (OTHER_TOKEN). ``meetcap_server`` is one such server with default options.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

USER = "alice"
TOKEN = "alice-token-0123456789"
OTHER_USER = "bob"
OTHER_TOKEN = "bob-token-0123456789"
TOKENS_ENV = f"{USER}:{TOKEN},{OTHER_USER}:{OTHER_TOKEN}"
_LISTENING = re.compile(r"meetcap-server listening on (ws://\S+:(\d+)/v1/stream)")
_START_TIMEOUT_S = 20.0
_REPO = Path(__file__).resolve().parents[2]  # so the child imports this checkout's meetcap


class ServerProcess:
    """One meetcap-server subprocess. ``url``/``port`` are valid after :meth:`start`.

    :meth:`restart` kills (-9 by default) and starts it again with the same options,
    on the same port and data directory. ``output`` collects its stdout and stderr.
    """

    def __init__(self, data_dir: Path, options: dict[str, object]) -> None:
        self.data_dir = data_dir
        self.options = dict(options)
        self.port = int(self.options.pop("port", 0))  # type: ignore[arg-type]
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []
        self._lock = threading.Lock()

    def command(self) -> list[str]:
        args = [sys.executable, "-m", "meetcap.server", "--port", str(self.port),
                "--data-dir", str(self.data_dir)]
        for name, value in self.options.items():
            flag = "--" + name.replace("_", "-")
            if value is True:  # a switch: --transcribe
                args.append(flag)
                continue
            for item in value if isinstance(value, (list, tuple)) else [value]:
                args += [flag, str(item)]
        return args

    def start(self) -> ServerProcess:
        path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
        env = dict(os.environ, MEETCAP_TOKENS=TOKENS_ENV, PYTHONUNBUFFERED="1", PYTHONPATH=path)
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=env,
        )
        found = threading.Event()

        def pump(stream) -> None:  # keep reading so the pipe never fills up
            with stream:
                for line in stream:
                    with self._lock:
                        self.output.append(line.rstrip("\n"))
                    match = _LISTENING.search(line)
                    if match and not found.is_set():
                        self.url, self.port = match.group(1), int(match.group(2))
                        found.set()

        self._pump = threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True)
        self._pump.start()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not found.wait(0.02):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    "meetcap-server did not start:\n" + "\n".join(self.output[-30:])
                )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9: no shutdown, no flush; what the OS already has is all that survives."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._join_pump()

    def _join_pump(self) -> None:
        pump = getattr(self, "_pump", None)
        if pump is not None:
            pump.join(5)  # it closes the pipe at EOF

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (graceful shutdown); returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
        self._join_pump()
        return self.proc.returncode

    def restart(self, *, kill: bool = True) -> ServerProcess:
        """Stop (kill -9 unless ``kill=False``) and start again on the same port."""
        if kill:
            self.kill()
        else:
            self.terminate()
        return self.start()

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(self.output)


@pytest.fixture
def meetcap_server_factory(tmp_path: Path) -> Callable[..., ServerProcess]:
    started: list[ServerProcess] = []
    counter = iter(range(1_000_000))

    def start(data_dir: Path | None = None, **options: object) -> ServerProcess:
        if data_dir is None:
            data_dir = tmp_path / f"server-data-{next(counter)}"
        server = ServerProcess(Path(data_dir), options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


@pytest.fixture
def meetcap_server(meetcap_server_factory) -> ServerProcess:
    """One meetcap-server subprocess with default options and embedded state."""
    return meetcap_server_factory()
