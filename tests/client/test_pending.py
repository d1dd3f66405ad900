"""Spooled sessions belong to one destination (issue 8): matching, old metadata, the
account fingerprint, refusals kept in session.json, and re-binding to new credentials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meetcap.client import Streamer
from meetcap.client.config import (
    BUILTIN_DESTINATION,
    StreamerConfig,
    account_fingerprint,
    destination_key,
    destination_url,
)
from meetcap.client.pending import (
    PendingBusy,
    PendingNotFound,
    deliver,
    discard,
    find_pending,
    has_pending,
    list_pending,
)
from meetcap.client.spool import META_NAME, Spool
from meetcap.errors import ConfigError
from tests.client.conftest import TOKEN as SCRIPTED_TOKEN
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import stored_pcm
from tests.client.frames import synthetic_frames
from tests.support.net import closed_port_url
from tests.support.server_proc import OTHER_TOKEN, TOKEN


def _leave_in_spool(config: StreamerConfig, frames: int, seed: int = 1) -> str:
    """Capture ``frames`` frames for ``config``'s destination and stop without ending
    (the app quit while the server was unreachable); returns the session's local id."""
    streamer = Streamer(config)
    streamer.start()
    for frame in synthetic_frames(frames, seed=seed):
        streamer.submit(frame)
    local_id = streamer._live.meta.local_id
    streamer.close()
    return local_id


def _meta(spool: Path, local_id: str) -> dict:
    return json.loads((spool / local_id / META_NAME).read_text())


# -- the key and the fingerprint


def test_the_fingerprint_names_the_account_without_revealing_the_token():
    url = "ws://meet.example:8765/v1/stream"
    fp = account_fingerprint(url, TOKEN)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert TOKEN not in fp and fp not in TOKEN
    assert account_fingerprint(url, TOKEN) == fp  # stable
    assert account_fingerprint(url, OTHER_TOKEN) != fp  # another account
    assert account_fingerprint("ws://other.example:8765/v1/stream", TOKEN) != fp  # keyed by URL
    # The same server written differently is the same destination.
    assert destination_url("WS://Meet.Example:80") == "ws://meet.example/v1/stream"
    assert destination_key("ws://MEET.example:8765", TOKEN) == destination_key(url, TOKEN)
    assert destination_key(url, TOKEN) == f"{url}#{fp}"


def test_session_json_records_destination_and_fingerprint_never_the_token(tmp_path):
    config = fast_config(closed_port_url(), tmp_path / "spool")
    local_id = _leave_in_spool(config, 3)
    text = (tmp_path / "spool" / local_id / META_NAME).read_text()
    meta = json.loads(text)
    assert SCRIPTED_TOKEN not in text
    assert meta["destination"] == destination_key(config.url, SCRIPTED_TOKEN)
    assert meta["account"] == account_fingerprint(config.url, SCRIPTED_TOKEN)
    assert meta["url"] == config.url


def test_an_explicit_destination_is_kept_and_records_no_account(tmp_path):
    config = fast_config(closed_port_url(), tmp_path, destination=BUILTIN_DESTINATION)
    assert config.resolved_destination() == BUILTIN_DESTINATION and config.account() is None
    with pytest.raises(ConfigError, match="destination"):
        fast_config(closed_port_url(), tmp_path, destination="  ")


def test_the_default_spool_root_is_the_data_roots_spool(monkeypatch, tmp_path):
    monkeypatch.setenv("MEETCAP_DATA_DIR", str(tmp_path / "data"))
    config = StreamerConfig(url="ws://h:1", token="t")
    assert config.resolved_spool_dir() == tmp_path / "data" / "spool"


# -- destination matching


