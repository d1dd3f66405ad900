"""Tracks mode delivered by the real client (Streamer + spool) to the real meetcap-server
(docs/protocol.md 3.5): both lanes stored gaplessly next to the mono mix across cut
connections, kill -9 of the server and a resume on another instance behind Redis; the
mono mix alone, whole, to a server that does not take tracks."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
import wave
from pathlib import Path

from meetcap.client import Streamer
from meetcap.constants import FRAME_BYTES
from meetcap.frames import Frame
from meetcap.protocol import TRACKS_MESSAGE_BYTES
from tests.client.conftest import fast_config, wait_until
from tests.client.delivery import stored_pcm
from tests.client.fault_proxy import FaultProxy
from tests.client.test_faults import FAST_SERVER, _progress
from tests.support.server_proc import TOKEN

RATE_HZ = 200  # 20x real time


class TracksPump:
    """Submits seeded frames carrying both lanes from its own thread until stop()."""

    def __init__(self, streamer: Streamer, seed: int = 5) -> None:
        self.streamer, self.rng = streamer, random.Random(seed)
        self.mono: list[bytes] = []
        self.tracks: list[bytes] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> TracksPump:
        self._thread.start()
        return self

    def stop(self) -> TracksPump:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error
        return self

    def _run(self) -> None:
        started = time.monotonic()
        try:
            seq = 0
            while not self._stop.is_set():
                delay = started + seq / RATE_HZ - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pcm, tracks = self.rng.randbytes(FRAME_BYTES), self.rng.randbytes(2 * FRAME_BYTES)
                self.streamer.submit(Frame(seq, pcm, 1.7e9 + seq / 10, seq % 3 == 0, tracks=tracks))
                self.mono.append(pcm)
                self.tracks.append(tracks)
                seq += 1
        except BaseException as exc:  # surfaced by stop()
            self.error = exc


def _config(url: str, tmp_path: Path, **overrides):
    return fast_config(url, tmp_path / "spool", token=TOKEN, tracks=True, **overrides)


def _assert_both_files_exact(result, pump: TracksPump, data_dir: Path) -> None:
    assert result.ok and result.verified, result.message
    mono = stored_pcm(data_dir, result.session_id)
    assert len(mono) == len(pump.mono) * FRAME_BYTES
    assert hashlib.sha256(mono).hexdigest() == hashlib.sha256(b"".join(pump.mono)).hexdigest()
    with wave.open(str(data_dir / f"{result.session_id}.tracks.wav")) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 16000)
        stored = wav.readframes(wav.getnframes())
    frame = 2 * FRAME_BYTES
    differing = [seq for seq, lanes in enumerate(pump.tracks)
                 if stored[seq * frame : (seq + 1) * frame] != lanes]
    assert differing == [], f"tracks stored wrong or missing: {differing[:10]}"
    assert len(stored) == len(pump.tracks) * frame  # nothing doubled or extra


def test_tracks_survive_cut_connections_and_server_kill_9(meetcap_server_factory, tmp_path):
    server = meetcap_server_factory(**FAST_SERVER)
    path = FaultProxy(server.port).start()
    try:
        streamer = Streamer(_config(path.url, tmp_path))
        streamer.start()
        pump = TracksPump(streamer).start()
        try:
            for cut in (1_000, TRACKS_MESSAGE_BYTES * 2 + 4_000):  # inside a tracks message
                _progress(streamer, 20)
                path.cut_after(cut)
                wait_until(lambda: path.cuts >= 1)
            for _ in range(2):
                _progress(streamer, 20)
                server.restart(kill=True)  # SIGKILL: unacked frames of both files at risk
            _progress(streamer, 20)
        finally:
            pump.stop()
        result = streamer.finish(60)
        assert streamer.status().tracks_stored is True
        assert streamer.status().reconnects >= 4
    finally:
        path.stop()
    _assert_both_files_exact(result, pump, server.data_dir)


def test_tracks_resume_on_another_instance_through_redis(
    meetcap_server_factory, redis_url, tmp_path
):
    shared = tmp_path / "shared-data"
    first = meetcap_server_factory(data_dir=shared, redis=redis_url, **FAST_SERVER)
    second = meetcap_server_factory(data_dir=shared, redis=redis_url, **FAST_SERVER)
    path = FaultProxy(first.port).start()
    try:
        streamer = Streamer(_config(path.url, tmp_path))
        streamer.start()
        pump = TracksPump(streamer, seed=9).start()
        try:
            _progress(streamer, 60)
            path.retarget(second.port)
            first.kill()
            _progress(streamer, 60)
        finally:
            pump.stop()
        result = streamer.finish(60)
    finally:
        path.stop()
    assert "attached (epoch 1" in second.log_text()
    _assert_both_files_exact(result, pump, shared)


def test_a_server_without_tracks_gets_the_whole_mono_mix_and_it_is_said_once(
    meetcap_server_factory, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="meetcap.client.link")
    server = meetcap_server_factory(no_tracks=True, **FAST_SERVER)
    streamer = Streamer(_config(server.url, tmp_path))
    streamer.start()
    pump = TracksPump(streamer, seed=11).start()
    try:
        _progress(streamer, 50)
        # The spool kept both lanes all the same (the local record of what was captured).
        assert list((tmp_path / "spool").glob("*/seg-*.trk"))
    finally:
        pump.stop()
    result = streamer.finish(60)
    assert streamer.status().tracks_stored is False
    assert result.ok and result.verified, result.message
    mono = stored_pcm(server.data_dir, result.session_id)
    assert mono == b"".join(pump.mono)
    assert not (server.data_dir / f"{result.session_id}.tracks.wav").exists()
    told = [r for r in caplog.records if "does not store two tracks" in r.getMessage()]
    assert len(told) == 1  # once, not per connection or frame


# The last commit before the tracks extension existed on the wire: its client is "old".
OLD_CLIENT_COMMIT = "1307419^"
_OLD_CLIENT_SCRIPT = """
import json, random, sys, time
from pathlib import Path
from meetcap.client import Streamer, StreamerConfig
from meetcap.frames import Frame
url, token, spool = sys.argv[1:4]
streamer = Streamer(StreamerConfig(url=url, token=token, spool_dir=Path(spool)))
streamer.start()
rng = random.Random(21)
for seq in range(30):
    streamer.submit(Frame(seq, rng.randbytes(3200), time.time(), seq % 2 == 0))
