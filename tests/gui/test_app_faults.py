"""A bug in a worker reaches the person in the window, and the audio is kept (issue 8).

The bugs are injected by making one real method raise (a test-only monkeypatch; the
production code has no hook for it): the streamer's submit, on the capture
subscription's thread, and a device switch, on the session worker. Everything else is
real: PulseAudio with the test devices, the window, the built-in server.
"""

from __future__ import annotations

import pytest
import soundfile as sf

from meetcap.client.streamer import Streamer
from meetcap.session import Phase
from tests.gui.test_app_pulse import both_sources, start

pytestmark = pytest.mark.timeout(120)


def test_a_bug_while_keeping_frames_is_shown_and_what_was_captured_is_stored(
        pulse, make_window, qtbot, monkeypatch):
    real_submit = Streamer.submit

    def buggy_submit(self, frame):
        if frame.seq == 15:
            raise RuntimeError("injected bug in the frame path")
        real_submit(self, frame)

    monkeypatch.setattr(Streamer, "submit", buggy_submit)
    window, controller, _ = make_window(both_sources())
    finished = []
    controller.session_finished.connect(finished.append)
    start(qtbot, window, controller)
    qtbot.waitUntil(lambda: "internal error" in window.banner.text(), timeout=10_000)
    assert "injected bug in the frame path" in window.banner.text()
    # The session stops by itself, and the server holds every frame before the bug.
    qtbot.waitUntil(lambda: bool(finished), timeout=40_000)
    assert controller.phase is Phase.IDLE
    result = finished[0]
    assert result.ok and result.verified and result.frames == 15, result.message
    stored, _ = sf.read(controller.recorder.local_server.session_file(result.session_id),
                        dtype="int16")
    assert len(stored) == 15 * 1_600


def test_a_bug_in_a_session_worker_task_is_shown_in_the_window(pulse, make_window, qtbot,
                                                                monkeypatch):
    window, controller, _ = make_window(both_sources())

    def buggy_set_device(source, device_id):
        raise KeyError("injected bug in a worker task")

    monkeypatch.setattr(controller.recorder, "set_device", buggy_set_device)
    controller.set_device("mic", None)
    qtbot.waitUntil(lambda: "internal error while switching devices" in window.banner.text(),
                    timeout=5_000)
    assert "injected bug in a worker task" in window.banner.text()
