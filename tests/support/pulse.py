"""Real, private sound servers with virtual devices: PulseAudio, and PipeWire with its
PulseAudio server (pipewire-pulse), which most current Linux desktops run instead.

Two null sinks stand for the hardware: what is played into ``meetcap_mic_sink`` comes
out of the virtual microphone ``meetcap_virtual_mic`` (a remapped source on the sink's
monitor), and what is played into ``meetcap_spk_sink`` is the "system audio", captured
from ``meetcap_spk_sink.monitor``. Both servers take the same ``pactl`` commands. Each
runs as root with no sound card and no systemd, in its own runtime dir, so parallel
test runs on one machine do not meet; ``XDG_RUNTIME_DIR`` and ``PULSE_SERVER`` point
this process and its children at the server in use.

PipeWire needs three processes: ``pipewire`` (the graph), ``wireplumber`` (the session
manager: it links streams to devices and keeps the default sink and source) and
``pipewire-pulse`` (the PulseAudio protocol). With no desktop session, WirePlumber wants
a D-Bus session bus, so the three run under ``dbus-run-session``, in a process group of
their own that is stopped as one.

Fixtures: ``pulse`` (per test: the server, both devices present, the defaults set,
extra sinks and players cleaned up afterwards) talks to PulseAudio. A module marked
``pytest.mark.sound_servers("pulseaudio", "pipewire")`` runs each test that uses
``pulse`` once per server, with the server in the test id (``test_x[pipewire]``). Each
server is started once, when a test first needs it, and both are stopped at the end of
the session (``sound_servers``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import pytest

MIC_SINK = "meetcap_mic_sink"
SPEAKER_SINK = "meetcap_spk_sink"
VIRTUAL_MIC = "meetcap_virtual_mic"
MIC_SOURCE = VIRTUAL_MIC
SYSTEM_SOURCE = f"{SPEAKER_SINK}.monitor"
MIC_ID = f"pulse:{MIC_SOURCE}"
SYSTEM_ID = f"pulse:{SYSTEM_SOURCE}"
SINK_RATE_HZ = 48_000
SERVER_KINDS = ("pulseaudio", "pipewire")
START_TIMEOUT_S = 15.0


@dataclass
class SoundServer:
    """Handle on a test server: play into sinks, take devices away and back.

    Subclasses start and stop one kind of server; everything else is PulseAudio's
    protocol (``pactl``, ``paplay``), which both kinds speak.
    """

    runtime_dir: Path
    modules: dict[str, int] = field(default_factory=dict)  # sink or source name -> module
    players: list[subprocess.Popen] = field(default_factory=list)
    started_in_s: float = 0.0  # from the start command to the devices and defaults in place

    kind: ClassVar[str] = ""
    mic_sink = MIC_SINK
    speaker_sink = SPEAKER_SINK
    mic_source = MIC_SOURCE
    system_source = SYSTEM_SOURCE
    mic_id = MIC_ID
    system_id = SYSTEM_ID

    @property
    def env(self) -> dict[str, str]:
        """What points a client (this process, its children) at this server."""
        return {"XDG_RUNTIME_DIR": str(self.runtime_dir),
                "PULSE_SERVER": f"unix:{self.runtime_dir}/pulse/native"}

    def activate(self) -> None:
        """Point this process and the children it starts from now on at this server."""
        os.environ.update(self.env)

    # -- lifetime, per kind

    @classmethod
    def missing_programs(cls) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        """Start the server in ``runtime_dir`` (returns before it answers)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    # -- the devices

    def pactl(self, *args: str) -> str:
        proc = subprocess.run(["pactl", *args], capture_output=True, text=True, timeout=10,
                              env={**os.environ, **self.env})
        if proc.returncode != 0:
            raise RuntimeError(f"pactl {' '.join(args)} failed on the {self.kind} server: "
                               f"{proc.stderr.strip()}")
        return proc.stdout.strip()

    def wait_until_answering(self) -> None:
        started = time.monotonic()
        deadline = started + START_TIMEOUT_S
        while subprocess.run(["pactl", "info"], capture_output=True,
                             env={**os.environ, **self.env}).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the private {self.kind} server did not start")
            time.sleep(0.02)

    def load_sink(self, sink: str, description: str | None = None) -> None:
        """Add a null sink (a "device"); the mic sink also gets the virtual mic on top."""
        args = ["load-module", "module-null-sink", f"sink_name={sink}", f"rate={SINK_RATE_HZ}"]
        if description:
            args.append(f"sink_properties=device.description={description}")
        self.modules[sink] = int(self.pactl(*args))
        if sink == MIC_SINK:
            self.modules[VIRTUAL_MIC] = int(
                self.pactl(
                    # One channel of the stereo monitor: a downmix would be a plain
                    # copy under PulseAudio but +3 dB under PipeWire.
                    "load-module", "module-remap-source", f"master={MIC_SINK}.monitor",
                    f"source_name={VIRTUAL_MIC}", "master_channel_map=front-left",
                    "channel_map=mono",
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
        # Like any other program's stream: without the no-move property meetcap adds to
        # this process's environment (meetcap.audio.linux_pulse.NO_MOVE_PROPERTY).
        env = {k: v for k, v in os.environ.items() if k != "PULSE_PROP"}
        player = subprocess.Popen(["paplay", "-d", sink, str(wav)], env={**env, **self.env})
        self.players.append(player)
        return player

    def stop_players(self) -> None:
        for player in self.players:
            if player.poll() is None:
                player.kill()
            player.wait()
        self.players.clear()

    def reset(self) -> None:
        """Both standard devices present, defaults set, no extra sink, no player left."""
        self.stop_players()
        for name in [n for n in self.modules if n not in (MIC_SINK, SPEAKER_SINK, VIRTUAL_MIC)]:
            self.unload_sink(name)
        for sink in (MIC_SINK, SPEAKER_SINK):
            if sink not in self.modules:
                self.load_sink(sink)
        # PipeWire's defaults are kept by WirePlumber, which applies them a moment later
        # (and only once it runs): set them until the server reports them.
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                self.pactl("set-default-sink", SPEAKER_SINK)
                self.pactl("set-default-source", VIRTUAL_MIC)
                info = json.loads(self.pactl("-f", "json", "info"))
            except RuntimeError as exc:
                info = {"error": str(exc)}
            if (info.get("default_sink_name"), info.get("default_source_name")) == (
                SPEAKER_SINK, VIRTUAL_MIC
            ):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.kind} server did not take the defaults: {info}")
            time.sleep(0.05)


class PulseAudioServer(SoundServer):
    """``pulseaudio -D``: it daemonises and writes its pid into the runtime dir."""

    kind: ClassVar[str] = "pulseaudio"

    @classmethod
    def missing_programs(cls) -> list[str]:
        return [p for p in ("pulseaudio", "pactl", "paplay") if shutil.which(p) is None]

    def start(self) -> None:
        subprocess.run(
            ["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--system=false",
             "--disallow-exit", "--load=module-native-protocol-unix"],
            check=True, capture_output=True, timeout=30, env={**os.environ, **self.env},
        )

    def stop(self) -> None:
        try:
            pid = int((self.runtime_dir / "pulse" / "pid").read_text().strip())
        except (OSError, ValueError):
            return
        _terminate(lambda sig: os.kill(pid, sig), lambda: os.kill(pid, 0))


# pipewire first (its socket is what the other two connect to), then the session
# manager and the PulseAudio server; `wait` keeps the group alive until it is stopped.
_PIPEWIRE_SCRIPT = """
pipewire &
i=0
while [ ! -S "$XDG_RUNTIME_DIR/pipewire-0" ] && [ $i -lt 500 ]; do sleep 0.01; i=$((i+1)); done
wireplumber &
pipewire-pulse &
wait
"""


class PipeWireServer(SoundServer):
    """``pipewire`` + ``wireplumber`` + ``pipewire-pulse`` under ``dbus-run-session``,
    in a new session (process group); their output goes to ``pipewire.log`` in the
    runtime dir."""

    kind: ClassVar[str] = "pipewire"
    _group: subprocess.Popen | None = None

    @classmethod
    def missing_programs(cls) -> list[str]:
        return [p for p in ("pipewire", "pipewire-pulse", "wireplumber", "dbus-run-session",
                            "pactl", "paplay") if shutil.which(p) is None]

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DISPLAY", "WAYLAND_DISPLAY", "DBUS_SESSION_BUS_ADDRESS",
                            "PULSE_SERVER", "PIPEWIRE_REMOTE", "PIPEWIRE_RUNTIME_DIR")}
        # WirePlumber remembers defaults and volumes under XDG_STATE_HOME; a private one
        # keeps root's real home (and other runs) out of it.
        env.update(XDG_RUNTIME_DIR=str(self.runtime_dir),
                   XDG_STATE_HOME=str(self.runtime_dir / "state"),
                   XDG_CONFIG_HOME=str(self.runtime_dir / "config"))
        with open(self.runtime_dir / "pipewire.log", "wb") as log:
            self._group = subprocess.Popen(
                ["dbus-run-session", "--", "sh", "-c", _PIPEWIRE_SCRIPT],
                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        group, self._group = self._group, None
        if group is None:
            return
        _terminate(lambda sig: os.killpg(group.pid, sig), lambda: os.killpg(group.pid, 0))
        group.wait(timeout=5)


def _terminate(send, alive) -> None:
    """SIGTERM, up to 5 s to go, then SIGKILL."""
    try:
        send(signal.SIGTERM)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            alive()
            time.sleep(0.05)
        send(signal.SIGKILL)
    except ProcessLookupError:
        pass


START_TIMES_S: dict[str, float] = {}  # kind -> seconds until ready, for the run's summary

SERVER_CLASSES: dict[str, type[SoundServer]] = {
    cls.kind: cls for cls in (PulseAudioServer, PipeWireServer)
}
PulseServer = SoundServer  # the name older code uses


@contextmanager
def running_sound_server(kind: str, runtime: Path) -> Iterator[SoundServer]:
    """Start a private server of ``kind`` in ``runtime`` with both virtual devices; this
    process and its children talk to it (``XDG_RUNTIME_DIR``, ``PULSE_SERVER``) until the
    block ends, then the server is stopped and the environment restored."""
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    server = SERVER_CLASSES[kind](runtime)
    server.activate()
    try:
        began = time.monotonic()
        server.start()
        server.wait_until_answering()
        server.reset()
        server.started_in_s = time.monotonic() - began
        yield server
    finally:
        server.stop_players()
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def running_pulse_server(runtime: Path) -> Iterator[SoundServer]:
    """A private PulseAudio server (see :func:`running_sound_server`); the tests and
    bench/app_cpu.py use it."""
    return running_sound_server("pulseaudio", runtime)


class SoundServers:
    """The session's servers: each kind started the first time a test asks for it and
    kept until the session ends; :meth:`use` points the environment at one."""

    def __init__(self, stack: ExitStack, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._stack = stack
        self._tmp = tmp_path_factory
        self._servers: dict[str, SoundServer] = {}

    def use(self, kind: str) -> SoundServer:
        if kind not in self._servers:
            missing = SERVER_CLASSES[kind].missing_programs()
            if missing:
                pytest.skip(f"{kind}: {', '.join(missing)} not installed "
                            "(bash packaging/bootstrap.sh test installs them)")
            runtime = self._tmp.mktemp(f"{kind}-runtime")
            runtime.chmod(0o700)
            self._servers[kind] = self._stack.enter_context(running_sound_server(kind, runtime))
            START_TIMES_S[kind] = self._servers[kind].started_in_s
        server = self._servers[kind]
        server.activate()
        return server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sound_servers(*kinds): run the module's tests that use the `pulse` "
                   f"fixture once per sound server kind ({', '.join(SERVER_KINDS)})",
    )


def pytest_terminal_summary(terminalreporter) -> None:
    if START_TIMES_S:
        ready = ", ".join(f"{kind} {seconds:.2f} s" for kind, seconds in START_TIMES_S.items())
        terminalreporter.write_line(f"sound servers ready (devices and defaults set) in: {ready}")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("sound_servers")
    if marker is not None and "sound_server_kind" in metafunc.fixturenames:
        # Module scope: pytest runs a module's tests grouped by server.
        metafunc.parametrize("sound_server_kind", marker.args or SERVER_KINDS, scope="module")


@pytest.fixture(scope="session")
def sound_server_kind() -> str:
    """The server ``pulse`` talks to: PulseAudio unless the module is marked
    ``sound_servers(...)`` (then each test runs once per kind)."""
    return "pulseaudio"


@pytest.fixture(scope="session")
def sound_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoundServers]:
    with ExitStack() as stack:
        yield SoundServers(stack, tmp_path_factory)


@pytest.fixture
def pulse_server(sound_servers: SoundServers, sound_server_kind: str) -> SoundServer:
    """The server of ``sound_server_kind``, started if it is not yet, and in use (the
    environment points at it). Skips if its programs are not installed."""
    return sound_servers.use(sound_server_kind)


@pytest.fixture
def pulse(pulse_server: SoundServer):
    """The server, with both virtual devices present and the defaults set at the start
    of the test; players and extra sinks are removed after it."""
    pulse_server.reset()
    yield pulse_server
    pulse_server.reset()
