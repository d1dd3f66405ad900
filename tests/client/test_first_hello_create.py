"""Issue 11: a new recording's first hello creates the session under an id the client chose
and stored first (hello.create, docs/protocol.md 4), and still works with servers that do
not know the field. Against the scripted stand-in server, which can act as those servers
(the real one's answers to hello.create are in test_create_and_held_on_the_wire.py, the
kill -9 windows in test_first_hello_kill.py)."""

from __future__ import annotations

import logging

import pytest

from meetcap.client import Streamer, deliver_pending
from meetcap.client.pending import deliver, list_pending
from meetcap.client.spool import Spool
from tests.client.conftest import TOKEN, fast_config, wait_until
from tests.client.frames import SubmitLog, synthetic_frames
from tests.client.scripted_server import ScriptedServer, ScriptedSession
from tests.support.net import closed_port_url


def _stream(streamer: Streamer, frames, log: SubmitLog | None = None) -> None:
    for frame in frames:
        streamer.submit(frame)
        if log is not None:
            log.record(frame)


def test_a_recording_made_offline_names_no_session_until_a_welcome_confirms_its_own(
    scripted_server, tmp_path
):
    """The chosen id is in the spool from the start, but neither the status nor `meetcap
    spool list` call it the server's session before a server created it; the delivery
    later creates the session under exactly that id, with every frame once."""
    spool = tmp_path / "spool"
    frames = list(synthetic_frames(25, seed=41))
    streamer = Streamer(fast_config(closed_port_url(), spool))
    streamer.start()
    _stream(streamer, frames)
    local_id = streamer._live.meta.local_id
    chosen = streamer._live.meta.session_id
    assert chosen and streamer._live.meta.create_pending
    wait_until(lambda: streamer.status().state == "reconnecting")
    assert streamer.status().session_id is None
    (listed,) = list_pending(spool)
    assert listed.local_id == local_id and listed.session_id is None
    streamer.close()
    (listed,) = list_pending(spool)
    assert listed.session_id is None and listed.frames == 25

    server = scripted_server()
    result = deliver(spool, local_id, url=server.url, token=TOKEN, timeout_s=20)
    assert result.ok, result.message
    assert result.session_id == chosen
    (hello,) = server.hellos
    assert (hello.session_id, hello.create) == (chosen, True)
    assert server.sessions[chosen].frames == [f.pcm for f in frames]


def test_a_server_older_than_create_gets_the_recording_after_one_extra_round_trip(
    scripted_server, tmp_path
):
    """An older server refuses the chosen id (4005 unknown_session); the client asks for a
    new session the old way at once, and later resumes it plainly: one session, every
    frame once, byte for byte, one connection more than a server that knows the field."""
    server = scripted_server("before_create")
    log = SubmitLog()
    frames = list(synthetic_frames(60, seed=42))
    streamer = Streamer(fast_config(server.url, tmp_path / "spool"))
    streamer.start()
    _stream(streamer, frames[:30], log)
    wait_until(lambda: streamer.status().frames_acked == 30)
    assert server.connections == 2  # the refused create, then the old-style hello
    server.drop_all()  # a lost link: the resume must not ask to create again
    _stream(streamer, frames[30:], log)
    result = streamer.finish(20)

    assert result.ok and result.verified, result.message
    first, second, *resumes = server.hellos
    assert first.create and first.session_id is not None
    assert second.session_id is None and not second.create
    assert resumes and all(
        h.session_id == result.session_id and not h.create for h in resumes
    ), resumes
    (session,) = server.sessions.values()
    assert session.session_id == result.session_id != first.session_id
    assert session.frames == [f.pcm for f in frames]


class _RenamingServer(ScriptedServer):
    """A server that ignores hello.create and treats a hello with an id it does not know
    as a request for a new session under an id of its own (meetcap-server never did; a
    lenient third-party server might)."""

    def _refusal(self, hello):
        return None

    def _attach(self, hello):
        if hello.session_id is not None and hello.session_id not in self.sessions:
            hello = type(hello)(session_id=None, resume_token=None)
        return super()._attach(hello)


