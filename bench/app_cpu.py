"""CPU of the whole desktop app while it records two sources with VAD and live meters.

    python bench/app_cpu.py [--seconds 30] [--display xvfb|offscreen] [--screenshot FILE]

What runs: a private PulseAudio server with the test rig's virtual devices
(tests/support/pulse.py), the real app in its own process (``python -m meetcap.gui.app
--start``) capturing the virtual microphone and the speaker monitor, VAD and
normalisation on, streaming to its built-in server, meters repainting on a real X
server (Xvfb) by default. Speech (espeak-ng) plays into both sinks the whole time.

What is measured: the app process's CPU time (user + system, all its threads, plus any
child process it started) over ``--seconds`` of recording, as % of one core. The
PulseAudio server and the players are not the app and are reported separately.
Target: < 5 % of one core.

``--screenshot FILE`` also saves the app's window mid-run (``import -window`` on the Xvfb
display): that is how docs/screenshot.png is made.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.pulse import (  # noqa: E402 - after the path set-up
    MIC_ID,
    MIC_SINK,
    SPEAKER_SINK,
    SYSTEM_ID,
    PulseServer,
)
from tests.support.speech import PLAY_RATE_HZ, make_speech  # noqa: E402

TARGET_PERCENT = 5.0


@contextmanager
def private_pulse(runtime: Path):
    """A PulseAudio server of our own (as the tests' ``pulse_server`` fixture starts it)."""
    env_before = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "PULSE_SERVER")}
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    os.environ["PULSE_SERVER"] = f"unix:{runtime}/pulse/native"
    subprocess.run(["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--system=false",
                    "--disallow-exit", "--load=module-native-protocol-unix"],
                   check=True, capture_output=True, timeout=30)
    server = PulseServer(runtime)
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError("PulseAudio did not start")
            time.sleep(0.1)
        server.reset()
        yield server
    finally:
        for player in server.players:
            if player.poll() is None:
                player.kill()
            player.wait()
        pid_file = runtime / "pulse" / "pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
            except (ProcessLookupError, ValueError):
                pass
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def xvfb(display: str):
    """An Xvfb server on ``display`` for the run."""
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x1024x24", "-nolisten",
                             "tcp"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def long_speech(directory: Path) -> dict[str, Path]:
    """About 40 s of speech per source (espeak-ng sentences, repeated)."""
    texts = {
        "mic": ("Good morning everyone. Let us review the quarterly budget, then the hiring "
                "plan, and finally the dates for the product launch next month."),
        "system": ("Thanks. The remote team finished the release on Friday, the numbers look "
                   "fine, and we would like to move the launch forward by one week."),
    }
    files = {}
    for name, text in texts.items():
        speech = make_speech(directory, name, text, voice="en" if name == "mic" else "en-us",
                             pitch=40 if name == "mic" else 75, lead_s=0.3, tail_s=0.4)
        repeats = int(np.ceil(40.0 / speech.duration_s))
        path = directory / f"{name}-long.wav"
        sf.write(path, np.tile(speech.samples, repeats), PLAY_RATE_HZ, subtype="FLOAT")
        files[name] = path
    return files


def write_settings(path: Path) -> None:
    path.write_text(
        "[devices]\n"
        f"mic={MIC_ID}\nsystem={SYSTEM_ID}\n"
        "[processing]\nvad=true\nnormalize=true\n"
        "[gain_db]\nmic=0.0\nsystem=-3.0\n"
    )


def wait_recording(data_dir: Path, app: subprocess.Popen, timeout_s: float = 30.0) -> Path:
    """The session's WAV on the built-in server, once it grows (audio is flowing)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if app.poll() is not None:
            raise RuntimeError(f"the app exited with {app.returncode}")
        wavs = sorted((data_dir / "sessions").glob("*.wav"))
        if wavs and wavs[-1].stat().st_size > 44 + 3200 * 10:
            return wavs[-1]
        time.sleep(0.2)
    raise RuntimeError("the app did not start recording")


def cpu_seconds(proc: psutil.Process) -> float:
    """CPU time of a process, its live children (``pactl subscribe``) and the children
    it has already reaped (each short ``pactl list`` run by a device listing)."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            pass
    return total


