"""A real, private PulseAudio server with virtual devices, for the whole test session.

Two null sinks stand for the hardware: what is played into ``meetcap_mic_sink`` comes
out of the virtual microphone ``meetcap_virtual_mic`` (a remapped source on the sink's
monitor), and what is played into ``meetcap_spk_sink`` is the "system audio", captured
from ``meetcap_spk_sink.monitor``. The server runs as root with no sound card and no
systemd, in its own runtime dir (``XDG_RUNTIME_DIR`` and ``PULSE_SERVER`` point at it for
this process and its children), so parallel test runs on one machine do not meet.

Fixtures: ``pulse_server`` (session) and ``pulse`` (per test: both devices present, the
defaults set, extra sinks and players cleaned up afterwards).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MIC_SINK = "meetcap_mic_sink"
SPEAKER_SINK = "meetcap_spk_sink"
VIRTUAL_MIC = "meetcap_virtual_mic"
MIC_SOURCE = VIRTUAL_MIC
SYSTEM_SOURCE = f"{SPEAKER_SINK}.monitor"
MIC_ID = f"pulse:{MIC_SOURCE}"
SYSTEM_ID = f"pulse:{SYSTEM_SOURCE}"
SINK_RATE_HZ = 48_000


@dataclass
class PulseServer:
    """Handle on the test server: play into sinks, take devices away and back."""

    runtime_dir: Path
    modules: dict[str, int] = field(default_factory=dict)  # sink or source name -> module
    players: list[subprocess.Popen] = field(default_factory=list)

    mic_sink = MIC_SINK
    speaker_sink = SPEAKER_SINK
    mic_source = MIC_SOURCE
    system_source = SYSTEM_SOURCE
    mic_id = MIC_ID
    system_id = SYSTEM_ID

    def pactl(self, *args: str) -> str:
        return subprocess.run(
            ["pactl", *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    def load_sink(self, sink: str, description: str | None = None) -> None:
        """Add a null sink (a "device"); the mic sink also gets the virtual mic on top."""
        args = ["load-module", "module-null-sink", f"sink_name={sink}", f"rate={SINK_RATE_HZ}"]
        if description:
            args.append(f"sink_properties=device.description={description}")
        self.modules[sink] = int(self.pactl(*args))
        if sink == MIC_SINK:
            self.modules[VIRTUAL_MIC] = int(
                self.pactl(
                    "load-module", "module-remap-source", f"master={MIC_SINK}.monitor",
                    f"source_name={VIRTUAL_MIC}", "channels=1",
                )
            )

    def unload_sink(self, sink: str) -> None:
        """Take a device away, as if it was unplugged."""
        if sink == MIC_SINK and VIRTUAL_MIC in self.modules:
            self.pactl("unload-module", str(self.modules.pop(VIRTUAL_MIC)))
        self.pactl("unload-module", str(self.modules.pop(sink)))

    reload_sink = load_sink  # plug it back in

    def play(self, wav: Path, sink: str) -> subprocess.Popen:
        """Start playing a file into a sink; returns the paplay process (killed at the
        end of the test if still running)."""
        player = subprocess.Popen(["paplay", "-d", sink, str(wav)])
        self.players.append(player)
        return player

    def reset(self) -> None:
        """Both standard devices present, defaults set, no extra sink, no player left."""
        for player in self.players:
            if player.poll() is None:
                player.kill()
            player.wait()
        self.players.clear()
        for name in [n for n in self.modules if n not in (MIC_SINK, SPEAKER_SINK, VIRTUAL_MIC)]:
            self.unload_sink(name)
        for sink in (MIC_SINK, SPEAKER_SINK):
            if sink not in self.modules:
                self.load_sink(sink)
        self.pactl("set-default-sink", SPEAKER_SINK)
        self.pactl("set-default-source", VIRTUAL_MIC)


def _server_pid(runtime: Path) -> int | None:
    try:
        return int((runtime / "pulse" / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


@contextmanager
def running_pulse_server(runtime: Path) -> Iterator[PulseServer]:
    """Start a private PulseAudio server in ``runtime`` with both virtual devices; this
    process and its children talk to it (``XDG_RUNTIME_DIR``, ``PULSE_SERVER``) until the
    block ends, then the server is stopped and the environment restored. The tests'
    ``pulse_server`` fixture and bench/app_cpu.py both use it."""
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ["PULSE_SERVER"] = f"unix:{runtime}/pulse/native"
    server = PulseServer(runtime)
    try:
        subprocess.run(
            ["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--system=false",
             "--disallow-exit", "--load=module-native-protocol-unix"],
            check=True, capture_output=True, timeout=30,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the private PulseAudio server did not start")
            time.sleep(0.1)
        server.reset()
        yield server
    finally:
        for player in server.players:
            player.kill()
            player.wait()
        _stop_server(runtime)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _stop_server(runtime: Path) -> None:
    pid = _server_pid(runtime)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            os.kill(pid, 0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory):
    """A private PulseAudio server for the session (skips if pulseaudio is missing)."""
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("pulseaudio/pactl are not installed (bash packaging/bootstrap.sh test "
                    "installs them)")
    with running_pulse_server(tmp_path_factory.mktemp("pulse-runtime")) as server:
        yield server


@pytest.fixture
def pulse(pulse_server: PulseServer):
    """The session's server, with both virtual devices present and the defaults set at
    the start of the test; players and extra sinks are removed after it."""
    pulse_server.reset()
    yield pulse_server
    pulse_server.reset()
