"""Issue 11: a recording killed (-9) between its first hello and the welcome leaves no
empty orphan session on the server, whatever the moment of the kill, even before its
first frame (the session that hello created is then ended, and none is created for a
recording the server never saw).

A new recording's session id and token are chosen and written to the spool before the
first hello (hello.create, docs/protocol.md 4), so the next run resumes that session
instead of opening a second one next to an empty, never-finished first. Real
meetcap-server, real recording processes (tests/client/streaming_child.py) killed with
SIGKILL, a real delivering process after each kill, and a proxy that holds the server's
replies to widen the window that mattered: the server created the session and the client
has not read its welcome.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from meetcap.constants import FRAME_BYTES
from tests.client.conftest import wait_until
from tests.client.delivery import stored_pcm
from tests.client.frames import synthetic_frames
from tests.client.lost_session_steps import (
    REPO,
    cli_env,
    server_sidecars,
    spool_meta,
    wav_frames,
)
from tests.client.reply_holding_proxy import ReplyHoldingProxy
from tests.support.server_proc import TOKEN

FRAMES, RATE_HZ = 200, 50.0  # what each recording child captures, and how fast

# Where the recording process is killed, in a loop. "awaiting_welcome": the server
# created the session, its welcome is held on the way, frames wait in the spool.
# "first_frame": as soon as one frame is in the spool (before, during or after the hello:
# wherever it lands). "after_welcome": the welcome is in the spool. "mid_delivery": part
# of the audio is stored on the server. Before the first frame was captured:
# "no_frame_created" (the server created the session, the welcome is held) and
# "no_frame_no_hello" (the path is stalled: the hello never reached the server).
KILL_POINTS = (
    "awaiting_welcome", "first_frame", "after_welcome", "awaiting_welcome",
    "mid_delivery", "no_frame_created", "first_frame", "no_frame_no_hello",
    "awaiting_welcome",
)
NO_FRAME = ("no_frame_created", "no_frame_no_hello")


def _logged(log: Path) -> int:
    """Frames the child reported as in its spool (complete lines only)."""
    try:
        return log.read_text().count("\n")
    except FileNotFoundError:
        return 0


def _spooled_id(spool: Path) -> str | None:
    found = [p.name for p in spool.iterdir() if p.is_dir()] if spool.exists() else []
    return found[0] if found else None


def _new_sidecars(data_dir: Path, before: set[str]) -> list[dict]:
    return [s for s in server_sidecars(data_dir) if s["session_id"] not in before]


def _wait_for(point: str, spool: Path, log: Path, data_dir: Path, before: set[str]) -> None:
    """Return at the kill point ``point`` (see KILL_POINTS) of a recording process."""
    if point == "no_frame_created":
        wait_until(lambda: _new_sidecars(data_dir, before), timeout_s=30)
        time.sleep(0.2)  # the welcome is sent (and held)
    elif point == "no_frame_no_hello":
        wait_until(lambda: _spooled_id(spool) and spool_meta(spool, _spooled_id(spool)),
                   timeout_s=30)
        time.sleep(0.3)  # the connection is opened, and stalled in the proxy
    elif point == "awaiting_welcome":
        wait_until(lambda: _new_sidecars(data_dir, before) and _logged(log) >= 3, timeout_s=30)
        time.sleep(0.2)  # the welcome is sent (and held)
        meta = spool_meta(spool, _spooled_id(spool))
        # The welcome is not in the spool: the window of the kill.
        assert meta.get("create_pending") or meta["session_id"] is None, meta
    elif point == "first_frame":
        wait_until(lambda: _logged(log) >= 1, timeout_s=30, interval_s=0.001)
    elif point == "after_welcome":
        def welcomed() -> bool:
            local_id = _spooled_id(spool)
            meta = spool_meta(spool, local_id) if local_id else {}
            return bool(meta.get("session_id")) and not meta.get("create_pending")

        wait_until(welcomed, timeout_s=30, interval_s=0.002)
    else:
        wait_until(lambda: any(
            wav_frames(data_dir, s["session_id"]) >= 10
            for s in _new_sidecars(data_dir, before)), timeout_s=30)


def test_a_kill_between_the_first_hello_and_the_welcome_never_leaves_an_empty_orphan_session(
    meetcap_server_factory, tmp_path
):
    server = meetcap_server_factory(realtime_slack_s=1000)
    proxy = ReplyHoldingProxy(server.port).start()
    captured = [f.pcm for f in synthetic_frames(FRAMES)]  # what streaming_child submits
    try:
        for round_no, point in enumerate(KILL_POINTS):
            data = tmp_path / f"round-{round_no}"
            spool, log = data / "spool", data / "submitted.log"
            data.mkdir()
            env = cli_env(data)
            before = {s["session_id"] for s in server_sidecars(server.data_dir)}
            if point in ("awaiting_welcome", "no_frame_created"):
                proxy.hold_replies(from_connection=proxy.connections + 1)
            elif point == "no_frame_no_hello":
                proxy.stall()
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.client.streaming_child", "stream", proxy.url,
                 TOKEN, str(spool), str(log), "--frames", str(FRAMES), "--rate", str(RATE_HZ),
                 "--start-after-s", "60" if point in NO_FRAME else "0"],
                env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                _wait_for(point, spool, log, server.data_dir, before)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            logged = _logged(log)
            proxy.cut_now()
            proxy.release_replies()
            proxy.resume()

            done = subprocess.run(
                [sys.executable, "-m", "tests.client.streaming_child", "deliver", proxy.url,
                 TOKEN, str(spool)],
                env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=120,
            )
            assert done.returncode == 0, f"{point}: {done.stdout}{done.stderr}"
            assert _spooled_id(spool) is None, f"{point}: the recording is still spooled"
            # Exactly one session of this recording on the server, finished, holding every
            # frame the killed process had spooled (at least those it logged), each once,
            # byte for byte, in order: no empty orphan beside it.
            sidecars = _new_sidecars(server.data_dir, before)
            ids = sorted(s["session_id"] for s in sidecars)
            if point == "no_frame_no_hello":
                # Nothing captured, nothing on the server: the delivery created nothing.
                assert sidecars == [], f"{point}: sessions created for nothing: {ids}"
                continue
            assert len(sidecars) == 1, f"{point}: {len(sidecars)} sessions on the server: {ids}"
            (sidecar,) = sidecars
            stored = stored_pcm(server.data_dir, sidecar["session_id"])
            frames = len(stored) // FRAME_BYTES
            assert sidecar["finished"] is True and sidecar["frames"] == frames, point
            assert logged <= frames <= FRAMES, (point, logged, frames)
            if point == "no_frame_created":
                assert frames == 0, point  # the session the hello created, ended
            assert stored == b"".join(captured[:frames]), point
    finally:
        proxy.stop()
