"""A real, private PulseAudio server with virtual devices, for the whole test session.

Two null sinks stand for the hardware: what is played into ``meetcap_mic_sink`` comes
out of the virtual microphone ``meetcap_virtual_mic`` (a remapped source on the sink's
monitor), and what is played into ``meetcap_spk_sink`` is the "system audio", captured
from ``meetcap_spk_sink.monitor``. The server runs as root with no sound card and no
systemd, in its own runtime dir so parallel test runs do not meet.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MIC_SINK = "meetcap_mic_sink"
SPEAKER_SINK = "meetcap_spk_sink"
VIRTUAL_MIC = "meetcap_virtual_mic"
MIC_ID = f"pulse:{VIRTUAL_MIC}"
SYSTEM_ID = f"pulse:{SPEAKER_SINK}.monitor"


@dataclass
class PulseServer:
    runtime_dir: Path
    modules: dict[str, int] = field(default_factory=dict)

    def pactl(self, *args: str) -> str:
        return subprocess.run(
            ["pactl", *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    def load_sink(self, sink: str) -> None:
        self.modules[sink] = int(
            self.pactl("load-module", "module-null-sink", f"sink_name={sink}", "rate=48000")
        )
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

    def play(self, wav: Path, sink: str) -> subprocess.Popen:
        """Start playing a file into a sink; returns the paplay process."""
        return subprocess.Popen(["paplay", "-d", sink, str(wav)])


@pytest.fixture(scope="session")
def pulse_server(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("pulseaudio") is None or shutil.which("pactl") is None:
        pytest.skip("pulseaudio is not installed (bash packaging/bootstrap.sh test installs it)")
    runtime = tmp_path_factory.mktemp("pulse-runtime")
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ.pop("PULSE_SERVER", None)
    subprocess.run(
        ["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--system=false", "--disallow-exit",
         "--load=module-native-protocol-unix"],
        check=True, capture_output=True, timeout=30,
    )
    server = PulseServer(runtime)
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the test PulseAudio server did not start")
        time.sleep(0.1)
    server.load_sink(MIC_SINK)
    server.load_sink(SPEAKER_SINK)
    server.pactl("set-default-sink", SPEAKER_SINK)
    server.pactl("set-default-source", VIRTUAL_MIC)
    yield server
    subprocess.run(["pulseaudio", "--kill"], capture_output=True, timeout=10)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def pulse(pulse_server: PulseServer):
    """The session's server, with both virtual devices present at the start of the test."""
    for sink in (MIC_SINK, SPEAKER_SINK):
        if sink not in pulse_server.modules:
            pulse_server.load_sink(sink)
    return pulse_server
