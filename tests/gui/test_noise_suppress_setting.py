"""Noise suppression of the microphone from the app's Settings dialog: off by default,
saved and restored, and it reaches the recorder's capture settings and the running chain
at once (real PulseAudio, real PortAudio: steady fan noise played into the microphone,
the mix meter before Start shows it drop)."""

from __future__ import annotations

import time

import pytest

from meetcap.gui.settings import SettingsStore
from meetcap.session import Phase
from tests.gui.helpers import app_settings
from tests.support.noise import FAN_DBFS, fan_noise
from tests.support.pulse import MIC_ID, MIC_SINK

pytestmark = pytest.mark.timeout(120)


def mix_dbfs(controller) -> float:
    return controller.recorder.levels()["mix"].rms_dbfs


def mean_mix_dbfs(controller, qtbot, seconds: float) -> float:
    """The mix meter's RMS read every 100 ms for ``seconds``, averaged (in dB)."""
    readings = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        qtbot.wait(100)
        readings.append(mix_dbfs(controller))
    return sum(readings) / len(readings)


def test_the_noise_switch_is_saved_and_takes_the_fan_out_of_the_mix_at_once(
    pulse, make_window, qtbot, tmp_path
):
    assert SettingsStore.defaults().capture.noise_suppress is False, "off by default"
    window, controller, _ = make_window(app_settings(
        mic_device_id=MIC_ID, system_device_id="", vad=False, normalize=False))
    pulse.play(fan_noise(tmp_path, seconds=9.0).path, MIC_SINK)
    # Before Start (the preview): the fan reaches the mix at its played level.
    qtbot.waitUntil(lambda: mix_dbfs(controller) > FAN_DBFS - 4, timeout=8_000)
    before = mean_mix_dbfs(controller, qtbot, 1.0)

    dialog = window.open_settings()
    assert not dialog.noise_box.isChecked()
    dialog.noise_box.setChecked(True)
    dialog.accept()
    capture = controller.recorder.settings.capture
    assert capture is controller.settings.capture and capture.noise_suppress is True
    assert SettingsStore.at_path(window.store.location).load().capture.noise_suppress is True
    # The running chain follows: the suppressor learns the noise within a second or two.
    qtbot.waitUntil(lambda: mix_dbfs(controller) < before - 5.0, timeout=4_000)
    after = mean_mix_dbfs(controller, qtbot, 1.0)
    print(f"\nfan noise in the mix before Start: {before:.1f} dBFS, with noise suppression "
          f"{after:.1f} dBFS ({before - after:.1f} dB down)")
    assert after < before - 5.0
    assert controller.phase is Phase.IDLE and controller.recorder.frames_recorded == 0

    dialog = window.open_settings()
    assert dialog.noise_box.isChecked(), "the dialog shows the saved choice"
    dialog.noise_box.setChecked(False)
    dialog.accept()
    assert controller.recorder.settings.capture.noise_suppress is False
    assert SettingsStore.at_path(window.store.location).load().capture.noise_suppress is False
