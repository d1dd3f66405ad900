"""The real app against real devices: a private PulseAudio server (tests/support/pulse.py),
real PortAudio capture, the real streamer and the built-in meetcap server.

Sounds are played into the virtual devices with paplay while the window records; the
tests read what the window shows (meters, health lines, banner, connection panel) and,
at the end, the files the server stored.
"""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
import soundfile as sf

from meetcap.constants import FRAME_SAMPLES
from meetcap.levels import Health
from meetcap.server import EmbeddedServer, ServerConfig
from meetcap.session import Phase, SessionSettings
from tests.gui.helpers import app_settings, rms_extent_px
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID
from tests.support.speech import make_tone

pytestmark = pytest.mark.timeout(120)


def both_sources(**changes) -> SessionSettings:
    return app_settings(**{"mic_device_id": MIC_ID, "system_device_id": SYSTEM_ID, "vad": False,
                           "normalize": False, **changes})


def start(qtbot, window, controller) -> None:
    """Press Start; wait until both the audio and the connection are live."""
    window.session_panel.button.click()
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=15_000)
    # PulseAudio's ALSA plugin takes about a second to deliver the first samples.
    qtbot.waitUntil(lambda: controller.recorder.frames_recorded > 0, timeout=10_000)
    qtbot.waitUntil(lambda: window.connection.state.text() == "Connected", timeout=10_000)


def stop(qtbot, window, controller):
    with qtbot.waitSignal(controller.session_finished, timeout=40_000) as finished:
        window.session_panel.button.click()
    assert controller.phase is Phase.IDLE
    return finished.args[0]


def loud(controller, source: str, above_dbfs: float = -35.0) -> bool:
    return controller.recorder.levels()[source].rms_dbfs > above_dbfs


def test_pickers_list_the_virtual_mic_and_the_speaker_monitor(pulse, make_window, qtbot):
    window, _, _ = make_window(app_settings())  # nothing chosen yet: the defaults are picked
    mic_picker = window.strips["mic"].picker
    system_picker = window.strips["system"].picker
    qtbot.waitUntil(lambda: mic_picker.findData(MIC_ID) >= 0, timeout=10_000)
    assert system_picker.findData(SYSTEM_ID) >= 0
    assert "(system audio)" in system_picker.itemText(system_picker.findData(SYSTEM_ID))
    assert "(system audio)" not in mic_picker.itemText(mic_picker.findData(MIC_ID))
    assert mic_picker.current_id() == MIC_ID, "the default microphone is picked"
    assert system_picker.current_id() == SYSTEM_ID, "the default output's monitor is picked"
    assert window.store.load().device_id("mic") == MIC_ID or window.save_timer.isActive()
    # Hot-plug: a new output appears in the list, and leaves it again.
    pulse.load_sink("meetcap_usb_headset", "USB_Headset")
    headset = "pulse:meetcap_usb_headset.monitor"
    qtbot.waitUntil(lambda: system_picker.findData(headset) >= 0, timeout=5_000)
    pulse.unload_sink("meetcap_usb_headset")
    qtbot.waitUntil(lambda: system_picker.findData(headset) < 0, timeout=5_000)


def test_speech_into_one_device_moves_only_that_strips_meter(
    pulse, make_window, qtbot, speech_files
):
    window, controller, _ = make_window(both_sources(vad=True))
    start(qtbot, window, controller)
    mic_meter = window.strips["mic"].meter
    system_meter = window.strips["system"].meter
    player = pulse.play(speech_files["mic"].path, MIC_SINK)
    qtbot.waitUntil(lambda: rms_extent_px(mic_meter) > 0.3 * mic_meter.bar_rect().width(),
                    timeout=5_000)
    assert rms_extent_px(system_meter) < 0.05 * system_meter.bar_rect().width()
    qtbot.waitUntil(lambda: window.mix_strip.speech, timeout=5_000)  # VAD on: speech light
    numbers = window.strips["mic"].numbers.text()
    assert "peak" in numbers and "--" not in numbers
    player.wait(timeout=30)
    pulse.play(speech_files["system"].path, SPEAKER_SINK)
    qtbot.waitUntil(
        lambda: rms_extent_px(system_meter) > 0.3 * system_meter.bar_rect().width(),
        timeout=5_000)
    result = stop(qtbot, window, controller)
    assert result.ok, result.message


