"""The disk spool: frames survive until acked, a torn tail is cut, the cap is loud."""

from __future__ import annotations

import json
import os

import pytest

from meetcap.client.spool import (
    FRAMES_PER_SEGMENT,
    META_NAME,
    RECORD_BYTES,
    SILENT_PCM,
    WHY_CUT,
    WHY_DAMAGED,
    Spool,
)
from meetcap.errors import SpoolFullError
from meetcap.protocol import decode_audio, encode_audio
from tests.client.frames import synthetic_frames

URL = "ws://127.0.0.1:1/v1/stream"


def _segments(session):
    return sorted(p.name for p in session.dir.glob("seg-*.dat"))


def test_spooled_frames_read_back_as_checked_protocol_messages(tmp_path):
    spool = Spool.open(tmp_path)
    session = spool.new_session(1.7e9, URL)
    frames = list(synthetic_frames(40))
    for frame in frames:
        session.append(frame)
    records = session.read(5, 10) + session.read(15, 100)
    decoded = [decode_audio(r) for r in records]
    assert [m.seq for m in decoded] == list(range(5, 40))
    assert [m.pcm for m in decoded] == [f.pcm for f in frames[5:]]
    assert [m.speech for m in decoded] == [f.speech for f in frames[5:]]
    assert session.read(40, 10) == []
    assert session.unacked_frames == 40


def test_out_of_order_frame_is_refused_not_spooled(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL)
    first, second, third = synthetic_frames(3)
    session.append(first)
    with pytest.raises(ValueError, match="expected frame 1, got 2"):
        session.append(third)
    session.append(second)
    assert session.last_seq == 1


def test_fully_acked_segments_are_deleted_and_the_last_is_kept(tmp_path):
    spool = Spool.open(tmp_path)
    session = spool.new_session(1.7e9, URL)
    total = 2 * FRAMES_PER_SEGMENT + 10
    for frame in synthetic_frames(total):
        session.append(frame)
    assert len(_segments(session)) == 3
    assert spool.budget.used_bytes == total * RECORD_BYTES
    session.ack(FRAMES_PER_SEGMENT - 2)  # first segment not complete yet
    assert len(_segments(session)) == 3
    session.ack(2 * FRAMES_PER_SEGMENT + 3)
    assert _segments(session) == [f"seg-{2 * FRAMES_PER_SEGMENT:020d}.dat"]
    assert spool.budget.used_bytes == 10 * RECORD_BYTES
    assert session.unacked_frames == 6
    # The ack is on disk before the segments went away (a later run must not see a gap).
    assert json.loads((session.dir / META_NAME).read_text())["acked"] == 2 * FRAMES_PER_SEGMENT + 3
    session.ack(total - 1)  # everything acked: the last segment still says where frames end
    assert len(_segments(session)) == 1
    session.close()
    (reopened,) = Spool.open(tmp_path).pending
    assert reopened.last_seq == total - 1
    assert reopened.unacked_frames == 0


def test_spool_cap_raises_spool_full_and_stores_nothing_more(tmp_path):
    spool = Spool.open(tmp_path, cap_bytes=25 * RECORD_BYTES)
    session = spool.new_session(1.7e9, URL)
    frames = list(synthetic_frames(30))
    for frame in frames[:25]:
        session.append(frame)
    with pytest.raises(SpoolFullError, match="spool .* is full"):
        session.append(frames[25])
    assert session.last_seq == 24
    on_disk = sum(os.path.getsize(session.dir / name) for name in _segments(session))
    assert on_disk == 25 * RECORD_BYTES


def test_cap_counts_sessions_left_by_an_earlier_run(tmp_path):
    old = Spool.open(tmp_path).new_session(1.7e9, URL)
    for frame in synthetic_frames(20):
        old.append(frame)
    old.close()
    spool = Spool.open(tmp_path, cap_bytes=25 * RECORD_BYTES)
    assert len(spool.pending) == 1
    session = spool.new_session(1.7e9, URL)
    frames = list(synthetic_frames(6))
    for frame in frames[:5]:
        session.append(frame)
    with pytest.raises(SpoolFullError):
        session.append(frames[5])


def test_session_id_and_resume_token_survive_a_restart(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL)
    for frame in synthetic_frames(12):
        session.append(frame)
    session.set_session("sess_A", "tok_aaaaaaaaaaaaaaaaaaaaaa")
    session.ack(4)
    session.close()
    (found,) = Spool.open(tmp_path).pending
    meta = found.meta
    assert (meta.session_id, meta.resume_token, meta.started_at) == (
        "sess_A", "tok_aaaaaaaaaaaaaaaaaaaaaa", 1.7e9,
    )
    assert found.acked == 4 and found.last_seq == 11 and found.unacked_frames == 7
    assert not list(found.dir.glob("*.tmp"))