def test_a_streamer_delivers_only_the_sessions_of_its_own_destination(
    scripted_server, tmp_path
):
    spool = tmp_path / "spool"
    elsewhere = fast_config(closed_port_url(), spool)  # server A, unreachable
    theirs = _leave_in_spool(elsewhere, 12)
    before = (spool / theirs / META_NAME).read_bytes()
    server_b = scripted_server()
    streamer = Streamer(fast_config(server_b.url, spool))
    streamer.start()
    try:
        # Not taken, not even locked: another process may be delivering it.
        probe = Spool.lock(spool / theirs, Spool.read_meta(spool / theirs))
        assert probe is not None
        probe.close(keep=False)
        for frame in synthetic_frames(5, seed=2):
            streamer.submit(frame)
    finally:
        result = streamer.finish(10)
    assert result.ok and result.earlier == (), result.message
    (only,) = server_b.sessions.values()
    assert len(only.frames) == 5  # B got its own session and nothing of A's
    assert (spool / theirs / META_NAME).read_bytes() == before  # untouched
    (waiting,) = list_pending(spool)
    assert (waiting.local_id, waiting.state, waiting.why) == (theirs, "waiting",
                                                              "not yet delivered")
    assert waiting.url == elsewhere.url and waiting.frames == 12 and waiting.frames_acked == 0


def test_the_builtin_destination_survives_a_new_port_and_token(scripted_server, tmp_path):
    spool = tmp_path / "spool"
    first_run = fast_config(closed_port_url(), spool, token="run-1-token",
                            destination=BUILTIN_DESTINATION)
    local_id = _leave_in_spool(first_run, 7)
    assert _meta(spool, local_id)["destination"] == BUILTIN_DESTINATION
    server = scripted_server()  # the next run: another port, another token
    result = Streamer(fast_config(server.url, spool, destination=BUILTIN_DESTINATION),
                      capture=False)
    result.start()
    (earlier,) = result.finish(10).earlier
    assert earlier.ok and earlier.frames == 7, earlier.message
    assert list_pending(spool) == []


def test_an_old_session_without_destination_is_listed_never_delivered_automatically(
    scripted_server, tmp_path
):
    spool = tmp_path / "spool"
    server = scripted_server()
    config = fast_config(server.url, spool)
    local_id = _leave_in_spool(fast_config(closed_port_url(), spool), 4)
    # Rewrite session.json as meetcap wrote it before destinations existed (version 1).
    meta = _meta(spool, local_id)
    old = {k: meta[k] for k in ("local_id", "started_at", "session_id", "resume_token",
                                "acked", "ended")}
    old.update(url=config.url, version=1)
    (spool / local_id / META_NAME).write_text(json.dumps(old))

    streamer = Streamer(config, capture=False)  # same URL, right token
    streamer.start()
    assert streamer.finish(5).earlier == ()
    assert server.sessions == {}
    (waiting,) = list_pending(spool)
    assert (waiting.state, waiting.why, waiting.destination) == (
        "unknown_destination", "destination unknown", None)
    assert waiting.url == config.url and waiting.frames == 4
    assert has_pending(spool) and not has_pending(spool, config.resolved_destination())

    # Claimed with the token: bound to the recorded URL and that account, then delivered.
    result = deliver(spool, local_id, token=SCRIPTED_TOKEN, timeout_s=10,
                     streamer_options=dict(backoff_base_s=0.05, backoff_cap_s=0.5))
    assert result.ok and result.frames == 4, result.message
    assert list_pending(spool) == [] and not (spool / local_id).exists()


# -- refusals and re-binding, against the real meetcap-server