def test_the_gain_slider_changes_the_level_by_the_db_it_says(pulse, make_window, qtbot,
                                                             tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=8.0, amplitude=0.3)
    window, controller, _ = make_window(both_sources(system_device_id=""))
    start(qtbot, window, controller)
    pulse.play(tone.path, MIC_SINK)
    qtbot.waitUntil(lambda: loud(controller, "mic"), timeout=5_000)
    qtbot.wait(600)
    before = np.mean([_sample(qtbot, controller, "mic") for _ in range(5)])
    gain = window.strips["mic"].gain
    gain.slider.setValue(-12)  # as a person drags it: 0.5 dB steps
    assert gain.value_label.text() == "-6.0 dB"
    qtbot.wait(600)
    after = np.mean([_sample(qtbot, controller, "mic") for _ in range(5)])
    assert after - before == pytest.approx(-6.0, abs=0.5)
    assert controller.settings.capture.gain_db["mic"] == -6.0
    stop(qtbot, window, controller)


def _sample(qtbot, controller, source: str) -> float:
    qtbot.wait(100)  # one meter window
    return controller.recorder.levels()[source].rms_dbfs


def test_a_source_turning_to_digital_zeros_raises_the_muted_warning_within_2_s(
    pulse, make_window, qtbot, tmp_path
):
    tone = make_tone(tmp_path, "tone", seconds=2.0, amplitude=0.3)
    window, controller, tray = make_window(both_sources(system_device_id=""))
    start(qtbot, window, controller)
    player = pulse.play(tone.path, MIC_SINK)
    qtbot.waitUntil(lambda: loud(controller, "mic"), timeout=5_000)
    assert "is muted" not in window.banner.text()
    player.wait(timeout=30)  # the tone ends: the null sink delivers exact zeros from here
    zeros_at = time.monotonic()
    qtbot.waitUntil(lambda: "Microphone is muted" in window.banner.text(), timeout=4_000)
    took = time.monotonic() - zeros_at
    print(f"muted warning shown {took:.2f} s after the zeros started")
    assert took <= 2.0
    assert window.strips["mic"].health.text().startswith("Muted")
    assert any(title == "Microphone is muted" for title, _ in tray.notifications), \
        "the tray announces it too"
    stop(qtbot, window, controller)


def test_unplugging_a_device_shows_it_lost_while_the_other_keeps_recording(
    pulse, make_window, qtbot, tmp_path
):
    tone = make_tone(tmp_path, "tone", seconds=20.0, amplitude=0.3)
    window, controller, _ = make_window(both_sources())
    start(qtbot, window, controller)
    mic_player = pulse.play(tone.path, MIC_SINK)
    pulse.play(tone.path, SPEAKER_SINK)
    qtbot.waitUntil(lambda: loud(controller, "mic") and loud(controller, "system"),
                    timeout=5_000)
    # PulseAudio would move the mic sink's player to the speakers when the sink goes,
    # and a second 440 Hz tone there can cancel the first; a real microphone has no
    # player to move.
    mic_player.kill()
    mic_player.wait()
    pulse.unload_sink(MIC_SINK)  # the microphone is unplugged
    qtbot.waitUntil(lambda: window.strips["mic"].health.text().startswith("Device lost"),
                    timeout=5_000)
    assert "Microphone disconnected" in window.banner.text()
    assert "system audio keeps recording" in window.banner.text()
    for strip in window.strips.values():  # the window grew for the banner: nothing squeezed
        qtbot.waitUntil(lambda s=strip: s.meter.height() >= s.meter.sizeHint().height(),
                        timeout=1_000)
    system_meter = window.strips["system"].meter
    for _ in range(5):  # the other strip keeps moving, the session keeps running
        qtbot.wait(200)
        assert loud(controller, "system")
        assert rms_extent_px(system_meter) > 0.3 * system_meter.bar_rect().width()
    frames = controller.recorder.frames_recorded
    assert controller.phase is Phase.RECORDING
    pulse.reload_sink(MIC_SINK)  # plugged back in
    pulse.play(tone.path, MIC_SINK)
    qtbot.waitUntil(lambda: loud(controller, "mic"), timeout=10_000)
    assert controller.recorder.levels()["mic"].health is not Health.LOST
    qtbot.waitUntil(lambda: "Microphone disconnected" not in window.banner.text(), timeout=2_000)
    assert controller.recorder.frames_recorded > frames
    result = stop(qtbot, window, controller)
    assert result.ok, result.message


