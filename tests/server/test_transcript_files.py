"""The transcript files and the stored-audio reader of the server's transcription."""

from __future__ import annotations

import json
import os

import pytest

from meetcap.errors import StorageError
from meetcap.server.transcription.files import TranscriptFiles, TranscriptState
from meetcap.server.transcription.storedaudio import StoredAudio
from meetcap.transcribe.segments import TranscriptSegment


def seg(i: int, text: str = "one two three four") -> TranscriptSegment:
    return TranscriptSegment(i, i * 2.0, i * 2.0 + 1.5, text, True)


def test_saved_state_reads_back_and_the_derived_files_follow(tmp_path):
    files = TranscriptFiles(tmp_path, "s1")
    assert files.load() == TranscriptState()  # no file yet: nothing transcribed
    state = TranscriptState([seg(0), seg(1, "okay")], resume_seq=37)
    files.save(state)
    again = TranscriptFiles(tmp_path, "s1").load()
    assert again.segments == state.segments and again.resume_seq == 37 and not again.complete
    assert "00:00:02.000 --> 00:00:03.500" in (tmp_path / "s1.vtt").read_text()
    assert (tmp_path / "s1.srt").read_text().startswith("1\n00:00:00,000 --> 00:00:01,500\n")


@pytest.mark.parametrize("content,words", [
    ("{not json", "cannot read"),
    ('{"version": 1, "segments": [{"id": 1, "start_s": 0, "end_s": 1, "text": "x", '
     '"final": true}]}', "ids are not 0, 1, 2"),
    ('{"version": 7, "segments": []}', "not a meetcap transcript"),
])
def test_a_damaged_transcript_file_is_an_error_in_words_not_an_empty_transcript(
    tmp_path, content, words
):
    (tmp_path / "s1.transcript.json").write_text(content)
    with pytest.raises(StorageError) as info:
        TranscriptFiles(tmp_path, "s1").load()
    assert words in str(info.value)


def test_one_process_at_a_time_holds_a_sessions_transcript(tmp_path):
    a, b = TranscriptFiles(tmp_path, "s1"), TranscriptFiles(tmp_path, "s1")
    assert a.try_lock()
    assert not b.try_lock()  # flock is per open file description: a second holder waits
    a.unlock()
    assert b.try_lock()
    b.unlock(remove=True)
    assert not b.lock_path.exists()


def test_flags_come_from_the_sidecar_once_the_speech_file_is_gone(tmp_path):
    (tmp_path / "s1.wav").write_bytes(bytes(44 + 10 * 3200))
    (tmp_path / "s1.json").write_text(json.dumps({
        "frames": 10, "speech_segments": [{"start_ms": 200, "end_ms": 600}],
        "speaker_turns": [{"speaker": "you", "start_ms": 200, "end_ms": 400},
                          {"speaker": "others", "start_ms": 400, "end_ms": 600}],
    }))
    pcm, flags = StoredAudio(tmp_path, "s1").read(0, 10)
    assert len(pcm) == 32000
    assert list(flags) == [0, 0, 3, 3, 5, 5, 0, 0, 0, 0]


def test_flags_are_read_from_the_speech_file_while_the_session_is_open(tmp_path):
    (tmp_path / "s1.wav").write_bytes(bytes(44 + 4 * 3200))
    (tmp_path / "s1.speech").write_bytes(bytes([1, 3, 0]))  # the 4th not written yet
    audio = StoredAudio(tmp_path, "s1")
    assert audio.read(0, 4)[1] == bytes([1, 3, 0, 0])
    os.unlink(tmp_path / "s1.speech")  # the end folds it into the sidecar: still readable
    assert audio.flags(1, 2) == bytes([3, 0])
    with pytest.raises(StorageError):
        audio.read(3, 2)  # beyond the stored audio
