"""Widget-level behaviour: meters, gain, device list, settings, messages, closing."""

from __future__ import annotations

import math

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QDialogButtonBox, QMessageBox

from meetcap.audio.devices import AudioDevice
from meetcap.gui.ballistics import MeterBallistics, dbfs_to_fraction
from meetcap.gui.banner import RENOTIFY_AFTER_S, WarningBanner, WarningTracker
from meetcap.gui.device_picker import NO_DEVICE_LABEL, DevicePicker
from meetcap.gui.gain_control import GainControl
from meetcap.gui.level_meter import LevelMeter
from meetcap.gui.settings import SettingsStore
from meetcap.gui.settings_dialog import SettingsDialog
from meetcap.gui.status_text import Warning, describe_stream, source_warnings
from meetcap.levels import Health, SourceLevels
from meetcap.session import Phase
from tests.gui.helpers import app_settings, rms_extent_px


def levels(rms: float, peak: float | None = None, clips: int = 0) -> SourceLevels:
    return SourceLevels("mic", peak_dbfs=rms + 6 if peak is None else peak, rms_dbfs=rms,
                        clip_count=clips, health=Health.OK)


def settle(meter: LevelMeter, snapshot: SourceLevels, seconds: float = 2.0,
           start: float = 0.0) -> float:
    """Feed one snapshot at 60 fps for ``seconds``; returns the end time."""
    t = start
    while t < start + seconds:
        meter.show_levels(snapshot, t)
        meter.tick(t)
        t += 1 / 60
    return t


# -- the level meter


def test_meter_maps_dbfs_to_bar_length(qtbot):
    meter = LevelMeter()
    qtbot.addWidget(meter)
    meter.resize(538, meter.sizeHint().height())
    width = meter.bar_rect().width()
    t = 0.0
    shown = {}
    for dbfs in (-90.0, -60.0, -40.0, -20.0, -6.0, 0.0):
        t = settle(meter, levels(dbfs), 1.5, t)
        shown[dbfs] = rms_extent_px(meter) / width
    assert shown[-90.0] == 0.0, "below the floor the bar is empty"
    assert shown[-20.0] == pytest.approx(0.5, abs=0.01), "-20 dBFS fills half the meter"
    assert shown[-40.0] == pytest.approx(0.15, abs=0.01)
    assert shown[-60.0] == pytest.approx(0.025, abs=0.01)
    assert shown[0.0] == pytest.approx(1.0, abs=0.01), "full scale fills the meter"
    values = [shown[k] for k in sorted(shown)]
    assert values == sorted(values), "louder is always longer"


def test_meter_bar_rises_at_once_and_falls_smoothly():
    ballistics = MeterBallistics()
    ballistics.feed(-10.0, -4.0, 0, 0.0)
    ballistics.advance(0.0)
    ballistics.advance(0.05)
    assert ballistics.rms_dbfs == pytest.approx(-10.0, abs=0.5), "rises within 50 ms"
    ballistics.feed(-80.0, -80.0, 0, 0.05)
    ballistics.advance(0.10)
    after_50ms = ballistics.rms_dbfs
    ballistics.advance(0.30)
    after_250ms = ballistics.rms_dbfs
    assert -30.0 < after_50ms < -10.0, "falls, but not at once (no flicker)"
    assert after_250ms < after_50ms - 10.0, "keeps falling"


def test_peak_hold_stays_then_decays_faster_and_faster():
    ballistics = MeterBallistics()
    ballistics.feed(-20.0, -6.0, 0, 0.0)  # one loud word...
    ballistics.advance(0.0)
    holds = {}
    t = 0.0
    while t < 4.0:
        t = round(t + 1 / 60, 6)
        ballistics.feed(-50.0, -40.0, 0, t)  # ...then quiet
        ballistics.advance(t)
        holds[round(t, 2)] = ballistics.peak_hold_dbfs
    assert holds[1.0] == -6.0 and holds[1.45] == -6.0, "held for 1.5 s"
    fall_first = holds[1.8] - holds[1.6]
    fall_later = holds[2.2] - holds[2.0]
    assert fall_first < 0 and fall_later < fall_first, "then falls, accelerating"
    assert holds[3.9] == -40.0, "and lands on the current peak"