def test_torn_last_record_is_cut_never_delivered(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL)
    for frame in synthetic_frames(10):
        session.append(frame)
    session.close()
    segment = session.dir / _segments(session)[0]
    # A crash in the middle of writing frame 10: half a record at the end.
    half = next(synthetic_frames(1, start_seq=10))
    with open(segment, "ab") as fh:
        fh.write(encode_audio(10, half.pcm)[: RECORD_BYTES // 2])
    (found,) = Spool.open(tmp_path).pending
    assert found.last_seq == 9
    assert found.dropped_on_recovery == 0  # half a record is not a record
    assert os.path.getsize(segment) == 10 * RECORD_BYTES
    assert [decode_audio(r).seq for r in found.read(0, 100)] == list(range(10))


def test_corrupt_tail_records_are_cut_and_counted(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL)
    for frame in synthetic_frames(10):
        session.append(frame)
    session.close()
    segment = session.dir / _segments(session)[0]
    # An OS crash can leave zeros where the last unsynced records were; session.json
    # was last written when frame 7 was the last one spooled.
    with open(segment, "r+b") as fh:
        fh.seek(8 * RECORD_BYTES + 100)
        fh.write(b"\0" * (2 * RECORD_BYTES - 100))
    meta = json.loads((session.dir / META_NAME).read_text())
    (session.dir / META_NAME).write_text(json.dumps(dict(meta, spooled_to=7)))
    (found,) = Spool.open(tmp_path).pending
    assert found.last_seq == 7
    assert found.dropped_on_recovery == 2
    assert found.lost == ((8, 9),) and found.damaged == ()
    assert all(decode_audio(r).seq == i for i, r in enumerate(found.read(0, 100)))
    # New numbering continues after the intact part: nothing shifted, nothing duplicated.
    assert found.next_seq == 8
    # Said durably, before the cut: a later run still knows what was lost.
    assert json.loads((found.dir / META_NAME).read_text())["lost"] == [[8, 9, WHY_CUT]]


def test_a_damaged_record_before_an_intact_one_is_silence_not_the_end(tmp_path):
    session = Spool.open(tmp_path).new_session(1.7e9, URL)
    frames = list(synthetic_frames(10))
    for frame in frames:
        session.append(frame)
    session.close()
    with open(session.dir / _segments(session)[0], "r+b") as fh:
        fh.seek(8 * RECORD_BYTES + 100)
        fh.write(b"\0" * 50)  # frame 8 only: frame 9 after it is intact
    (found,) = Spool.open(tmp_path).pending
    assert found.last_seq == 9 and found.dropped_on_recovery == 0
    assert found.damaged == ((8, 8, WHY_DAMAGED),)
    messages = found.read_frames(0, 100)  # up to the damage, which comes on its own
    assert [m.seq for m in messages] == list(range(8))
    while len(messages) < 10:
        messages += found.read_frames(len(messages), 100)
    assert [m.seq for m in messages] == list(range(10))
    assert [m.pcm for m in messages] == [f.pcm for f in frames[:8]] + [SILENT_PCM, frames[9].pcm]
    assert found.lost == ((8, 8),) and found.damaged == ()


def test_ended_and_empty_sessions_are_removed_at_open(tmp_path):
    spool = Spool.open(tmp_path)
    ended = spool.new_session(1.7e9, URL)
    for frame in synthetic_frames(3):
        ended.append(frame)
    ended.set_session("sess_E", "tok_eeeeeeeeeeeeeeeeeeeeee")
    ended.mark_ended()
    empty = spool.new_session(1.7e9, URL)
    # Written before hello.create: no id, so nothing on any server.
    empty._write_meta(empty._meta_now(session_id=None, resume_token=None, create_pending=False))
    empty.close()
    assert not ended.dir.exists()
    assert Spool.open(tmp_path).pending == []
    assert not empty.dir.exists()


def test_an_empty_session_whose_hello_may_have_created_it_is_kept_to_be_ended(tmp_path):
    """Nothing captured, but its chosen id may name a session its first hello created
    (hello.create, killed before the welcome): kept, so a delivery ends that session
    (SessionLink._probing), yet not listed as audio waiting."""
    from meetcap.client.pending import list_pending

    empty = Spool.open(tmp_path).new_session(1.7e9, URL)
    assert empty.meta.create_pending and empty.meta.session_id
    empty.close()
    (kept,) = Spool.open(tmp_path).pending
    assert kept.dir == empty.dir and kept.meta.session_id == empty.meta.session_id
    kept.close()
    assert list_pending(tmp_path) == []


def test_a_session_held_by_another_process_is_not_listed(tmp_path):
    spool = Spool.open(tmp_path)
    session = spool.new_session(1.7e9, URL)
    for frame in synthetic_frames(3):
        session.append(frame)
    # Still open (locked) here: a second meetcap must not deliver it at the same time.
    assert Spool.open(tmp_path).pending == []
    session.close()
    assert len(Spool.open(tmp_path).pending) == 1
