"""Past sessions in the window: the list (date, duration, where stored), opening one
shows its transcript read-only, and a click on a line plays the audio from that line
into the default output, recorded back from the sink's monitor (real PulseAudio).

The stored session here is written by the server's own sidecar writer and the
transcript module's own JSON writer, with an audio file whose three segments are three
different tones, so what comes out of the speakers says where playback started.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from PySide6.QtCore import Qt

from meetcap.constants import FRAME_BYTES, SAMPLE_RATE_HZ
from meetcap.gui.stored_sessions import list_sessions
from meetcap.server.sidecar import SessionMeta, write_sidecar
from meetcap.transcribe import formats
from meetcap.transcribe.segments import TranscriptSegment
from tests.gui.helpers import app_settings
from tests.support.pulse import SPEAKER_SINK

pytestmark = pytest.mark.timeout(120)

SEGMENT_S = 2.0
TONES_HZ = (440.0, 880.0, 1320.0)  # one per segment
TEXTS = ("The first point is the budget.", "The second point is hiring.",
         "The third point is the office move.")


def store_session(folder, session_id: str, started_at: float, *, transcript: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SEGMENT_S * SAMPLE_RATE_HZ)) / SAMPLE_RATE_HZ
    audio = np.concatenate([0.4 * np.sin(2 * np.pi * hz * t) for hz in TONES_HZ])
    sf.write(folder / f"{session_id}.wav", audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    frames = len(audio) * 2 // FRAME_BYTES
    write_sidecar(folder / f"{session_id}.json",
                  SessionMeta("local", session_id, started_at, started_at),
                  f"{session_id}.wav", bytes(frames), finished=True, sha256="0" * 64)
    segments = [TranscriptSegment(i, i * SEGMENT_S, (i + 1) * SEGMENT_S - 0.2, text, True,
                                  "you" if i != 1 else "others")
                for i, text in enumerate(TEXTS)]
    if transcript:
        (folder / f"{session_id}.transcript.json").write_text(
            formats.dumps_json(segments, session_id=session_id), encoding="utf-8")
    return segments


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE_HZ)[int(np.argmax(spectrum))])


class MonitorRecording:
    """parec on the default sink's monitor (what a person would hear), read on a thread.

    An idle null sink is suspended and its monitor delivers nothing (and a fresh monitor
    stream delivers its first block late), so a silent player keeps the sink running and
    :meth:`wait_flowing` waits until audio really comes before anything is played."""

    def __init__(self, pulse, tmp_path) -> None:
        silence = tmp_path / "silence.wav"
        sf.write(silence, np.zeros(20 * SAMPLE_RATE_HZ, np.float32), SAMPLE_RATE_HZ)
        pulse.play(silence, SPEAKER_SINK)
        self.proc = subprocess.Popen(
            ["parec", "-d", f"{SPEAKER_SINK}.monitor", "--rate", str(SAMPLE_RATE_HZ),
             "--channels", "1", "--format", "s16le", "--raw", "--latency-msec", "20"],
            stdout=subprocess.PIPE, env={**os.environ, **pulse.env})
        self.chunks: list[bytes] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        while chunk := self.proc.stdout.read1(4096):
            self.chunks.append(chunk)

    def received_s(self) -> float:
        return sum(map(len, self.chunks)) / 2 / SAMPLE_RATE_HZ

    def wait_flowing(self, qtbot) -> None:
        qtbot.waitUntil(lambda: self.received_s() > 0.5, timeout=10_000)

    def stop(self) -> np.ndarray:
        self.proc.terminate()
        self.proc.wait(timeout=5)
        self.thread.join(timeout=5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return np.frombuffer(b"".join(self.chunks), "<i2").astype(np.float32) / 32768


def show_stored_meeting(make_window):
    """The app window (no devices) with a stored session "meeting" shown in its transcript
    pane: the pane, and the session's segments."""
    window, _, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    folder = window._builtin_folder()
    segments = store_session(folder, "meeting", time.time())
    [session] = list_sessions(folder)
    pane = window.transcript
    assert pane.show_session(session)
    return pane, segments


