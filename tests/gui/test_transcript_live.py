"""The whole chain in the window: speech played into the real PulseAudio sinks, the app's
capture, its built-in server transcribing live (the packaged Whisper model), the
transcript messages back over the WebSocket, the pane. Then the pane's exports of that
session match the files the server stored, byte for byte. And the lag line with a real
lag: the built-in server's transcription workers stopped (SIGSTOP) while the meeting
goes on, then let go (SIGCONT)."""

from __future__ import annotations

import json
import re

import pytest
from pytestqt.exceptions import TimeoutError

from meetcap.session import Phase
from meetcap.transcribe import formats
from tests.gui.helpers import app_settings
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID

pytestmark = pytest.mark.timeout(180)


def test_speech_into_the_sinks_appears_in_the_pane_and_exports_match_the_stored_files(
    pulse, make_window, qtbot, speech_files, tmp_path
):
    window, controller, _ = make_window(app_settings(
        mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, vad=True, normalize=False,
        transcribe=True))
    pane = window.transcript

    # Whisper tiny.en on a busy 2-core machine mishears a word now and then ("quarterly
    # budget" came back as "water limit" once): a line counts as the sentence when it
    # holds most of these words.
    spoken = {"mic": {"morning", "everyone", "review", "budget", "hiring", "plan"},
              "system": {"remote", "team", "finished", "release", "friday", "numbers"}}

    def line_of(source: str) -> str | None:
        assert controller.phase is Phase.RECORDING, (
            f"the session ended by itself: {window.banner.text()}")
        for line in pane.view.toPlainText().split("\n"):
            words = set(line.lower().replace(",", " ").replace(".", " ").split())
            if len(words & spoken[source]) >= 4 and not line.endswith("…"):
                return line
        return None

    window.session_panel.button.click()
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=30_000)
    qtbot.waitUntil(lambda: controller.recorder.frames_recorded > 0, timeout=10_000)
    lines = {}
    for source, sink in (("mic", MIC_SINK), ("system", SPEAKER_SINK)):
        pulse.play(speech_files[source].path, sink).wait(timeout=30)
        try:
            qtbot.waitUntil(lambda s=source: line_of(s) is not None, timeout=30_000)
        except TimeoutError:  # say what the pane showed
            raise AssertionError(f"no final line of the {source} sentence; the pane shows:\n"
                                 f"{pane.view.toPlainText()}\nbanner: {window.banner.text()}"
                                 f"\nlevels: {controller.recorder.levels()}\nstatus: "
                                 f"{controller.recorder.stream_status()}") from None
        lines[source] = line_of(source)
    print("the pane shows:\n" + pane.view.toPlainText())
    assert lines["mic"][:5] <= "00:02", "times run from the session's start"
    assert lines["mic"][5:].startswith("  You: "), "the microphone's words are yours"
    assert lines["system"][5:].startswith("  Others: "), "the meeting's sound is the others'"
    with qtbot.waitSignal(controller.session_finished, timeout=60_000) as finished:
        window.session_panel.button.click()
    result = finished.args[0]
    assert result.ok, result.message
    # The stored transcript holds exactly the finals the pane shows.
    folder = window._builtin_folder()
    stored_json = folder / f"{result.session_id}.transcript.json"
    qtbot.waitUntil(stored_json.exists, timeout=10_000)
    stored = formats.from_json(json.loads(stored_json.read_text(encoding="utf-8")))
    assert [(s.id, s.text) for s in stored] == [(s.id, s.text) for s in pane.segments]
    for key, suffix in (("srt", ".srt"), ("vtt", ".vtt")):
        exported = pane.export_to(key, tmp_path / f"export{suffix}")
        assert exported.read_bytes() == (folder / f"{result.session_id}{suffix}").read_bytes()
    # The same session, opened from the list, shows the same lines, read-only.
    live_text = pane.view.toPlainText()
    dialog = pane.open_sessions()
    assert dialog is not None and dialog.sessions[0].session_id == result.session_id
    assert dialog.row_texts(0)[2] == "yes"
    dialog.open_row(0)
    assert pane.session is not None and pane.view.toPlainText() == live_text
    reopened = pane.export_to("vtt", tmp_path / "reopened.vtt")
    assert reopened.read_bytes() == (folder / f"{result.session_id}.vtt").read_bytes()


def transcription_workers() -> list:
    """The built-in server's transcription worker processes: it runs in this process,
    so they are children of the test process (spawned, named by the service)."""
    import multiprocessing

    import psutil

    return [psutil.Process(p.pid) for p in multiprocessing.active_children()
            if p.name.startswith("meetcap-transcribe-")]


def test_the_lag_line_shows_while_the_transcriber_is_stalled_and_goes_when_it_catches_up(
    pulse, make_window, qtbot, speech_files
):
    window, controller, _ = make_window(app_settings(
        mic_device_id=MIC_ID, system_device_id="", vad=True, normalize=False,
        transcribe=True))
    pane = window.transcript
    window.session_panel.button.click()
    qtbot.waitUntil(lambda: controller.phase is Phase.RECORDING, timeout=30_000)
    qtbot.waitUntil(lambda: controller.recorder.frames_recorded > 0, timeout=10_000)
    workers = transcription_workers()
    assert workers, "the built-in server started no transcription worker"
    # A machine too busy to transcribe, forced (this one may well keep up): the workers
    # are stopped while the meeting goes on, so the stored audio runs ahead of them.
    for worker in workers:
        worker.suspend()
    shown = []
    try:
        assert not pane.lag_label.isVisible()
        pulse.play(speech_files["mic"].path, MIC_SINK).wait(timeout=30)
        qtbot.waitUntil(pane.lag_label.isVisible, timeout=20_000)
        shown.append(pane.lag_label.text())
        assert pane.view.toPlainText() == "", "nothing transcribed while the workers stand"
        qtbot.wait(1_500)  # the lag grows with the stored audio, said as it grows
        shown.append(pane.lag_label.text())
    finally:
        for worker in workers:
            worker.resume()
    print("the lag line said:", shown)
    said = [int(re.fullmatch(r"The transcript is (\d+) s behind the audio; it catches up "
                             r"from the stored audio\.", text).group(1)) for text in shown]
    assert said[0] >= 3 and said[1] > said[0]
    # Resumed, the workers catch up from the stored audio: the line goes, and the words
    # spoken during the stall arrive.
    qtbot.waitUntil(lambda: not pane.lag_label.isVisible(), timeout=30_000)
    words = {"morning", "everyone", "review", "budget", "hiring", "plan"}

    def heard() -> bool:
        text = pane.view.toPlainText().lower().replace(",", " ").replace(".", " ")
        return len(words & set(text.split())) >= 4

    try:
        qtbot.waitUntil(heard, timeout=30_000)
    except TimeoutError:
        raise AssertionError(f"the stalled sentence never came; the pane shows:\n"
                             f"{pane.view.toPlainText()}\nstatus: "
                             f"{controller.recorder.stream_status()}") from None
    assert controller.phase is Phase.RECORDING, window.banner.text()
    with qtbot.waitSignal(controller.session_finished, timeout=60_000) as finished:
        window.session_panel.button.click()
    assert finished.args[0].ok, finished.args[0].message