def test_a_server_that_names_the_new_session_itself_gets_it_without_a_retry(tmp_path):
    server = _RenamingServer(token=TOKEN).start()
    try:
        frames = list(synthetic_frames(40, seed=43))
        streamer = Streamer(fast_config(server.url, tmp_path / "spool"))
        streamer.start()
        _stream(streamer, frames[:20])
        wait_until(lambda: streamer.status().frames_acked == 20)
        server.drop_all()
        _stream(streamer, frames[20:])
        result = streamer.finish(20)
    finally:
        server.stop()
    assert result.ok and result.verified, result.message
    first, resume, *_ = server.hellos
    assert first.create and first.session_id is not None
    (session,) = server.sessions.values()
    assert session.session_id == result.session_id != first.session_id
    assert session.frames == [f.pcm for f in frames]
    assert resume.session_id == result.session_id and not resume.create


@pytest.mark.parametrize("claim", ["more_than_captured", "fewer_than_acked"])
def test_an_impossible_error_held_is_ignored_with_a_warning(
    scripted_server, tmp_path, caplog, claim
):
    """A stale-token refusal (4006) whose error.held cannot be true: more frames than
    were ever captured, or fewer than the server acknowledged. The client warns, starts
    the new session after its own last ack, and the two sessions hold every frame once."""
    caplog.set_level(logging.WARNING, logger="meetcap.client.link")
    server = scripted_server()
    frames = list(synthetic_frames(50, seed=44))
    spool = tmp_path / "spool"
    streamer = Streamer(fast_config(server.url, spool))
    streamer.start()
    _stream(streamer, frames[:20])
    wait_until(lambda: streamer.status().frames_acked == 20)
    old_id = streamer.status().session_id
    server.stale_held[old_id] = 1_000 if claim == "more_than_captured" else 5
    server.drop_all()
    _stream(streamer, frames[20:])
    result = streamer.finish(20)

    assert result.ok, result.message
    new_id = result.session_id
    assert new_id not in (None, old_id)
    old, new = server.sessions[old_id], server.sessions[new_id]
    assert old.frames == [f.pcm for f in frames[:20]]
    assert new.frames == [f.pcm for f in frames[20:]]  # none twice, none missing
    assert streamer._live.meta.seq_offset == 20
    words = {
        "more_than_captured": "says it holds 1000 frames, but only",
        "fewer_than_acked": "holds 5 frames, fewer than it acknowledged (20)",
    }[claim]
    assert any(words in r.getMessage() for r in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def test_a_spool_from_before_create_is_delivered_the_old_way(scripted_server, tmp_path):
    """A session.json written before hello.create existed (no id until the welcome) is
    still delivered: its hello asks for a new session without create."""
    root = tmp_path / "spool"
    server = scripted_server()
    spool = Spool.open(root)
    config = fast_config(server.url, root)
    session = spool.new_session(
        1.7e9, server.url, destination=config.resolved_destination(), account=config.account()
    )
    session._write_meta(session._meta_now(session_id=None, resume_token=None,
                                          create_pending=False))
    frames = list(synthetic_frames(12, seed=45))
    for frame in frames:
        session.append(frame)
    session.close()
    spool.close()

    result = deliver(root, session.meta.local_id, token=TOKEN, timeout_s=20)
    assert result.ok, result.message
    (hello,) = server.hellos
    assert hello.session_id is None and not hello.create
    assert server.sessions[result.session_id].frames == [f.pcm for f in frames]


def _spooled_without_frames(root, url: str) -> tuple[str, str, str]:
    """A recording an earlier run left with no frame, its chosen id never confirmed (as
    when killed right after its first hello): (local id, session id, token)."""
    config = fast_config(url, root)
    spool = Spool.open(root)
    session = spool.new_session(
        1.7e9, url, destination=config.resolved_destination(), account=config.account()
    )
    meta = session.meta
    session.close()
    spool.close()
    return meta.local_id, meta.session_id, meta.resume_token


@pytest.mark.parametrize("created", [True, False], ids=["hello_created_it", "never_reached"])
def test_a_recording_left_without_frames_ends_what_its_hello_created_and_creates_nothing(
    scripted_server, tmp_path, created
):
    """Its next delivery resumes without hello.create: a session the first hello created
    is ended (not left open and empty), and a server that never saw it gets none."""
    root = tmp_path / "spool"
    server = scripted_server()
    local_id, session_id, token = _spooled_without_frames(root, server.url)
    if created:
        server.sessions[session_id] = ScriptedSession(session_id, token)

    result = deliver_pending(fast_config(server.url, root), timeout_s=10)
    assert result.ok, result.message
    (hello,) = server.hellos
    assert hello.session_id == session_id and not hello.create
    if created:
        (session,) = server.sessions.values()
        assert session.ended and session.frames == []
    else:
        assert server.sessions == {}
        assert "never created" in result.earlier[0].message
    assert not (root / local_id).exists()