def test_the_list_shows_date_duration_and_where_each_session_is_stored(make_window, qtbot):
    window, controller, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    folder = window._builtin_folder()
    store_session(folder, "older", time.mktime((2026, 3, 4, 9, 30, 0, 0, 0, -1)))
    store_session(folder, "newer", time.mktime((2026, 3, 5, 14, 5, 0, 0, 0, -1)),
                  transcript=False)
    (folder / "broken.json").write_text("{not json")  # skipped, not a crash
    dialog = window.transcript.open_sessions()
    assert dialog is not None and dialog.table.rowCount() == 2
    assert dialog.row_texts(0) == ["2026-03-05 14:05", "00:06", "none",
                                   str(folder / "newer.wav")]
    assert dialog.row_texts(1) == ["2026-03-04 09:30", "00:06", "yes",
                                   str(folder / "older.wav")]
    dialog.table.selectRow(1)
    dialog.open_button.click()
    assert window.transcript.session is not None
    assert window.transcript.session.session_id == "older"
    text = window.transcript.view.toPlainText()
    assert text.split("\n") == [f"00:0{2 * i}  {who}: {t}" for i, (who, t) in
                                enumerate(zip(("You", "Others", "You"), TEXTS, strict=True))]
    assert window.transcript.view.isReadOnly()
    window.transcript.live_button.click()
    assert window.transcript.session is None and window.transcript.view.toPlainText() == ""


def test_a_damaged_transcript_is_said_in_words(make_window, qtbot):
    window, _, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    folder = window._builtin_folder()
    store_session(folder, "damaged", time.time())
    (folder / "damaged.transcript.json").write_text('{"version": 1, "segments": [{"id": 0}]}')
    [session] = list_sessions(folder)
    assert not window.transcript.show_session(session)
    assert window.transcript.message_label.isVisibleTo(window)
    assert "damaged.transcript.json is damaged" in window.transcript.message_label.text()
    assert "lacks the field 'start_s'" in window.transcript.message_label.text()


