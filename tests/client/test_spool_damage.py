"""A damaged spool (issue 11, "Hardening"): damage is found, said in words, never blocks
a new recording, and every intact frame is still delivered.

What "deliver everything intact" means on the wire (see meetcap/client/spool.py): a frame
whose record is damaged or missing on disk is sent as a frame of silence at its own
number, so the session keeps its length and timing and every intact frame lands where it
belongs; the frames replaced are named in the result (``FinishResult.lost``) and, until
delivery, in `meetcap spool list`.
"""

from __future__ import annotations

import json
import logging

import pytest

from meetcap.client import Streamer
from meetcap.client import spool as spool_module
from meetcap.client.pending import deliver, discard, list_pending
from meetcap.client.spool import META_NAME, RECORD_BYTES, Spool
from meetcap.constants import FRAME_BYTES
from meetcap.errors import SpoolFullError, StorageError
from tests.client.conftest import TOKEN as TOKEN_SCRIPTED
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import stored_pcm
from tests.client.frames import SubmitLog, synthetic_frames
from tests.support.server_proc import TOKEN

SEGMENT = 10  # frames a segment file in these tests (600 in real use)
SILENCE = bytes(FRAME_BYTES)


@pytest.fixture(autouse=True)
def small_segments(monkeypatch):
    monkeypatch.setattr(spool_module, "FRAMES_PER_SEGMENT", SEGMENT)


def _segment(directory, first: int):
    return directory / f"seg-{first:020d}.dat"


def _leave_in_spool(root, config, count: int, seed: int = 1):
    """Spool ``count`` frames for ``config``'s destination and stop without delivering
    (what an app that quit while the server was unreachable leaves behind)."""
    frames = list(synthetic_frames(count, seed=seed))
    session = Spool.open(root).new_session(
        1.7e9, config.url, destination=config.resolved_destination(), account=config.account()
    )
    for frame in frames:
        session.append(frame)
    session.close()
    return session.dir, frames


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0x40]))


def _record_and_finish(config, count: int = 5):
    """A new recording in the same spool: it must start, spool and be delivered."""
    streamer = Streamer(config)
    streamer.start()
    log = SubmitLog()
    for frame in synthetic_frames(count, seed=99):
        streamer.submit(frame)
        log.record(frame)
    return streamer, log


# -- finding 1: a damaged record in an earlier segment


def test_a_damaged_record_in_an_earlier_segment_is_sent_as_silence_and_named(
    meetcap_server, tmp_path
):
    root = tmp_path / "spool"
    config = fast_config(meetcap_server.url, root, token=TOKEN)
    directory, frames = _leave_in_spool(root, config, 25)
    # Frame 3 is in the first of three segment files: recovery used to check only the
    # last one, and the sender's "damaged on disk" error was lost behind its own 1011.
    _flip(_segment(directory, 0), 3 * RECORD_BYTES + 700)
    reasons: list[str] = []
    streamer = Streamer(config, capture=False, on_status=lambda s: reasons.append(s.reason or ""))
    streamer.start()
    result = streamer.finish(10)
    (earlier,) = result.earlier
    assert not any("internal error" in r for r in reasons), reasons
    assert earlier.session_id is not None, earlier.message
    pcm = stored_pcm(meetcap_server.data_dir, earlier.session_id)
    stored = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
    assert len(stored) == 25, earlier.message
    assert stored[3] == SILENCE
    assert [p for i, p in enumerate(stored) if i != 3] == [f.pcm for f in frames if f.seq != 3]
    assert earlier.lost == ((3, 3),)
    assert not earlier.ok and earlier.frames_left == 0 and earlier.frames == 25
    assert "frame 3 " in earlier.message and "silence" in earlier.message, earlier.message
    assert "damaged on disk" in earlier.message, earlier.message
    assert not result.ok and "frame 3 " in result.message, result.message
    assert list_pending(root) == []  # delivered: nothing waits


def test_a_record_damaged_after_recovery_is_found_when_read(tmp_path):
    spool = Spool.open(tmp_path)
    session = spool.new_session(1.7e9, "ws://127.0.0.1:1/v1/stream")
    frames = list(synthetic_frames(25))
    for frame in frames:
        session.append(frame)
    _flip(_segment(session.dir, 10), 2 * RECORD_BYTES + 5)  # frame 12's sequence number
    messages = session.read_frames(8, 10)
    assert [m.seq for m in messages] == list(range(8, 10))  # up to the segment's end
    messages = session.read_frames(10, 10)
    assert [m.seq for m in messages] == list(range(10, 20))
    assert messages[2].pcm == SILENCE and not messages[2].speech
    assert [m.pcm for m in messages if m.seq != 12] == [
        f.pcm for f in frames[10:20] if f.seq != 12
    ]
    assert session.lost == ((12, 12),)
    # Durable before the silence goes out: a later run still knows what was lost.
    meta = json.loads((session.dir / META_NAME).read_text())
    assert meta["lost"] == [[12, 12, "damaged on disk: its checksum or number is wrong"]]
    session.close()


