"""When the server gives up transcribing the live session, the window says so: the
transcript pane's message line carries the server's sentence (which names `meetcap
transcribe <id>.wav`), the lag line goes (it would promise a catch-up), the banner shows
it as a recording problem, and recording goes on.

The first test drives the pane through its public slots (pytest-qt). The second is the
whole app on real PulseAudio with the built-in server; its transcription worker is made
to crash on the session by its test-only fault-injection hook
(MEETCAP_FAULT_CRASH_SESSIONS_FILE), as in tests/server/test_transcription_crash_bound.py.
"""

from __future__ import annotations

import pytest

from meetcap.server.transcription.worker import FAULT_CRASH_ENV
from meetcap.session import Phase
from meetcap.transcribe.segments import TranscriptSegment
from tests.gui.test_app_pulse import both_sources, start, stop

pytestmark = pytest.mark.timeout(180)

SENTENCE = ("transcription of this session stopped: the transcription worker crashed 3 "
            "times on its audio after 0.0 s (status 70); the audio is stored whole, and "
            "'meetcap transcribe 0123abcd.wav' can be tried on it")


def test_the_pane_says_the_server_gave_the_transcript_up_and_drops_the_lag_line(pane):
    pane.start_live("0123abcd")
    pane.add_live_segment(TranscriptSegment(0, 0.0, 2.0, "Hello there everyone.", True))
    pane.set_lag(12.0)
    assert pane.lag_label.isVisible() and not pane.message_label.isVisible()

    pane.set_live_failed(SENTENCE)
    assert pane.message_label.isVisible()
    assert pane.message_label.text() == "T" + SENTENCE[1:] + "."
    assert "meetcap transcribe 0123abcd.wav" in pane.message_label.text()
    assert not pane.lag_label.isVisible()  # it will not catch up
    pane.set_lag(14.0)  # the statuses go on (twice a second): the lag line stays away
    assert not pane.lag_label.isVisible()
    assert pane.view.toPlainText().endswith("Hello there everyone.")  # what came stays

    pane.start_live("4567cdef")  # the next session starts afresh
    assert not pane.message_label.isVisible() and pane.live_failed is None
    pane.set_lag(5.0)
    assert pane.lag_label.isVisible()


def test_the_app_shows_a_transcript_the_built_in_server_gave_up_and_keeps_recording(
        pulse, make_window, qtbot, tmp_path, monkeypatch):
    crash_file = tmp_path / "crash-sessions"
    crash_file.write_text("")
    monkeypatch.setenv(FAULT_CRASH_ENV, str(crash_file))  # the built-in server's workers
    window, controller, _ = make_window(both_sources(transcribe=True))
    doomed: list[str] = []

    def name_the_session(status) -> None:
        if not doomed and status.session_id:
            doomed.append(status.session_id)
            crash_file.write_text(status.session_id + "\n")

    controller.stream_status_changed.connect(name_the_session)
    pane = window.transcript
    start(qtbot, window, controller)
    qtbot.waitUntil(lambda: "meetcap transcribe" in pane.message_label.text(), timeout=90_000)
    session_id = doomed[0]
    said = pane.message_label.text()
    assert f"meetcap transcribe {session_id}.wav" in said and "crashed 3 times" in said
    assert pane.message_label.isVisible() and not pane.lag_label.isVisible()
    assert f"Recording problem: {said}" in window.banner.text()
    assert controller.phase is Phase.RECORDING  # the recording goes on
    result = stop(qtbot, window, controller)
    assert result.ok and result.verified, result.message
    assert pane.message_label.text() == said  # still there to read after Stop
