"""At start, the window offers the recordings an earlier run left in the spool (issue 8).

A recording spooled for the built-in server (as a crash mid-session leaves it) is
listed when the app starts; Deliver starts the built-in server and stores it there,
sample for sample. No sound server is needed: nothing is captured.
"""

from __future__ import annotations

import time

import numpy as np
import soundfile as sf

from meetcap import paths
from meetcap.client.config import BUILTIN_DESTINATION
from meetcap.client.spool import Spool
from tests.client.frames import synthetic_frames
from tests.gui.helpers import app_settings


def test_a_recording_left_for_the_built_in_server_is_offered_and_delivered_at_start(
        make_window, qtbot, tmp_path):
    window, controller, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    assert window.offer_pending_recordings() is None, "nothing waits: no dialog"
    spool = Spool.open(paths.spool_dir(controller.recorder.data_root))
    session = spool.new_session(time.time(), "ws://127.0.0.1:1/v1/stream",
                                destination=BUILTIN_DESTINATION)
    pcm = b""
    for frame in synthetic_frames(25, seed=7):
        session.append(frame)
        pcm += frame.pcm
    session.close()
    spool.close()

    dialog = window.offer_pending_recordings()
    assert dialog is not None and dialog.isVisible()
    assert [r.local_id for r in dialog.recordings] == [session.dir.name]
    with qtbot.waitSignal(dialog.operation_finished, timeout=40_000) as done:
        dialog.button("deliver", session.dir.name).click()
    local_id, ok, message = done.args
    assert ok, message
    stored = sorted(paths.sessions_dir(controller.recorder.data_root).glob("*.wav"))
    assert len(stored) == 1
    data, _ = sf.read(stored[0], dtype="int16")
    assert np.array_equal(data, np.frombuffer(pcm, dtype="<i2"))
    assert dialog.recordings == [], "delivered: nothing waits any more"
