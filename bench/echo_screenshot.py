#!/usr/bin/env python
"""The screenshot of the echo warning in the README (docs/screenshot-echo.png).

    python bench/echo_screenshot.py [FILE]

The real window (Qt offscreen) on the real echo rig (tests/support/echo_rig.py: a
private PulseAudio server; module-loopback from the speakers' monitor into the
microphone sink, 100 ms late, 15 dB down), before Start: the remote voice plays, the
microphone strip shows the echo score's warning, and the window is grabbed.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from PySide6.QtWidgets import QApplication

    from meetcap.gui.main_window import MainWindow
    from meetcap.gui.session_controller import SessionController
    from meetcap.gui.settings import SettingsStore
    from meetcap.gui.theme import apply_theme
    from tests.support.echo_rig import echo_path
    from tests.support.pulse import MIC_ID, SPEAKER_SINK, SYSTEM_ID, running_pulse_server
    from tests.support.speech import make_speech

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot-echo.png"
    work = Path(tempfile.mkdtemp(prefix="meetcap-echo-shot-"))
    runtime = work / "pulse"
    runtime.mkdir(mode=0o700)
    remote = make_speech(work, "remote", "Thanks. The remote team finished the release on "
                         "Friday, and the numbers look fine for the next quarter.",
                         voice="en-us", pitch=75)
    app = QApplication([])
    apply_theme(app)
    with running_pulse_server(runtime) as pulse, echo_path(pulse, delay_ms=100, loss_db=15.0):
        settings = SettingsStore.defaults()
        settings.capture.mic_device_id, settings.capture.system_device_id = MIC_ID, SYSTEM_ID
        settings.capture.vad = False
        controller = SessionController(settings, data_root=work / "data")
        window = MainWindow(controller, SettingsStore.at_path(work / "settings.ini"))
        controller.start_services()
        window.show()
        strip = window.strips["mic"]
        player = pulse.play(remote.path, SPEAKER_SINK)
        deadline = time.monotonic() + 20
        shot = False
        while time.monotonic() < deadline and not shot:
            app.processEvents()
            time.sleep(0.03)
            numbers = strip.numbers.text() + window.strips["system"].numbers.text()
            if ("speakers reach the microphone" in strip.echo_line.label.text()
                    and "inf" not in numbers and time.monotonic() > deadline - 17
                    and controller.recorder.levels()["system"].rms_dbfs > -30):
                for _ in range(10):  # let the meters catch up
                    app.processEvents()
                    time.sleep(0.033)
                window.grab().save(str(out))
                shot = True
        player.wait(timeout=30)
        controller.shutdown(timeout_s=10.0)
        window.close()
    print(f"{out}: {'saved' if shot else 'NOT saved: the warning did not appear'}")
    return 0 if shot else 1


if __name__ == "__main__":
    raise SystemExit(main())
