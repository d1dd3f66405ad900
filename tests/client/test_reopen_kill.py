"""Issue 11: a `meetcap spool deliver` killed (-9) while it re-opens a lost session as a
new one leaves no empty orphan session on the server, whatever the moment of the kill.

The re-open writes the new session's id and token to the spool before its hello
(hello.create, docs/protocol.md 4), so the next run resumes that same id. Real
meetcap-server, real `meetcap` processes killed with SIGKILL at several points, a proxy
that holds the server's replies to widen the one window that mattered: the server has
created the session and the client has not read its welcome.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import pytest

from meetcap.client import Streamer
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import stored_pcm
from tests.client.frames import synthetic_frames
from tests.client.lost_session_steps import (
    cli_env,
    record_until_acked,
    run_meetcap,
    server_sidecars,
    spool_meta,
    start_delivery,
    wav_frames,
)
from tests.client.reply_holding_proxy import ReplyHoldingProxy
from tests.support.server_proc import TOKEN

ACKED, LATER = 20, 60  # frames the lost session acknowledged; frames captured after

# Where the delivering process is killed, in a loop. "awaiting_welcome": the server
# created the new session, its welcome is held on the way. "just_reopened": as soon as
# the re-open is in the spool (before, during or after the hello: wherever it lands).
# "after_welcome": the new session's welcome is in the spool. "mid_delivery": part of
# the audio is stored in the new session.
KILL_POINTS = (
    "awaiting_welcome", "just_reopened", "after_welcome", "mid_delivery",
    "awaiting_welcome", "just_reopened",
)


def _wait_for(point: str, spool: Path, local_id: str, data_dir: Path) -> None:
    """Return at the kill point ``point`` (see KILL_POINTS) of a delivering process."""
    if point == "awaiting_welcome":
        wait_until(lambda: server_sidecars(data_dir), timeout_s=30)
        time.sleep(0.3)  # the welcome is sent (and held)
        meta = spool_meta(spool, local_id)
        assert meta["lost_session"] and meta["acked"] == ACKED - 1, meta
        # The new session's welcome is not in the spool: the window of the kill.
        assert meta.get("create_pending") or meta["session_id"] is None, meta
    elif point == "just_reopened":
        wait_until(lambda: spool_meta(spool, local_id).get("lost_session"), timeout_s=30,
                   interval_s=0.001)
    elif point == "after_welcome":
        wait_until(lambda: spool_meta(spool, local_id).get("lost_session")
                   and not spool_meta(spool, local_id).get("create_pending"),
                   timeout_s=30, interval_s=0.005)
    else:
        wait_until(lambda: any(
            wav_frames(data_dir, s["session_id"]) >= 10
            for s in server_sidecars(data_dir)), timeout_s=30)


@pytest.fixture
def lost_session_spool(meetcap_server_factory, tmp_path):
    """A spool holding a recording whose server session the server has lost: ACKED frames
    acknowledged, LATER more never sent; the server's data dir wiped. Recorded through a
    proxy, so every later delivery goes through it too. Yields (server, proxy, spool
    folder, local id, frames)."""
    server = meetcap_server_factory(realtime_slack_s=1000)
    proxy = ReplyHoldingProxy(server.port).start()
    spool = tmp_path / "template" / "spool"
    frames = list(synthetic_frames(ACKED + LATER, seed=21))
    streamer = Streamer(fast_config(proxy.url, spool, token=TOKEN))
    record_until_acked(streamer, frames[:ACKED])
    local_id = streamer._live.meta.local_id
    server.kill()
    for frame in frames[ACKED:]:
        streamer.submit(frame)
    streamer.close()
    try:
        yield server, proxy, spool, local_id, frames
    finally:
        proxy.stop()


def test_a_kill_during_the_reopen_never_leaves_an_empty_orphan_session(
    lost_session_spool, tmp_path
):
    server, proxy, template, local_id, frames = lost_session_spool
    for round_no, point in enumerate(KILL_POINTS):
        # A server that lost everything, and a fresh copy of the spool, for each round.
        server.kill()
        shutil.rmtree(server.data_dir)
        server.data_dir.mkdir()
        server.start()
        data = tmp_path / f"round-{round_no}"
        spool = data / "spool"
        shutil.copytree(template, spool)
        env = cli_env(data)

        if point == "awaiting_welcome":
            # The child's first connection resumes (4005 passes); its second, the new
            # session's, gets its welcome held.
            proxy.hold_replies(from_connection=proxy.connections + 2)
        proc = start_delivery(local_id, env)
        try:
            _wait_for(point, spool, local_id, server.data_dir)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        proxy.cut_now()
        proxy.release_replies()

        done = run_meetcap(["spool", "deliver", local_id, "--token", TOKEN], env)
        assert done.returncode == 0, f"{point}: {done.stdout}{done.stderr}"
        assert not (spool / local_id).exists()
        # Exactly one session on the server: the new one, finished, holding every frame
        # the lost session had not acknowledged, each once, in order.
        sidecars = server_sidecars(server.data_dir)
        ids = sorted(s["session_id"] for s in sidecars)
        assert len(sidecars) == 1, f"{point}: {len(sidecars)} sessions on the server: {ids}"
        (sidecar,) = sidecars
        assert sidecar["finished"] is True and sidecar["frames"] == LATER, point
        assert stored_pcm(server.data_dir, sidecar["session_id"]) == b"".join(
            f.pcm for f in frames[ACKED:]
        ), point
