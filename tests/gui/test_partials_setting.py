"""The "Live partial text" switch in the app's settings: on by default, kept, and what
the built-in server runs with (its workers compute no partial when it is off)."""

from __future__ import annotations

import pytest

from meetcap.gui.settings import SettingsStore
from meetcap.session import Phase
from tests.gui.helpers import app_settings
from tests.support.pulse import MIC_ID

pytestmark = pytest.mark.timeout(180)


def test_live_partial_text_is_on_by_default_and_a_hand_edited_value_gives_the_default(
    tmp_path
):
    assert SettingsStore.at_path(tmp_path / "fresh.ini").load().partials is True
    path = tmp_path / "edited.ini"
    path.write_text("[transcription]\npartials=sometimes\n")
    assert SettingsStore.at_path(path).load().partials is True


def test_the_switch_is_saved_restored_and_greyed_out_without_transcription(make_window,
                                                                           qtbot):
    window, controller, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    dialog = window.open_settings()
    assert dialog.partials_box.isChecked() and dialog.partials_box.isEnabled()
    dialog.partials_box.setChecked(False)
    dialog.accept()
    assert controller.settings.partials is False
    assert SettingsStore.at_path(window.store.location).load().partials is False, "saved"
    dialog = window.open_settings()
    assert not dialog.partials_box.isChecked(), "the dialog shows the saved choice"
    dialog.transcribe_box.setChecked(False)
    assert not dialog.partials_box.isEnabled(), "no partial text without a transcript"
    dialog.transcribe_box.setChecked(True)
    assert dialog.partials_box.isEnabled()
    dialog.reject()


def record_briefly(window, controller, qtbot):
    """Start a session from the window's button, then stop it; the built-in server as it
    ran during the session: (transcribing, with partials)."""
    window.session_panel.button.click()
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=30_000)
    server = controller.recorder.local_server
    assert server is not None and server.running
    running = (server.transcribing, server.partials)
    with qtbot.waitSignal(controller.session_finished, timeout=60_000):
        window.session_panel.button.click()
    return running


def test_the_switch_reaches_the_built_in_server(pulse, make_window, qtbot):
    window, controller, _ = make_window(
        app_settings(mic_device_id=MIC_ID, system_device_id="", vad=False))
    dialog = window.open_settings()
    dialog.partials_box.setChecked(False)
    dialog.accept()
    assert record_briefly(window, controller, qtbot) == (True, False)
    # Switched back on: the server (still running, without partials) is restarted with.
    dialog = window.open_settings()
    dialog.partials_box.setChecked(True)
    dialog.accept()
    assert record_briefly(window, controller, qtbot) == (True, True)
