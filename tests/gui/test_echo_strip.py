"""The microphone strip's echo score and echo cancellation switch, and live levels before
Start, in the real app against real devices (a private PulseAudio server, real PortAudio
capture). The echo path is PulseAudio's module-loopback from the speakers' monitor into
the microphone sink (tests/support/echo_rig.py): a laptop without headphones."""

from __future__ import annotations

import pytest

from meetcap.session import Phase
from tests.gui.helpers import app_settings, rms_extent_px
from tests.support.echo_rig import echo_path
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID

pytestmark = pytest.mark.timeout(120)


def both_sources():
    return app_settings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, vad=False,
                        normalize=False)


def test_levels_and_the_echo_warning_show_before_start_and_the_switch_turns_it_off(
    pulse, make_window, qtbot, speech_files
):
    window, controller, _ = make_window(both_sources())
    strip = window.strips["mic"]
    assert strip.echo_switch is not None and strip.echo_switch.isChecked(), "auto by default"
    assert window.strips["system"].echo_switch is None, "the reference has no echo switch"
    with echo_path(pulse, delay_ms=100, loss_db=15.0):
        # Before Start: the person speaks, the mic meter moves and shows numbers.
        pulse.play(speech_files["mic"].path, MIC_SINK)
        qtbot.waitUntil(lambda: rms_extent_px(strip.meter) > 0.3 * strip.meter.bar_rect().width(),
                        timeout=10_000)
        qtbot.waitUntil(lambda: "--" not in strip.numbers.text(), timeout=2_000)
        # The remote side speaks: the speakers reach the mic, the strip says what to do.
        pulse.play(speech_files["system"].path, SPEAKER_SINK)
        qtbot.waitUntil(lambda: "speakers reach the microphone" in strip.echo_line.label.text(),
                        timeout=8_000)
        text = strip.echo_line.label.text()
        assert "use headphones, or keep echo cancellation on" in text
        qtbot.waitUntil(lambda: controller.recorder.levels()["mic"].echo_cancel, timeout=3_000)
        assert controller.phase is Phase.IDLE, "nothing was started"
        assert controller.recorder.frames_recorded == 0, "nothing recorded before Start"
        # The switch off: the canceller stops, the setting is kept for the next start.
        strip.echo_switch.click()
        assert controller.settings.capture.echo_cancel == "off"
        qtbot.waitUntil(lambda: not controller.recorder.levels()["mic"].echo_cancel,
                        timeout=3_000)
        qtbot.waitUntil(lambda: "turn echo cancellation on" in strip.echo_line.label.text(),
                        timeout=3_000)
        window.save_settings()
        assert window.store.load().capture.echo_cancel == "off"


def test_without_the_echo_path_the_strip_reads_clean(pulse, make_window, qtbot, speech_files):
    window, controller, _ = make_window(both_sources())
    strip = window.strips["mic"]
    pulse.play(speech_files["system"].path, SPEAKER_SINK)
    qtbot.waitUntil(lambda: "Echo: clean" in strip.echo_line.label.text(), timeout=10_000)
    assert not controller.recorder.levels()["mic"].echo_cancel, "auto stays off: no echo"
