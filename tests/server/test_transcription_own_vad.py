"""The server decides speech itself (issue 9 follow-up): a client that runs no VAD (the
app with "VAD" off, ``meetcap record`` without --vad, a client written from
docs/protocol.md that never sets bit 0) still gets its transcript, the same as the
offline engine's, and exactly once across a kill -9 of the server.

Real parts: meetcap-server processes with --transcribe (the packaged Whisper tiny.en),
the real Streamer over real websockets, espeak-ng speech, the real Silero VAD.
"""

from __future__ import annotations

import dataclasses
import json

from meetcap.constants import FRAME_BYTES
from meetcap.server.transcription.speech import SpeechDecider, pcm_to_float
from meetcap.transcribe.offline import frames_with_speech
from tests.server import test_transcription
from tests.server.test_transcription import (
    SERVER,
    Heard,
    assert_stored_transcript_complete,
    same_finals,
    streamer,
    submit,
    submit_interrupted_mid_sentence,
    taken_up,
)

speech = test_transcription.speech  # the module-scoped fixture: three sentences


def without_speech_flags(frames):
    """What a client without a VAD sends: every frame's speech bit 0."""
    return [dataclasses.replace(f, speech=False) for f in frames]


def decide(pcm: bytes, take_up_at: int, chunk: int) -> list[bool]:
    """Flags from a SpeechDecider taken up at frame ``take_up_at`` (warmed up on the
    frames before it, in 600-frame steps as the worker does), fed ``chunk`` frames a call."""
    total = len(pcm) // FRAME_BYTES
    decider = SpeechDecider(take_up_at)
    for i in range(0, take_up_at, 600):
        decider.warm_up(pcm[i * FRAME_BYTES:min(take_up_at, i + 600) * FRAME_BYTES])
    flags: list[bool] = []
    for i in range(take_up_at, total, chunk):
        seq, _, got = decider.feed(pcm[i * FRAME_BYTES:min(total, i + chunk) * FRAME_BYTES])
        assert seq == take_up_at + len(flags)
        flags += got
    flags += decider.flush()[2]
    assert len(flags) == total - take_up_at
    return flags


def test_the_servers_vad_flags_equal_meetcap_transcribes_and_do_not_depend_on_a_take_up(speech):
    """The worker's flags are those `meetcap transcribe` computes on the stored samples,
    however the frames come in, and a worker that takes the session up at any frame
    (after a restart) computes the same flags from there as one that never stopped."""
    _, frames, _ = speech
    pcm = b"".join(f.pcm for f in frames)
    offline = [f.speech for f in frames_with_speech(pcm_to_float(pcm))]
    assert any(offline) and not all(offline)
    continuous = decide(pcm, 0, 7)
    assert continuous == offline
    assert decide(pcm, 0, 1) == continuous
    for take_up_at in range(1, len(frames), 3):
        assert decide(pcm, take_up_at, 10) == continuous[take_up_at:], take_up_at


def test_a_client_without_a_vad_gets_the_transcript_of_the_offline_engine(
    speech, meetcap_server_factory, tmp_path
):
    _, frames, want = speech
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    submit(s, without_speech_flags(frames), pace_s=0.01)
    result = s.finish(90)
    assert result.ok, result.message
    same_finals(heard.finals, want)
    assert_stored_transcript_complete(server.data_dir, result.session_id, want)
    # The stored audio says no speech anywhere (the client's flags): the server's VAD did it.
    sidecar = json.loads((server.data_dir / f"{result.session_id}.json").read_text())
    assert not sidecar.get("speech_segments")


def test_without_a_client_vad_a_server_killed_mid_sentence_gives_every_final_once(
    speech, meetcap_server_factory, tmp_path
):
    """The restarted worker takes the session up at its resume point with a VAD that
    heard the session from its start: the finals equal the uninterrupted ones."""
    _, frames, want = speech
    frames = without_speech_flags(frames)
    server = meetcap_server_factory(**SERVER)
    heard = Heard()
    s = streamer(server.url, tmp_path, heard)
    submit_interrupted_mid_sentence(s, frames, want, heard,
                                    lambda: server.restart(kill=True))
    result = s.finish(120)
    assert result.ok, result.message
    same_finals(heard.finals, want)
    assert_stored_transcript_complete(server.data_dir, result.session_id, want)
    # The restarted worker did take it up mid-session, after the first final.
    took_up = taken_up(server.log_text(), result.session_id)
    assert any(seq > 0 and nxt >= 1 for seq, nxt in took_up), took_up