def test_clip_indicator_latches_until_clicked(qtbot):
    meter = LevelMeter()
    qtbot.addWidget(meter)
    meter.resize(500, meter.sizeHint().height())
    meter.show()
    t = settle(meter, levels(-20.0, clips=2))
    assert not meter.ballistics.clipped, "a count carried from before is not a new clip"
    t = settle(meter, levels(-20.0, clips=3), 0.1, t)
    t = settle(meter, levels(-30.0, clips=3), 5.0, t)  # long after the clip
    assert meter.ballistics.clipped, "one clipped frame keeps the light on"
    with qtbot.waitSignal(meter.clip_cleared, timeout=1000):
        qtbot.mouseClick(meter, Qt.MouseButton.LeftButton,
                         pos=meter.clip_rect().center().toPoint())
    assert not meter.ballistics.clipped


def test_a_peak_at_full_scale_after_gain_lights_the_clip_indicator():
    ballistics = MeterBallistics()
    ballistics.feed(-6.0, 0.5, 0, 0.0)
    assert ballistics.clipped


def test_dbfs_scale_is_continuous_at_segment_joins():
    for joint in (-60.0, -50.0, -40.0, -30.0, -20.0):
        assert dbfs_to_fraction(joint - 1e-9) == pytest.approx(dbfs_to_fraction(joint), abs=1e-6)


# -- gain