# -- finding 2: odd spool states are said, and never block a new recording


BAD_META = {
    "null": "null",
    "list": "[]",
    "text": '"hello"',
    "garbage": "{not json",
    "acked as text": {"acked": "7"},
    "acked null": {"acked": None},
    "acked list": {"acked": []},
    "ended as text": {"ended": "no"},
    "started_at as text": {"started_at": "yesterday"},
    "session_id as number": {"session_id": 5},
}


@pytest.mark.parametrize("bad", list(BAD_META.values()), ids=list(BAD_META))
def test_a_session_json_of_the_wrong_shape_is_listed_and_blocks_nothing(
    bad, scripted_server, tmp_path, caplog
):
    server = scripted_server()
    root = tmp_path / "spool"
    config = fast_config(server.url, root)
    directory, _ = _leave_in_spool(root, config, 12)
    meta_path = directory / META_NAME
    if isinstance(bad, dict):
        meta = json.loads(meta_path.read_text())
        meta.update(bad)
        meta_path.write_text(json.dumps(meta))
    else:
        meta_path.write_text(bad)
    segments = {p.name: p.read_bytes() for p in directory.glob("seg-*")}

    caplog.set_level(logging.WARNING, logger="meetcap.client.spool")
    streamer, log = _record_and_finish(config)
    status = streamer.status()
    result = streamer.finish(10)
    assert result.ok and result.verified and result.frames == len(log), result.message
    assert result.earlier == ()  # not delivered: nothing says where it belongs
    # Nothing of it was touched: it can still be looked at, or discarded.
    assert {p.name: p.read_bytes() for p in directory.glob("seg-*")} == segments
    (waiting,) = list_pending(root)
    assert waiting.local_id == directory.name and waiting.state == "unreadable"
    assert META_NAME in waiting.why, waiting.why
    assert waiting.frames == 12
    assert any(directory.name in r.message for r in caplog.records), caplog.text
    problems = status.spool_problems
    assert any(directory.name in p and META_NAME in p for p in problems), problems


def test_segments_without_a_session_json_are_listed_and_block_nothing(
    scripted_server, tmp_path, caplog
):
    server = scripted_server()
    root = tmp_path / "spool"
    config = fast_config(server.url, root)
    directory, _ = _leave_in_spool(root, config, 12)
    (directory / META_NAME).unlink()
    caplog.set_level(logging.WARNING, logger="meetcap.client.spool")
    streamer, _log = _record_and_finish(config)
    status = streamer.status()
    assert streamer.finish(10).ok
    assert [p.name for p in directory.glob("seg-*")] != []
    (waiting,) = list_pending(root)
    assert (waiting.local_id, waiting.state, waiting.frames) == (directory.name, "unreadable", 12)
    assert f"{META_NAME} is missing" in waiting.why, waiting.why
    assert any(directory.name in r.message and "missing" in r.message for r in caplog.records)
    problems = status.spool_problems
    assert any(directory.name in p and "missing" in p for p in problems), problems


def test_a_lost_middle_segment_is_said_and_the_rest_delivered(scripted_server, tmp_path, caplog):
    server = scripted_server()
    root = tmp_path / "spool"
    config = fast_config(server.url, root)
    directory, frames = _leave_in_spool(root, config, 30)
    _segment(directory, 10).unlink()  # frames 10-19

    listed = list_pending(root)

    caplog.set_level(logging.INFO, logger="meetcap.client")
    streamer = Streamer(config, capture=False)
    streamer.start()
    status = streamer.status()
    result = streamer.finish(10)
    (earlier,) = result.earlier
    (stored,) = server.sessions.values()
    assert len(stored.frames) == 30, earlier.message
    assert stored.frames[10:20] == [SILENCE] * 10
    assert stored.frames[:10] + stored.frames[20:] == [f.pcm for f in frames[:10] + frames[20:]]
    assert "crash during the last write" not in caplog.text
    assert "frames 10-19" in caplog.text
    assert any("frames 10-19" in p for p in status.spool_problems), status
    assert earlier.lost == ((10, 19),)
    assert not earlier.ok and earlier.frames == 30 and earlier.frames_left == 0
    assert "frames 10-19" in earlier.message and "missing" in earlier.message, earlier.message
    assert list_pending(root) == []
    (waiting,) = listed  # before the delivery
    assert waiting.state == "damaged" and "frames 10-19" in waiting.why, waiting.why
    assert waiting.frames == 30


def test_a_spool_cap_below_one_segment_frees_what_the_server_acked(
    scripted_server, tmp_path, monkeypatch
):
    monkeypatch.setattr(spool_module, "FRAMES_PER_SEGMENT", 600)  # the real size
    server = scripted_server()
    config = fast_config(server.url, tmp_path, spool_cap_bytes=40 * RECORD_BYTES)
    streamer = Streamer(config)
    streamer.start()
    log = SubmitLog()
    try:
        for frame in synthetic_frames(200):
            if frame.seq % 20 == 0:  # the server keeps up, as on a live connection
                wait_until(lambda s=frame.seq: streamer.status().frames_acked >= s, timeout_s=5)
            streamer.submit(frame)
            log.record(frame)
    except SpoolFullError as exc:
        streamer.close()
        raise AssertionError(f"full after {len(log)} frames, all but a few acked: {exc}") from exc
    result = streamer.finish(10)
    assert result.ok and result.verified and result.frames == 200, result.message


