"""Steps the lost-session and kill-during-delivery tests share: run the real `meetcap`
CLI on a data dir, start a `meetcap spool deliver` to be killed, read what the spool and
the server hold while a process may be rewriting it, and record until acknowledged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from meetcap.client import Streamer
from meetcap.client.spool import META_NAME
from meetcap.constants import FRAME_BYTES
from meetcap.frames import Frame
from tests.client.conftest import wait_until
from tests.client.delivery import stored_pcm
from tests.support.server_proc import TOKEN

REPO = Path(__file__).resolve().parents[2]


def cli_env(data_dir: Path) -> dict[str, str]:
    """The environment of a `meetcap` process whose data (and spool) is ``data_dir``."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, MEETCAP_DATA_DIR=str(data_dir), PYTHONPATH=path)


def run_meetcap(args, env, timeout_s=120.0):
    return subprocess.run(
        [sys.executable, "-m", "meetcap", *args], env=env, cwd=REPO,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
    )


def start_delivery(local_id: str, env: dict[str, str]) -> subprocess.Popen:
    """`meetcap spool deliver <local_id>` in the background, to be killed mid-way."""
    return subprocess.Popen(
        [sys.executable, "-m", "meetcap", "spool", "deliver", local_id, "--token", TOKEN],
        env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def record_until_acked(streamer: Streamer, frames: Sequence[Frame]) -> str:
    """Start ``streamer``, submit ``frames`` and wait until the server acknowledged them
    all; returns the server's session id."""
    streamer.start()
    for frame in frames:
        streamer.submit(frame)
    wait_until(lambda: streamer.status().frames_acked >= len(frames), timeout_s=30)
    return streamer.status().session_id


def spool_meta(spool: Path, local_id: str) -> dict:
    """A spooled recording's meta file; {} while a process is replacing it."""
    try:
        return json.loads((spool / local_id / META_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # being replaced: look again
        return {}


def server_sidecars(data_dir: Path) -> list[dict]:
    """The sessions' sidecars in a server's data dir (those readable right now)."""
    found = []
    for path in data_dir.glob("*.json"):
        try:
            sidecar = json.loads(path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        if "session_id" in sidecar:
            found.append(sidecar)
    return found


def wav_frames(data_dir: Path, session_id: str) -> int:
    """Whole frames the server stored for a session so far (0 before its WAV exists)."""
    try:
        return len(stored_pcm(data_dir, session_id)) // FRAME_BYTES
    except FileNotFoundError:
        return 0
