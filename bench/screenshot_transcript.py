"""The README's picture of the window with a live transcript (docs/screenshot-transcript.png).

    python bench/screenshot_transcript.py [--out docs/screenshot-transcript.png] [--lines 6]

What runs: a private PulseAudio server with the test rig's virtual devices
(tests/support/pulse.py), an Xvfb display, and the real app window in this process on
it (Qt's xcb platform), recording the virtual microphone and the speaker monitor into
its built-in server, which transcribes live (the packaged Whisper model). espeak-ng
sentences play into the two sinks in turn, like two people talking, over a quiet room
noise (a null sink is digital zeros between turns, which the app rightly calls muted).
Once the pane shows ``--lines`` final lines, the X screen is grabbed (QScreen.grabWindow on the root
window, cropped to the window's frame): what a person would see on that display.

(bench/app_cpu.py --screenshot uses ImageMagick's ``import``; this one needs nothing
beyond Xvfb and Qt.)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from tests.support.pulse import (  # noqa: E402 - after the path set-up
    MIC_ID,
    MIC_SINK,
    SPEAKER_SINK,
    SYSTEM_ID,
    running_pulse_server,
)
from tests.support.speech import PLAY_RATE_HZ, make_speech  # noqa: E402
from tests.support.xvfb import xvfb  # noqa: E402

# Two people in a meeting: what each says, in turn (sink, voice, pitch, text).
TURNS = (
    (MIC_SINK, "en", 40, "Good morning everyone. Let us start with the quarterly budget."),
    (SPEAKER_SINK, "en-us", 75, "Thanks. The remote team finished the release on Friday."),
    (MIC_SINK, "en", 40, "Great news. How do the numbers look after the release?"),
    (SPEAKER_SINK, "en-us", 75, "The numbers look fine, and we would like to move the "
                                "launch forward by one week."),
    (MIC_SINK, "en", 40, "That works for me. Next, the hiring plan for the new office."),
    (SPEAKER_SINK, "en-us", 75, "We have two offers out and one more interview on Monday."),
    (MIC_SINK, "en", 40, "Good. Then the last point is the office move in the spring."),
    (SPEAKER_SINK, "en-us", 75, "The movers are booked for the second week of April."),
)
DISPLAY = ":95"
SCREEN = "1100x1400x24"  # taller than the window, so nothing is cut off
NOISE_DBFS = -62.0  # a quiet room in both sinks: null sinks are digital zeros otherwise


def room_noise(directory: Path) -> Path:
    rng = np.random.default_rng(9)
    level = 10 ** (NOISE_DBFS / 20)
    samples = (level * rng.standard_normal(180 * PLAY_RATE_HZ)).astype(np.float32)
    path = directory / "room.wav"
    sf.write(path, samples, PLAY_RATE_HZ, subtype="FLOAT")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot-transcript.png")
    parser.add_argument("--lines", type=int, default=6)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="meetcap-shot-"))
    runtime = work / "pulse"
    runtime.mkdir()
    with running_pulse_server(runtime) as pulse, xvfb(DISPLAY, SCREEN):
        os.environ.update(DISPLAY=DISPLAY, QT_QPA_PLATFORM="xcb")
        turns = [(sink, make_speech(work, f"turn{i}", text, voice=voice, pitch=pitch,
                                    lead_s=0.2, tail_s=0.9).path)
                 for i, (sink, voice, pitch, text) in enumerate(TURNS)]
        noise = room_noise(work)
        for sink in (MIC_SINK, SPEAKER_SINK):
            pulse.play(noise, sink)
        return take(args, work, pulse, turns)


def take(args: argparse.Namespace, work: Path, pulse, turns) -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from meetcap.gui import icons, qt_compat
    from meetcap.gui.main_window import MainWindow
    from meetcap.gui.session_controller import SessionController
    from meetcap.gui.settings import SettingsStore
    from meetcap.gui.theme import apply_theme
    from meetcap.session import Phase

    qt_compat.apply()
    app = QApplication(["meetcap"])
    app.setWindowIcon(icons.icon("meetcap"))
    apply_theme(app)
    store = SettingsStore.at_path(work / "settings.ini")
    settings = store.defaults()
    settings.capture.mic_device_id = MIC_ID
    settings.capture.system_device_id = SYSTEM_ID
    settings.transcribe = True
    controller = SessionController(settings, data_root=work / "data")
    window = MainWindow(controller, store)
    controller.start_services()
    window.show()
    window.resize(820, window.height())
    done = threading.Event()

    def speak() -> None:
        for sink, path in turns:
            pulse.play(path, sink).wait()
        done.set()

    def started() -> None:
        threading.Thread(target=speak, daemon=True).start()

    controller.session_started.connect(lambda _info: QTimer.singleShot(1500, started))
    window.start_recording()
    deadline = time.monotonic() + 120
    pane = window.transcript
    while time.monotonic() < deadline and len(pane.segments) < args.lines:
        app.processEvents()
        time.sleep(0.02)
    # The next sentence's partial makes the picture: wait for one, briefly.
    until = time.monotonic() + 4
    while time.monotonic() < until and pane.view.partial is None:
        app.processEvents()
        time.sleep(0.02)
    for _ in range(10):  # let the meters and labels catch up with the last events
        app.processEvents()
        time.sleep(0.05)
    frame = window.frameGeometry()
    shot = app.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(),
                                          frame.height())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    shot.save(str(args.out))
    print(f"{len(pane.segments)} final lines"
          f"{' and a partial' if pane.view.partial else ''} shown; screenshot "
          f"({frame.width()}x{frame.height()}) saved to {args.out}")
    window.confirm_quit = lambda parent: True
    if controller.phase is Phase.RECORDING:
        controller.stop()
    while controller.phase is not Phase.IDLE and time.monotonic() < deadline + 60:
        app.processEvents()
        time.sleep(0.02)
    controller.shutdown(10.0)
    window.close()
    return 0 if len(pane.segments) >= args.lines else 1


if __name__ == "__main__":
    sys.exit(main())
