"""The app's "Two tracks" switch: restored from the saved settings, saved when changed,
and handed to the capture settings the next session's chain is made from."""

from __future__ import annotations

from tests.gui.helpers import app_settings


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