def window_geometry(env: dict[str, str]) -> str | None:
    """The app window's geometry on the X display, as ``WxH+X+Y``: the largest mapped
    top-level window titled "meetcap" (Qt also makes small helper windows)."""
    tree = subprocess.run(["xwininfo", "-root", "-children"], env=env, capture_output=True,
                          text=True).stdout
    best: tuple[int, str] | None = None
    for line in tree.splitlines():
        if '"meetcap"' not in line:
            continue
        geometry = line.split()[-2]  # e.g. 760x742+0+0
        size = geometry.split("+")[0]
        width, height = (int(v) for v in size.split("x"))
        if best is None or width * height > best[0]:
            best = (width * height, geometry)
    return best[1] if best else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--display", choices=("xvfb", "offscreen"),
                        default="xvfb" if shutil.which("Xvfb") else "offscreen")
    parser.add_argument("--screenshot", type=Path, help="save the window mid-run (xvfb)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meetcap-app-cpu-"))
    runtime = work / "pulse"
    runtime.mkdir()
    display = ":97"
    try:
        with private_pulse(runtime) as pulse, (
            xvfb(display) if args.display == "xvfb" else _nothing()
        ):
            speech = long_speech(work)
            settings = work / "settings.ini"
            write_settings(settings)
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            if args.display == "xvfb":
                env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
            else:
                env.update(QT_QPA_PLATFORM="offscreen")
            app = subprocess.Popen(
                [sys.executable, "-m", "meetcap.gui.app", "--start", "--settings",
                 str(settings), "--data-dir", str(work / "data")],
                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            log_lines: list[str] = []
            threading.Thread(target=lambda: log_lines.extend(app.stdout or []),
                             daemon=True).start()
            players_stop = threading.Event()
            try:
                wait_recording(work / "data", app)

                def keep_playing(path: Path, sink: str) -> None:
                    while not players_stop.is_set():
                        pulse.play(path, sink).wait()

                for name, sink in (("mic", MIC_SINK), ("system", SPEAKER_SINK)):
                    threading.Thread(target=keep_playing, args=(speech[name], sink),
                                     daemon=True).start()
                time.sleep(3.0)  # meters moving, VAD loaded, steady state
                proc = psutil.Process(app.pid)
                pulse_proc = psutil.Process(int((runtime / "pulse" / "pid").read_text()))
                cpu0, pulse0, wall0 = cpu_seconds(proc), cpu_seconds(pulse_proc), time.monotonic()
                shot_at = wall0 + args.seconds / 2
                shot_taken = False
                while time.monotonic() - wall0 < args.seconds:
                    time.sleep(0.25)
                    if args.screenshot and not shot_taken and time.monotonic() >= shot_at:
                        shot_taken = take_screenshot(args, env)
                cpu1, pulse1, wall1 = cpu_seconds(proc), cpu_seconds(pulse_proc), time.monotonic()
            finally:
                players_stop.set()
                if app.poll() is None:
                    app.send_signal(signal.SIGTERM)  # the app ends its session cleanly
                    try:
                        app.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        app.kill()
                        app.wait()
            wall = wall1 - wall0
            percent = 100.0 * (cpu1 - cpu0) / wall
            print(f"app CPU while recording two sources with VAD and meters "
                  f"({args.display}, {wall:.0f} s): {percent:.1f} % of one core "
                  f"(target < {TARGET_PERCENT:g} %)")
            print(f"  not the app: PulseAudio server {100.0 * (pulse1 - pulse0) / wall:.1f} %")
            print(f"  app exit code {app.returncode}; "
                  f"sessions stored: {len(list((work / 'data' / 'sessions').glob('*.wav')))}")
            if app.returncode != 0:
                lines = [line for line in log_lines if not line.startswith(("  File", "Thread "))]
                print("".join(lines)[-3000:])
            return 0 if percent < TARGET_PERCENT and app.returncode == 0 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


def take_screenshot(args: argparse.Namespace, env: dict[str, str]) -> bool:
    if args.display != "xvfb":
        print("--screenshot needs --display xvfb", file=sys.stderr)
        return True
    geometry = window_geometry(env)
    if geometry is None:
        return False
    args.screenshot.parent.mkdir(parents=True, exist_ok=True)
    # The whole screen, cropped to the window: what a person would see on the display.
    subprocess.run(["import", "-window", "root", "-crop", geometry, "+repage",
                    str(args.screenshot)], env=env, check=True)
    print(f"screenshot of the window ({geometry}) saved to {args.screenshot}")
    return True


@contextmanager
def _nothing():
    yield


if __name__ == "__main__":
    sys.exit(main())