def test_a_click_on_a_line_plays_the_audio_from_there_until_stop(pulse, make_window, qtbot,
                                                                  tmp_path):
    pane, segments = show_stored_meeting(make_window)
    view = pane.view
    recording = MonitorRecording(pulse, tmp_path)
    try:
        recording.wait_flowing(qtbot)
        qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.line_top(1))
        assert pane.player.playing and pane.stop_button.isVisible()
        assert pane.playback_label.text() == "Playing from 00:02"
        qtbot.wait(3_000)  # 3 of the 4 s from there
        pane.stop_button.click()  # Stop: silent at once
        assert not pane.player.playing and not pane.stop_button.isVisible()
        qtbot.wait(1_000)
    finally:
        heard = recording.stop()
    loud = np.flatnonzero(np.abs(heard) > 0.05)
    assert len(loud), "the sound reached the default output"
    start = loud[0] + SAMPLE_RATE_HZ // 10  # past the onset
    first = heard[start:start + SAMPLE_RATE_HZ // 2]
    assert dominant_hz(first) == pytest.approx(TONES_HZ[1], abs=15), \
        "playback starts at the clicked segment (880 Hz), not at the start (440 Hz)"
    later = heard[loud[0] + int(2.2 * SAMPLE_RATE_HZ):loud[0] + int(2.7 * SAMPLE_RATE_HZ)]
    assert dominant_hz(later) == pytest.approx(TONES_HZ[2], abs=15), "and plays on"
    played_s = (loud[-1] - loud[0]) / SAMPLE_RATE_HZ
    print(f"heard {played_s:.2f} s of the 4 s after the click before Stop")
    assert 2.5 < played_s < 3.6, "Stop ended it (4 s would have followed)"
    assert np.abs(heard[-SAMPLE_RATE_HZ // 2:]).max() < 0.01, "silence after Stop"
    assert segments[1].start_s == SEGMENT_S
    # Played to the end, the playback line and Stop go by themselves.
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=view.line_top(2))
    assert pane.stop_button.isVisible()
    qtbot.waitUntil(lambda: not pane.stop_button.isVisible(), timeout=6_000)
    assert not pane.player.playing


def test_nothing_plays_while_recording(make_window, qtbot):
    pane, segments = show_stored_meeting(make_window)
    pane.set_recording(True)  # what the window does when a session starts
    assert pane.session is None, "back to the live transcript"
    assert not pane.sessions_button.isEnabled()
    assert not pane.play_from(segments[0]) and not pane.player.playing


def test_a_transcript_the_server_gave_up_is_listed_so_and_says_why(make_window, qtbot):
    window, _, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    folder = window._builtin_folder()
    store_session(folder, "crashed", time.time(), transcript=False)
    why = ("transcription of this session stopped: the transcription worker crashed 3 "
           "times on its audio after 2.0 s (status 70); the audio is stored whole, and "
           "'meetcap transcribe crashed.wav' can be tried on it")
    (folder / "crashed.transcript.json").write_text(formats.dumps_json(
        [TranscriptSegment(0, 0.0, 1.8, TEXTS[0], True, "you")], session_id="crashed",
        failed=why), encoding="utf-8")  # as the server writes it when it gives up
    pane = window.transcript
    dialog = pane.open_sessions()
    assert dialog is not None and dialog.row_texts(0)[2] == "given up"
    dialog.open_row(0)
    assert pane.view.toPlainText() == f"00:00  You: {TEXTS[0]}", "the finals it had"
    assert pane.message_label.isVisible()
    assert pane.message_label.text() == "T" + why[1:] + "."
    assert pane.play_button.isVisible(), "the rest of the audio can be played"
    pane.live_button.click()
    assert not pane.message_label.isVisible(), "the past session's sentence stays with it"


def test_a_session_without_a_transcript_plays_from_a_typed_time(pulse, make_window, qtbot,
                                                                 tmp_path):
    # Recorded with transcription off (or its transcript given up): no line to click.
    window, _, _ = make_window(app_settings(mic_device_id="", system_device_id=""))
    store_session(window._builtin_folder(), "untranscribed", time.time(), transcript=False)
    pane = window.transcript
    dialog = pane.open_sessions()
    assert dialog is not None and dialog.row_texts(0)[2] == "none"
    dialog.open_button.click()
    assert pane.session is not None and pane.session.session_id == "untranscribed"
    assert pane.view.toPlainText() == "" and "Play plays its audio" in pane.mode_label.text()
    assert pane.play_button.isVisible() and pane.play_time.text() == "00:00"
    # A time that cannot be played is said in words, and nothing plays.
    pane.play_time.setText("1:75")
    qtbot.keyClick(pane.play_time, Qt.Key.Key_Return)
    assert not pane.player.playing
    assert "Cannot read '1:75' as a time: type seconds, m:ss or h:mm:ss." == \
        pane.message_label.text()
    pane.play_time.setText("0:09")
    pane.play_button.click()
    assert not pane.player.playing
    assert "0:09 is past the end of this session, which lasts 00:06" in \
        pane.message_label.text()
    recording = MonitorRecording(pulse, tmp_path)
    try:
        recording.wait_flowing(qtbot)
        pane.play_time.setText("0:03")  # inside the second tone (2-4 s)
        pane.play_button.click()
        assert pane.player.playing and pane.playback_label.text() == "Playing from 00:03"
        assert not pane.play_button.isVisible() and pane.stop_button.isVisible()
        assert not pane.message_label.isVisible(), "the refusal's sentence went"
        # Three seconds to the end: Play comes back by itself.
        qtbot.waitUntil(pane.play_button.isVisible, timeout=8_000)
        qtbot.wait(500)
    finally:
        heard = recording.stop()
    loud = np.flatnonzero(np.abs(heard) > 0.05)
    assert len(loud), "the sound reached the default output"
    first = heard[loud[0] + SAMPLE_RATE_HZ // 10:loud[0] + int(0.6 * SAMPLE_RATE_HZ)]
    assert dominant_hz(first) == pytest.approx(TONES_HZ[1], abs=15), \
        "playback starts at the typed time (880 Hz), not at the start (440 Hz)"
    later = heard[loud[0] + int(1.3 * SAMPLE_RATE_HZ):loud[0] + int(1.8 * SAMPLE_RATE_HZ)]
    assert dominant_hz(later) == pytest.approx(TONES_HZ[2], abs=15), "and plays on"
    played_s = (loud[-1] - loud[0]) / SAMPLE_RATE_HZ
    print(f"heard {played_s:.2f} s from 0:03 of a 6 s session")
    assert 2.6 < played_s < 3.4, "from the typed time to the end"
    assert not pane.player.playing