result = streamer.finish(30)
print(json.dumps({"ok": result.ok, "verified": result.verified, "id": result.session_id}))
"""


def test_an_old_client_from_git_is_served_unchanged(meetcap_server_factory, tmp_path):
    """The client as it was before the extension (code from git history) against this
    server: mono frames, a whole session, no tracks file."""
    import json
    import os
    import shutil
    import subprocess
    import sys

    import pytest

    repo = Path(__file__).resolve().parents[2]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("needs this checkout's git history (the old client's code)")
    tree = tmp_path / "old"
    tree.mkdir()
    archive = subprocess.run(["git", "-C", str(repo), "archive", OLD_CLIENT_COMMIT, "meetcap"],
                             capture_output=True, check=False)
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD_CLIENT_COMMIT} is not in this clone (shallow?)")
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive.stdout, check=True)
    assert "tracks" not in (tree / "meetcap/protocol/messages.py").read_text()  # old code
    server = meetcap_server_factory(**FAST_SERVER)
    done = subprocess.run(
        [sys.executable, "-c", _OLD_CLIENT_SCRIPT, server.url, TOKEN, str(tmp_path / "spool")],
        cwd=tree, capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(tree)),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["verified"]
    rng = random.Random(21)
    expected = b"".join(rng.randbytes(3200) for _ in range(30))
    assert stored_pcm(server.data_dir, result["id"]) == expected
    sidecar = json.loads((server.data_dir / f"{result['id']}.json").read_text())
    assert sidecar["tracks"] is False and sidecar["finished"]
    assert not (server.data_dir / f"{result['id']}.tracks.wav").exists()