def test_double_click_resets_gain_to_0_db(qtbot):
    control = GainControl()
    qtbot.addWidget(control)
    control.show()
    control.slider.setValue(12)  # +6 dB
    assert control.value_label.text() == "+6.0 dB"
    handle_x = control.slider.width() // 2
    with qtbot.waitSignal(control.gain_db_changed, timeout=1000) as signal:
        qtbot.mouseDClick(control.slider, Qt.MouseButton.LeftButton,
                          pos=QPoint(handle_x, control.slider.height() // 2))
    assert signal.args == [0.0]
    assert control.gain_db == 0.0
    assert control.value_label.text() == "0.0 dB"


def test_gain_runs_from_off_to_plus_12_db(qtbot):
    control = GainControl()
    qtbot.addWidget(control)
    control.slider.setValue(control.slider.minimum())
    assert control.gain_db == -math.inf and control.value_label.text() == "off"
    control.slider.setValue(control.slider.maximum())
    assert control.gain_db == 12.0 and control.value_label.text() == "+12.0 dB"
    control.set_gain_db(-7.3)
    assert control.value_label.text() == "-7.5 dB", "shown in 0.5 dB steps"


# -- devices


def _device(device_id: str, name: str, kind: str, default: bool = False) -> AudioDevice:
    return AudioDevice(device_id, name, kind, default, "PulseAudio", device_id)  # type: ignore[arg-type]


def test_device_picker_marks_system_audio_and_keeps_an_unplugged_pick(qtbot):
    picker = DevicePicker("mic")
    qtbot.addWidget(picker)
    headset = _device("pulse:headset", "USB Headset", "mic", default=True)
    monitor = _device("pulse:spk.monitor", "Monitor of Speakers", "loopback")
    picker.set_devices([monitor, headset])
    labels = [picker.itemText(i) for i in range(picker.count()) if picker.itemText(i)]
    assert labels == [NO_DEVICE_LABEL, "USB Headset  · default",
                      "Monitor of Speakers  (system audio)"], "own kind first, loopback marked"
    picker.set_current_id("pulse:headset")
    picker.set_devices([monitor])  # the headset is unplugged
    assert picker.current_id() == "pulse:headset"
    assert picker.currentText() == "USB Headset  (disconnected)"
    picker.set_devices([monitor, headset])  # and back
    assert picker.currentText() == "USB Headset  · default"


def test_picking_a_device_emits_its_id(qtbot):
    picker = DevicePicker("loopback")
    qtbot.addWidget(picker)
    picker.set_devices([_device("pulse:a.monitor", "Monitor of A", "loopback")])
    with qtbot.waitSignal(picker.device_changed, timeout=1000) as signal:
        picker.activated.emit(picker.findData("pulse:a.monitor"))
    assert signal.args == ["pulse:a.monitor"]


# -- settings


def test_settings_round_trip_through_qsettings(tmp_path):
    path = tmp_path / "meetcap.ini"
    saved = app_settings(
        mic_device_id="pulse:headset", system_device_id="",  # "" = none on purpose
        gain_db={"mic": -math.inf, "system": 4.5}, muted={"mic": True, "system": False},
        server_url="wss://meet.example.org/v1/stream", token="s3cret-token", vad=False,
        normalize=False, local_copy=str(tmp_path / "copies"),
    )
    SettingsStore.at_path(path).save(saved)
    assert SettingsStore.at_path(path).load() == saved
    fresh = SettingsStore.at_path(tmp_path / "fresh.ini").load()
    assert fresh == SettingsStore.defaults()
    assert fresh.capture.vad and fresh.capture.normalize and fresh.server_url == ""


def test_hand_edited_settings_fall_back_to_defaults(tmp_path):
    path = tmp_path / "meetcap.ini"
    path.write_text("[gain_db]\nmic=loud\nsystem=99\n[processing]\nvad=maybe\n")
    loaded = SettingsStore.at_path(path).load()
    assert loaded.capture.gain_db == {"mic": 0.0, "system": 12.0}, "bad -> 0 dB, too high -> +12 dB"
    assert loaded.capture.vad is True


def test_settings_never_touch_the_users_file(isolated_qsettings):
    store = SettingsStore()  # the default store, as the app uses it
    store.save(app_settings(server_url="ws://x.example:1/v1/stream"))
    assert store.location.startswith(str(isolated_qsettings))


# -- messages


@pytest.mark.parametrize("url, token, words", [
    ("http://meet.example.org", "tok-12345", "use ws:// for the same server"),
    ("ws://", "tok-12345", "names no host"),
    ("ws://meet.example.org:99999", "tok-12345", "invalid port"),
    ("ws://meet.example.org", "", "needs a token"),
    ("ws://meet.example.org", "two words", "without spaces"),
])
def test_a_bad_url_or_token_is_reported_in_words(qtbot, url, token, words):
    dialog = SettingsDialog(app_settings())
    qtbot.addWidget(dialog)
    dialog.url_edit.setText(url)
    dialog.token_edit.setText(token)
    message = dialog.message.text()
    assert words in message
    assert "Traceback" not in message and "Error" not in message
    assert message[0].isupper()
    assert not dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    dialog.url_edit.setText("wss://meet.example.org")
    dialog.token_edit.setText("tok-12345")
    assert dialog.message.text() == ""
    assert dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()


def test_reconnecting_and_failed_states_are_described(qtbot):
    class Status:
        state = "reconnecting"
        next_retry_in_s = 1.5
        reason = "the server went away"

    assert describe_stream(Status()).text.startswith("Reconnecting in 1.5 s (the server went away)")
    Status.state, Status.reason = "failed", "the server refused the token (HTTP 401)"
    line = describe_stream(Status())
    assert line.severity == "error" and "refused the token" in line.text


def test_warnings_say_what_to_do():
    muted = SourceLevels("mic", health=Health.MUTED, problem_for_s=3.0)
    [warning] = source_warnings("mic", muted, user_muted=False, has_device=True)
    assert warning.title == "Microphone is muted"
    assert "mute switch" in warning.text
    lost = SourceLevels("system", health=Health.LOST)
    [warning] = source_warnings("system", lost, user_muted=False, has_device=True)
    assert "microphone keeps recording" in warning.text


def test_a_warning_is_announced_once_while_it_lasts(qtbot):
    clock = [0.0]
    tracker = WarningTracker(clock=lambda: clock[0])
    silent = Warning("mic:silent", "warning", "Microphone has been silent for 10 s", "...")
    assert tracker.update([silent]) == [silent]
    assert tracker.update([silent]) == []
    assert tracker.update([]) == []
    clock[0] = 5.0
    assert tracker.update([silent]) == [], "flapping within a minute is not re-announced"
    tracker.update([])
    clock[0] = 5.0 + RENOTIFY_AFTER_S
    assert tracker.update([silent]) == [silent]
    banner = WarningBanner()
    qtbot.addWidget(banner)
    banner.show_warnings([silent])
    assert banner.isVisibleTo(None) or not banner.isHidden()
    assert "silent for 10 s" in banner.text()
    banner.show_warnings([])
    assert banner.isHidden()


# -- closing


def test_closing_while_recording_asks_first(make_window, qtbot, monkeypatch):
    from meetcap.gui.main_window import ask_stop_and_quit

    window, controller, _ = make_window()
    window.confirm_quit = ask_stop_and_quit
    asked = []

    def answer(result):
        def question(parent, title, text, *args):
            asked.append(text)
            return result
        return question

    # The phase alone decides whether to ask; a real recording is in test_app_pulse.py.
    monkeypatch.setattr(controller, "phase", Phase.RECORDING)
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    assert not window.close()
    assert window.isVisible() and "A recording is running" in asked[-1]
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    assert window.close()
    assert len(asked) == 2


def test_closing_when_idle_does_not_ask(make_window, monkeypatch):
    window, _, _ = make_window()
    asked = []
    window.confirm_quit = lambda parent: asked.append(1) or False
    assert window.close()
    assert asked == []


def test_the_window_restores_saved_settings_and_saves_changes(make_window, qtbot):
    saved = app_settings(mic_device_id="pulse:headset", system_device_id="",
                         gain_db={"mic": 4.5, "system": -6.0},
                         muted={"mic": False, "system": True}, vad=False, normalize=True)
    window, controller, _ = make_window(saved)
    mic, system = window.strips["mic"], window.strips["system"]
    assert mic.gain.value_label.text() == "+4.5 dB"
    assert system.muted and system.mute_button.text() == "Unmute"
    assert system.picker.current_id() is None, "'none' stays none"
    assert not window.mix_strip.vad_box.isChecked() and window.mix_strip.normalize_box.isChecked()
    assert controller.settings.capture.gain_db == {"mic": 4.5, "system": -6.0}
    mic.gain.slider.setValue(-6)  # -3 dB
    window.mix_strip.vad_box.setChecked(True)
    qtbot.waitUntil(lambda: window.store.load().capture.gain_db["mic"] == -3.0, timeout=2_000)
    assert window.store.load().capture.vad is True
    assert controller.settings.capture.gain_db["mic"] == -3.0, "applied to the audio at once"


def test_accepted_settings_dialog_is_saved(make_window, qtbot):
    window, _, _ = make_window()
    dialog = window.open_settings()
    dialog.url_edit.setText("wss://meet.example.org/v1/stream")
    dialog.token_edit.setText("tok-12345")
    dialog.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    stored = window.store.load()
    assert (stored.server_url, stored.token) == ("wss://meet.example.org/v1/stream", "tok-12345")
    assert window.connection.address.text() == "wss://meet.example.org/v1/stream"


@pytest.mark.parametrize("health, title, advice", [
    (Health.CLIPPING, "Microphone is clipping", "Lower its gain slider"),
    (Health.OVERRUN, "Microphone is dropping audio", "Close busy programs"),
    (Health.SILENT, "Microphone has been silent for 12 s", "Speak to test it"),
])
def test_clipping_dropouts_and_silence_raise_a_warning_that_says_what_to_do(health, title,
                                                                             advice):
    levels = SourceLevels("mic", health=health, problem_for_s=12.0)
    (warning,) = source_warnings("mic", levels, user_muted=False, has_device=True)
    assert warning.title == title and advice in warning.text
    assert warning.severity == "warning"
