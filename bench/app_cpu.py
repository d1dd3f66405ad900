"""CPU of the whole desktop app while it records two sources with VAD and live meters.

    python bench/app_cpu.py [--seconds 30] [--display xvfb|offscreen] [--screenshot FILE]
        [--transcribe on|off] [--partials on|off]

What runs: a private PulseAudio server with the test rig's virtual devices
(tests/support/pulse.py), the real app in its own process (``python -m meetcap.gui.app
--start``) capturing the virtual microphone and the speaker monitor, VAD and
normalisation on, streaming to its built-in server, meters repainting on a real X
server (Xvfb) by default. Speech (espeak-ng) plays into both sinks the whole time.

What is measured: the app process's CPU time (user + system, all its threads, plus any
child process it started) over ``--seconds`` of recording, as % of one core; then, in
the same run, the headless recorder (``meetcap record --vad``) on the same devices, so
the last line also says what the window, the streamer and the built-in server add. The
PulseAudio server and the players are not the app and are reported separately.
Target: < 5 % of one core.

``--screenshot FILE`` also saves the app's window mid-run (``import -window`` on the Xvfb
display): that is how docs/screenshot.png is made.

``--threads`` also prints where the app's CPU goes, thread by thread: utime + stime from
/proc/<pid>/task/*/stat at the start and the end of the window, each thread named by
``py-spy dump`` (its Python thread name; needs ``pip install py-spy`` and ptrace rights)
or else by its comm in brackets: PortAudio's callback threads show as ``[python]``, the
PulseAudio client's as ``[threaded-ml]``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
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
    running_pulse_server,
)
from tests.support.speech import PLAY_RATE_HZ, make_speech  # noqa: E402
from tests.support.xvfb import xvfb  # noqa: E402

TARGET_PERCENT = 5.0
SETTLE_S = 3.0  # meters moving, VAD loaded, steady state


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


def write_settings(path: Path, echo_cancel: str = "auto", transcribe: bool = True,
                   partials: bool = True) -> None:
    """The app's settings file, written by the app's own settings code."""
    from meetcap.audio.manager import CaptureSettings
    from meetcap.gui.settings import SettingsStore
    from meetcap.session import SessionSettings

    SettingsStore.at_path(path).save(SessionSettings(capture=CaptureSettings(
        mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, vad=True, normalize=True,
        gain_db={"mic": 0.0, "system": -3.0}, echo_cancel=echo_cancel,
    ), transcribe=transcribe, partials=partials))


def wait_growing(folder: Path, pattern: str, proc: subprocess.Popen,
                 timeout_s: float = 30.0) -> Path:
    """The newest file matching ``pattern`` in ``folder``, once it holds 1 s of audio."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{shlex.join(proc.args)} exited with {proc.returncode}")
        files = sorted(folder.glob(pattern))
        if files and files[-1].stat().st_size > 44 + 3200 * 10:
            return files[-1]
        time.sleep(0.2)
    raise RuntimeError(f"{shlex.join(proc.args)} did not start recording")


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


