"""The spool of a tracks session (meetcap.client.spool): 9,616-byte records in .trk
segments that hold both lanes, recovered after a crash like the mono spool, read back
frame for frame, and seen by the folder tools (spooled_frames) at their real size."""

from __future__ import annotations

import os
import random

import pytest

from meetcap.client.spool import Spool, spooled_bytes, spooled_frames
from meetcap.constants import FRAME_BYTES
from meetcap.errors import SpoolFullError
from meetcap.frames import Frame
from meetcap.protocol import TRACKS_MESSAGE_BYTES
from meetcap.protocol.audio import encode_audio

URL = "ws://127.0.0.1:9/v1/stream"


def _frames(count: int, seed: int = 3, with_tracks: bool = True):
    rng = random.Random(seed)
    return [Frame(seq, rng.randbytes(FRAME_BYTES), 1.7e9 + seq / 10, seq % 2 == 0,
                  tracks=rng.randbytes(2 * FRAME_BYTES) if with_tracks else None)
            for seq in range(count)]


def test_tracks_records_keep_both_lanes_and_survive_a_torn_tail(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL, tracks=True)
    frames = _frames(12)
    for frame in frames:
        session.append(frame)
    session.close()
    (segment,) = session.dir.glob("seg-*.trk")
    assert not list(session.dir.glob("seg-*.dat"))
    assert os.path.getsize(segment) == 12 * TRACKS_MESSAGE_BYTES
    assert spooled_frames(session.dir) == (0, 11)
    assert spooled_bytes(session.dir) == 12 * TRACKS_MESSAGE_BYTES
    # A crash in the middle of writing frame 12: part of a record at the end.
    torn = encode_audio(12, frames[0].pcm, tracks=frames[0].tracks)[:5000]
    with open(segment, "ab") as fh:
        fh.write(torn)
    (found,) = Spool.open(tmp_path).pending
    assert found.tracks and found.last_seq == 11 and found.dropped_on_recovery == 0
    assert os.path.getsize(segment) == 12 * TRACKS_MESSAGE_BYTES
    messages = found.read_frames(0, 100)
    assert [m.seq for m in messages] == list(range(12))
    assert [m.pcm for m in messages] == [f.pcm for f in frames]
    assert [m.tracks for m in messages] == [f.tracks for f in frames]


def test_a_frame_without_lanes_in_a_tracks_session_is_spooled_with_silent_lanes(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL, tracks=True)
    for frame in _frames(3, with_tracks=False):
        session.append(frame)
    assert [m.tracks for m in session.read_frames(0, 10)] == [bytes(2 * FRAME_BYTES)] * 3


def test_a_damaged_tracks_record_goes_out_as_silence_at_its_number(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL, tracks=True)
    for frame in _frames(5):
        session.append(frame)
    session.close()
    (segment,) = session.dir.glob("seg-*.trk")
    with open(segment, "r+b") as fh:  # flip a byte inside frame 2's tracks
        fh.seek(2 * TRACKS_MESSAGE_BYTES + 5000)
        byte = fh.read(1)
        fh.seek(2 * TRACKS_MESSAGE_BYTES + 5000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    (found,) = Spool.open(tmp_path).pending
    messages = []
    while len(messages) < 5:  # a read stops where a run of damage starts or ends
        messages += found.read_frames(len(messages), 10)
    assert [m.seq for m in messages] == list(range(5))
    assert messages[2].pcm == bytes(FRAME_BYTES) and found.lost == ((2, 2),)
    assert messages[3].tracks is not None


def test_a_full_tracks_spool_says_the_hours_of_audio_it_holds(tmp_path):
    # A tracks record is three times a mono one: 36,000 records are one hour either way,
    # so the message must not count a tracks spool's bytes as mono (it said ~3 h here).
    record = TRACKS_MESSAGE_BYTES
    spool = Spool.open(tmp_path, cap_bytes=36_000 * record)
    session = spool.new_session(1.7e9, URL, tracks=True)
    spool.budget.add_existing(36_000 * record - record)  # as if an hour were waiting
    frames = _frames(2)
    session.append(frames[0])
    with pytest.raises(SpoolFullError, match=r"about 1\.0 h of audio"):
        session.append(frames[1])