def test_a_refused_token_is_kept_as_the_reason_and_new_credentials_deliver_it(
    meetcap_server, tmp_path
):
    spool = tmp_path / "spool"
    bad = fast_config(meetcap_server.url, spool, token="not-a-valid-token")
    streamer = Streamer(bad)
    streamer.start()
    frames = list(synthetic_frames(6))
    for frame in frames:
        streamer.submit(frame)
    wait_until(lambda: streamer.status().state == "failed")
    local_id = streamer._live.meta.local_id
    assert not streamer.finish(1).ok
    meta = _meta(spool, local_id)
    assert meta["refused_code"] == 401 and "refused the token" in meta["refused_reason"]
    (waiting,) = list_pending(spool)
    assert waiting.state == "refused" and "refused the token" in waiting.why

    with pytest.raises(ConfigError, match="--token"):
        deliver(spool, local_id)  # the recorded destination, but no token: say what to pass

    result = deliver(spool, local_id, token=TOKEN, timeout_s=20)
    assert result.ok and result.frames == 6, result.message
    assert stored_pcm(meetcap_server.data_dir, result.session_id) == b"".join(
        f.pcm for f in frames)
    sidecar = json.loads((meetcap_server.data_dir / f"{result.session_id}.json").read_text())
    assert sidecar["user"] == "alice"
    assert list(spool.iterdir()) == []


def test_another_users_token_is_refused_as_forbidden_and_the_owner_still_delivers(
    meetcap_server, tmp_path
):
    spool = tmp_path / "spool"
    streamer = Streamer(fast_config(meetcap_server.url, spool, token=TOKEN))
    streamer.start()
    for frame in synthetic_frames(5):
        streamer.submit(frame)
    wait_until(lambda: streamer.status().frames_acked == 5)
    local_id = streamer._live.meta.local_id
    streamer.close()  # not ended: the session (known to the server) stays in the spool
    # bob's streamer never touches alice's session...
    bobs = Streamer(fast_config(meetcap_server.url, spool, token=OTHER_TOKEN), capture=False)
    bobs.start()
    assert bobs.finish(5).earlier == ()
    # ...and re-binding it to bob on purpose is refused by the server (4007), kept as why.
    refused = deliver(spool, local_id, token=OTHER_TOKEN, timeout_s=10)
    assert not refused.ok and "belongs to another user" in refused.message
    assert find_pending(spool, local_id).refused_code == 4007
    mine = deliver(spool, local_id, token=TOKEN, timeout_s=10)
    assert mine.ok and mine.frames == 5, mine.message


def test_a_rebind_is_durable_before_anything_is_sent(scripted_server, tmp_path):
    spool = tmp_path / "spool"
    local_id = _leave_in_spool(fast_config(closed_port_url(), spool, token="old-token"), 5)
    unreachable = closed_port_url()
    result = deliver(spool, local_id, url=unreachable, token="new-token", timeout_s=0.5,
                     streamer_options=dict(open_timeout_s=0.2))
    assert not result.ok and result.frames_left == 5
    meta = _meta(spool, local_id)
    assert meta["destination"] == destination_key(unreachable, "new-token")
    assert meta["url"] == unreachable and "new-token" not in json.dumps(meta)
    # It now belongs there: the next streamer for that destination delivers it.
    server = scripted_server()
    moved = deliver(spool, local_id, url=server.url, token=SCRIPTED_TOKEN, timeout_s=10)
    assert moved.ok and moved.frames == 5, moved.message


# -- discard and errors


def test_discard_removes_one_recording_and_refuses_unknown_or_busy_ones(tmp_path):
    spool = tmp_path / "spool"
    keep = _leave_in_spool(fast_config(closed_port_url(), spool), 3)
    drop = _leave_in_spool(fast_config(closed_port_url(), spool), 3)
    with pytest.raises(PendingNotFound, match="meetcap spool list"):
        discard(spool, "no-such-id")
    with pytest.raises(PendingNotFound):
        discard(spool, "../spool")
    discard(spool, drop)
    assert [r.local_id for r in list_pending(spool)] == [keep]
    # A recording another streamer holds is listed as busy and neither discarded nor
    # delivered from here.
    holder = Spool.open(spool)
    try:
        (busy,) = list_pending(spool)
        assert busy.state == "busy" and "another meetcap process" in busy.why
        assert not has_pending(spool)
        with pytest.raises(PendingBusy):
            discard(spool, keep)
        with pytest.raises(PendingBusy):
            deliver(spool, keep, token="another-token", timeout_s=1)
    finally:
        holder.close()
    assert find_pending(spool, keep).state == "waiting"