def python_children_seconds(proc: psutil.Process) -> dict[int, float]:
    """CPU time of each live Python child process (pid -> s): the built-in server's
    transcription workers (``pactl`` children are not Python)."""
    times = {}
    for p in proc.children(recursive=True):
        try:
            if "python" in p.name():
                t = p.cpu_times()
                times[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return times


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


@dataclass
class Run:
    """One measured process: its CPU over the window, and how it ended."""

    percent: float = 0.0
    workers_percent: float = 0.0  # the part of ``percent`` its Python child processes took
    exit_code: int | None = None
    log: list[str] = field(default_factory=list)
    threads: list[tuple[float, str]] = field(default_factory=list)  # (% of a core, name)


def thread_ticks(pid: int) -> dict[int, tuple[int, str]]:
    """utime + stime (clock ticks) and comm of each live thread of ``pid``."""
    ticks = {}
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # the thread ended
        comm = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        ticks[int(stat.parent.name)] = (int(fields[11]) + int(fields[12]), comm)
    return ticks


def python_thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from ``py-spy dump`` (empty without it)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True,
                             text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    names = {}
    for line in out.splitlines():
        if line.startswith("Thread ") and '"' in line:
            tid = line.split()[1]
            if tid.isdigit():
                names[int(tid)] = line.split('"')[1]
    return names


def per_thread(before: dict[int, tuple[int, str]], after: dict[int, tuple[int, str]],
               names: dict[int, str], wall_s: float) -> list[tuple[float, str]]:
    """% of one core per thread over the window, largest first (threads of one name summed)."""
    hz = os.sysconf("SC_CLK_TCK")
    totals: dict[str, float] = {}
    for tid, (ticks, comm) in after.items():
        used = ticks - before.get(tid, (0, comm))[0]
        name = names.get(tid, f"[{comm}]")
        totals[name] = totals.get(name, 0.0) + 100.0 * used / hz / wall_s
    return sorted(((p, n) for n, p in totals.items()), reverse=True)


def measure(argv: list[str], env: dict[str, str], ready: Callable[[subprocess.Popen], object],
            seconds: float, during: Callable[[float], None] = lambda elapsed: None,
            threads: bool = False) -> Run:
    """Start ``argv``, wait until ``ready``, settle, then measure its CPU for ``seconds``;
    end it with SIGINT, as Ctrl-C would (the app and the recorder finish their session).
    ``threads``: also split the process's own CPU by thread (``Run.threads``)."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    run = Run()
    threading.Thread(target=lambda: run.log.extend(proc.stdout or []), daemon=True).start()
    try:
        ready(proc)
        time.sleep(SETTLE_S)
        ps = psutil.Process(proc.pid)
        names = python_thread_names(proc.pid) if threads else {}
        ticks0 = thread_ticks(proc.pid) if threads else {}
        cpu0, wall0 = cpu_seconds(ps), time.monotonic()
        children0 = python_children_seconds(ps)
        while (elapsed := time.monotonic() - wall0) < seconds:
            time.sleep(0.25)
            during(elapsed)
        wall = time.monotonic() - wall0
        run.percent = 100.0 * (cpu_seconds(ps) - cpu0) / wall
        children1 = python_children_seconds(ps)
        run.workers_percent = 100.0 * sum(
            t - children0.get(pid, 0.0) for pid, t in children1.items()) / wall
        if threads:
            ticks1 = thread_ticks(proc.pid)
            names.update(python_thread_names(proc.pid))  # threads started in the window
            run.threads = per_thread(ticks0, ticks1, names, wall)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        run.exit_code = proc.returncode
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--display", choices=("xvfb", "offscreen"),
                        default="xvfb" if shutil.which("Xvfb") else "offscreen")
    parser.add_argument("--screenshot", type=Path, help="save the window mid-run (xvfb)")
    parser.add_argument("--echo-cancel", choices=("auto", "on", "off"), default="auto",
                        help="the app's and the recorder's echo cancellation (default auto)")
    parser.add_argument("--transcribe", choices=("on", "off"), default="on",
                        help="the app's live transcription (its setting; default on, as in "
                             "the app): the built-in server's workers count as the app's")
    parser.add_argument("--partials", choices=("on", "off"), default="on",
                        help="the app's \"Live partial text\" setting (default on): off, the "
                             "built-in server transcribes finals only")
    parser.add_argument("--echo-path", action="store_true",
                        help="the speakers reach the microphone (module-loopback, 100 ms, "
                             "-15 dB: tests/support/echo_rig.py), as on a laptop without "
                             "headphones; the mic strip then shows the echo warning")
    parser.add_argument("--threads", action="store_true",
                        help="also print each process's CPU by thread (names from py-spy)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="meetcap-app-cpu-"))
    runtime = work / "pulse"
    runtime.mkdir()
    display = ":97"
    try:
        with running_pulse_server(runtime) as pulse, (
            xvfb(display) if args.display == "xvfb" else _nothing()
        ):
            speech = long_speech(work)
            settings = work / "settings.ini"
            write_settings(settings, args.echo_cancel, args.transcribe == "on",
                           args.partials == "on")
            if args.echo_path:
                from tests.support.echo_rig import echo_path

                echo = echo_path(pulse, delay_ms=100, loss_db=15.0)
                echo.__enter__()  # until the server stops
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            app_env = dict(env, QT_QPA_PLATFORM="offscreen")
            if args.display == "xvfb":
                app_env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb")
            players_stop = threading.Event()

            def keep_playing(path: Path, sink: str) -> None:
                while not players_stop.is_set():
                    pulse.play(path, sink).wait()

            for name, sink in (("mic", MIC_SINK), ("system", SPEAKER_SINK)):
                threading.Thread(target=keep_playing, args=(speech[name], sink),
                                 daemon=True).start()
            pulse_ps = psutil.Process(int((runtime / "pulse" / "pid").read_text()))
            pulse0, pulse_wall0 = cpu_seconds(pulse_ps), time.monotonic()
            shot = {"taken": not args.screenshot}

            def screenshot_midway(elapsed: float) -> None:
                if not shot["taken"] and elapsed >= args.seconds / 2:
                    shot["taken"] = take_screenshot(args, app_env)

            sessions = work / "data" / "sessions"
            try:
                app = measure(
                    [sys.executable, "-m", "meetcap.gui.app", "--start", "--settings",
                     str(settings), "--data-dir", str(work / "data")], app_env,
                    lambda proc: wait_growing(sessions, "*.wav", proc),
                    args.seconds, screenshot_midway, threads=args.threads)
                # The same capture, VAD and normalisation without the window, the
                # streamer and the built-in server: what the audio core alone costs.
                recorder = measure(
                    [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID,
                     "--system", SYSTEM_ID, "--gain-system", "-3", "--vad",
                     "--echo-cancel", args.echo_cancel,
                     "--out", str(work / "recorder.wav")], env,
                    lambda proc: wait_growing(work, "recorder.wav", proc), args.seconds,
                    threads=args.threads)
            finally:
                players_stop.set()
            pulse_percent = 100.0 * (cpu_seconds(pulse_ps) - pulse0) / (
                time.monotonic() - pulse_wall0)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    stored = app.exit_code == 0 and recorder.exit_code == 0
    for label, run in (("app", app), ("headless recorder", recorder)):
        if run.threads:
            print(f"  {label} by thread (% of one core): " + ", ".join(
                f"{name} {percent:.2f}" for percent, name in run.threads if percent >= 0.05))
    print(f"  of the app's: its transcription worker processes {app.workers_percent:.1f} %, "
          f"the rest {app.percent - app.workers_percent:.1f} %")
    print(f"  headless recorder (meetcap record --vad, same devices): {recorder.percent:.1f} %")
    print(f"  not the app: PulseAudio server {pulse_percent:.1f} %; exit codes app "
          f"{app.exit_code}, recorder {recorder.exit_code}")
    for run in (app, recorder):
        if run.exit_code != 0:
            lines = [x for x in run.log if not x.startswith(("  File", "Thread "))]
            print("".join(lines)[-3000:])
    echo = (f", echo cancellation {args.echo_cancel}" + (", echo path" if args.echo_path else "")
            + f", transcription {args.transcribe}"
            + (", partials off" if args.transcribe == "on" and args.partials == "off" else ""))
    print(f"app CPU while recording two sources with VAD and meters ({args.display}, "
          f"{args.seconds:g} s{echo}): {app.percent:.1f} % of one core (target < "
          f"{TARGET_PERCENT:g} %), {app.percent / max(recorder.percent, 0.01):.1f}x the "
          "headless recorder")
    return 0 if app.percent < TARGET_PERCENT and stored else 1


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