def test_a_server_restart_shows_reconnecting_then_connected_and_loses_no_frame(
    pulse, make_window, qtbot, tmp_path, speech_files
):
    copies = tmp_path / "copies"
    window, controller, _ = make_window(both_sources(local_copy=str(copies)))
    start(qtbot, window, controller)
    pulse.play(speech_files["mic"].path, MIC_SINK)
    qtbot.wait(1_000)
    controller.recorder.local_server.stop()
    qtbot.waitUntil(lambda: window.connection.state.text().startswith("Reconnecting"),
                    timeout=5_000)
    qtbot.wait(1_000)  # audio keeps coming while the server is away: it waits in the spool
    assert controller.recorder.stream_status().frames_spooled >= 5
    assert int(window.connection.counters["frames_spooled"].text().replace(",", "")) > 0
    controller.recorder.local_server.start()
    qtbot.waitUntil(lambda: window.connection.state.text() == "Connected", timeout=10_000)
    assert controller.recorder.stream_status().reconnects >= 1
    pulse.play(speech_files["system"].path, SPEAKER_SINK)
    qtbot.wait(1_000)
    result = stop(qtbot, window, controller)
    assert result.ok and result.verified, result.message
    qtbot.waitUntil(lambda: result.message in window.session_panel.storage.text(), timeout=1_000)
    stored_pcm, _ = sf.read(controller.recorder.local_server.session_file(result.session_id),
                            dtype="int16")
    [copy_file] = copies.glob("meetcap-*.wav")
    copy_pcm, _ = sf.read(copy_file, dtype="int16")
    assert len(copy_pcm) == result.frames * FRAME_SAMPLES, "the copy holds every frame"
    assert np.array_equal(stored_pcm, copy_pcm), "the server holds every captured frame"
    assert hashlib.sha256(copy_pcm.astype("<i2").tobytes()).hexdigest() == result.sha256


def test_a_bad_token_is_shown_in_words_and_the_audio_is_kept(pulse, make_window, qtbot,
                                                             tmp_path):
    config = ServerConfig(tokens={"the-right-token": "alice"}, port=0,
                          data_dir=tmp_path / "remote")
    with EmbeddedServer(config) as server:
        window, controller, _ = make_window(
            both_sources(server_url=server.url, token="a-wrong-token"))
        window.session_panel.button.click()
        qtbot.waitUntil(lambda: window.connection.state.text().startswith("Failed"),
                        timeout=10_000)
        text = window.connection.state.text()
        assert "token" in text.lower() and "Traceback" not in text
        qtbot.waitUntil(lambda: "The server refused the recording" in window.banner.text(),
                        timeout=1_000)
        assert "offers to deliver it" in window.banner.text()
        qtbot.waitUntil(lambda: controller.recorder.frames_recorded >= 10, timeout=10_000)
        result = stop(qtbot, window, controller)
        assert not result.ok and result.frames_left >= 10, "the audio stays in the spool"


def test_closing_during_a_recording_asks_and_no_keeps_recording(pulse, make_window, qtbot,
                                                                monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    from meetcap.gui.main_window import ask_stop_and_quit

    window, controller, _ = make_window(both_sources(system_device_id=""))
    start(qtbot, window, controller)
    window.confirm_quit = ask_stop_and_quit
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args: QMessageBox.StandardButton.No)
    assert not window.close()
    frames = controller.recorder.frames_recorded
    qtbot.wait(500)
    assert controller.phase is Phase.RECORDING and controller.recorder.frames_recorded > frames
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args: QMessageBox.StandardButton.Yes)
    assert window.close()


def test_the_tray_menu_starts_and_stops_and_its_tooltip_follows(pulse, make_window, qtbot):
    window, controller, tray = make_window(both_sources(system_device_id=""))
    assert tray.record_action.text() == "Start recording"
    assert tray.icon.toolTip() == "meetcap: ready"
    tray.record_action.trigger()  # as from the tray's menu, with the window hidden
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=15_000)
    qtbot.waitUntil(lambda: tray.record_action.text() == "Stop recording", timeout=2_000)
    assert tray.icon.toolTip().startswith("meetcap: recording")
    assert window.session_panel.button.text() == "Stop", "the window shows the same session"
    with qtbot.waitSignal(controller.session_finished, timeout=40_000):
        tray.record_action.trigger()
    qtbot.waitUntil(lambda: tray.icon.toolTip() == "meetcap: ready", timeout=2_000)
    assert tray.record_action.text() == "Start recording"
