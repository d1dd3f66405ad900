"""Transcription can be switched off in the app's settings, and the choice is kept."""

from __future__ import annotations

import pytest

from meetcap.gui.settings import SettingsStore
from meetcap.session import Phase
from tests.gui.helpers import app_settings
from tests.support.pulse import MIC_ID

pytestmark = pytest.mark.timeout(120)


def test_transcription_is_on_by_default_and_a_hand_edited_value_gives_the_default(tmp_path):
    assert SettingsStore.at_path(tmp_path / "fresh.ini").load().transcribe is True
    path = tmp_path / "edited.ini"
    path.write_text("[transcription]\nenabled=perhaps\n")
    assert SettingsStore.at_path(path).load().transcribe is True


def test_switching_transcription_off_in_the_dialog_is_saved_and_restored(make_window, qtbot):
    window, controller, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    dialog = window.open_settings()
    assert dialog.transcribe_box.isChecked()
    dialog.transcribe_box.setChecked(False)
    dialog.accept()
    assert controller.settings.transcribe is False
    assert window.store.load().transcribe is False, "saved at once"
    again = SettingsStore.at_path(window.store.location).load()
    assert again.transcribe is False, "restored at the next start"
    dialog = window.open_settings()
    assert not dialog.transcribe_box.isChecked(), "the dialog shows the saved choice"
    dialog.transcribe_box.setChecked(True)
    dialog.accept()
    assert SettingsStore.at_path(window.store.location).load().transcribe is True


def test_with_transcription_off_the_built_in_server_does_not_transcribe(pulse, make_window,
                                                                       qtbot):
    window, controller, _ = make_window(
        app_settings(mic_device_id=MIC_ID, system_device_id="", vad=False, transcribe=False))
    window.session_panel.button.click()
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=15_000)
    server = controller.recorder.local_server
    assert server is not None and server.running and not server.transcribing
    with qtbot.waitSignal(controller.session_finished, timeout=40_000):
        window.session_panel.button.click()