# -- the rest of their kind


def test_a_lock_file_that_cannot_be_opened_blocks_nothing_and_can_be_discarded(
    scripted_server, tmp_path
):
    server = scripted_server()
    root = tmp_path / "spool"
    config = fast_config(server.url, root)
    directory, _ = _leave_in_spool(root, config, 6)
    (directory / "lock").unlink()
    (directory / "lock").mkdir()  # a directory where the lock file should be
    streamer, log = _record_and_finish(config)
    status = streamer.status()
    result = streamer.finish(10)
    assert result.ok and result.verified and result.frames == len(log), result.message
    assert any(directory.name in p for p in status.spool_problems), status.spool_problems
    (waiting,) = list_pending(root)
    assert waiting.local_id == directory.name and "lock" in waiting.why, waiting.why
    discard(root, directory.name)
    assert list_pending(root) == [] and not directory.exists()


def test_a_recording_is_listed_under_its_folder_name_whatever_its_session_json_says(
    tmp_path,
):
    root = tmp_path / "spool"
    config = fast_config("ws://127.0.0.1:1/v1/stream", root)
    directory, _ = _leave_in_spool(root, config, 4)
    meta = json.loads((directory / META_NAME).read_text())
    (directory / META_NAME).write_text(json.dumps(dict(meta, local_id="copied-from-elsewhere")))
    (waiting,) = list_pending(root)
    assert waiting.local_id == directory.name  # the id `deliver` and `discard` take
    discard(root, waiting.local_id)
    assert not directory.exists()


def test_odd_files_in_a_session_folder_are_listed(tmp_path):
    root = tmp_path / "spool"
    config = fast_config("ws://127.0.0.1:1/v1/stream", root)
    directory, _ = _leave_in_spool(root, config, 4)
    (directory / "seg-not-a-number.dat").write_bytes(b"?")
    (waiting,) = list_pending(root)
    assert waiting.state == "damaged" and "seg-not-a-number.dat" in waiting.why, waiting.why


def test_a_full_spool_says_when_recordings_it_cannot_deliver_hold_the_space(tmp_path):
    root = tmp_path / "spool"
    config = fast_config("ws://127.0.0.1:1/v1/stream", root, spool_cap_bytes=40 * RECORD_BYTES)
    directory, _ = _leave_in_spool(root, config, 30)
    (directory / META_NAME).write_text("null")  # can never be delivered
    streamer = Streamer(config)
    streamer.start()
    frames = list(synthetic_frames(11))
    try:
        for frame in frames[:10]:
            streamer.submit(frame)
        with pytest.raises(SpoolFullError, match="meetcap spool list"):
            streamer.submit(frames[10])
    finally:
        streamer.close()


def test_a_recording_with_nothing_intact_left_waits_to_be_discarded(scripted_server, tmp_path):
    server = scripted_server()
    root = tmp_path / "spool"
    config = fast_config(server.url, root, token=TOKEN_SCRIPTED)
    directory, _ = _leave_in_spool(root, config, 15)
    for segment in directory.glob("seg-*"):
        segment.unlink()
    (waiting,) = list_pending(root)
    assert waiting.state == "damaged" and waiting.frames == 15, waiting
    assert "frames 0-14" in waiting.why and "nothing of it can be delivered" in waiting.why
    with pytest.raises(StorageError, match="nothing of it can be delivered"):
        deliver(root, directory.name, token=TOKEN_SCRIPTED, timeout_s=5)
    assert server.sessions == {}  # no recording of pure silence was made
    discard(root, directory.name)
    assert list_pending(root) == []


def test_meetcap_spool_lists_the_damage_and_deliver_exits_4_naming_the_lost_frames(
    scripted_server, tmp_path, capsys
):
    from meetcap.cli.main import main

    server = scripted_server()
    data = tmp_path / "data"
    config = fast_config(server.url, data / "spool", token=TOKEN_SCRIPTED)
    directory, frames = _leave_in_spool(data / "spool", config, 20)
    _segment(directory, 10).unlink()
    assert main(["spool", "--data-dir", str(data), "list"]) == 0
    out = capsys.readouterr().out
    assert directory.name in out and "frames 10-19 (missing from disk" in out, out
    code = main(["spool", "--data-dir", str(data), "deliver", directory.name,
                 "--token", TOKEN_SCRIPTED, "--timeout", "10"])
    captured = capsys.readouterr()
    assert code == 4, (captured.out, captured.err)
    assert "frames 10-19 (missing from disk" in captured.out, captured.out
    assert "was delivered" in captured.err, captured.err
    (stored,) = server.sessions.values()
    assert stored.frames == [f.pcm for f in frames[:10]] + [SILENCE] * 10
