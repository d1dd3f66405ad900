"""The app's "Two tracks" switch: restored from the saved settings, saved when changed,
and handed to the capture settings the next session's chain is made from; a server that
does not store two tracks is named in the window."""

from __future__ import annotations

import pytest

from meetcap.server import EmbeddedServer, ServerConfig
from tests.gui.helpers import app_settings
from tests.support.pulse import MIC_ID
from tests.support.server_proc import TOKEN

pytestmark = pytest.mark.timeout(120)


def test_the_tracks_switch_is_restored_saved_and_reaches_the_capture_settings(make_window, qtbot):
    saved = app_settings()
    saved.capture.tracks = True
    window, controller, _ = make_window(saved)
    box = window.mix_strip.tracks_box
    assert box.isChecked() and controller.settings.capture.tracks
    box.setChecked(False)
    qtbot.waitUntil(lambda: window.store.load().capture.tracks is False, timeout=2_000)
    assert controller.settings.capture.tracks is False
    box.setChecked(True)
    qtbot.waitUntil(lambda: window.store.load().capture.tracks is True, timeout=2_000)
    assert controller.settings.capture.tracks is True


def test_a_server_that_refuses_two_tracks_is_named_in_the_window(pulse, make_window, qtbot,
                                                                 tmp_path):
    """Two tracks asked, the server (meetcap-server --no-tracks) stores the mono mix
    only: the banner says so for the whole session, as a warning (nothing is lost), and
    says where both tracks can still be kept."""
    config = ServerConfig(tokens={TOKEN: "alice"}, port=0, data_dir=tmp_path / "remote",
                          accept_tracks=False)
    with EmbeddedServer(config) as server:
        settings = app_settings(mic_device_id=MIC_ID, system_device_id="", vad=False,
                                transcribe=False, server_url=server.url, token=TOKEN)
        settings.capture.tracks = True
        window, controller, _ = make_window(settings)
        window.session_panel.button.click()
        qtbot.waitUntil(lambda: window.connection.state.text() == "Connected", timeout=15_000)
        qtbot.waitUntil(lambda: "two tracks" in window.banner.text(), timeout=3_000)
        qtbot.wait(1_500)  # still there later in the session (not a flash)
        [warning] = [w for w in window.banner.warnings() if "two tracks" in w.title]
        assert warning.severity == "warning", "nothing is lost: a warning, not an error"
        assert "mono" in warning.text and "local copy" in warning.text
        with qtbot.waitSignal(controller.session_finished, timeout=40_000) as finished:
            window.session_panel.button.click()
        assert finished.args[0].ok, finished.args[0].message
    assert not list((tmp_path / "remote").rglob("*.tracks.wav"))
