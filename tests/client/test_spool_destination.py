"""Issue 8, end to end with real processes: audio recorded for one server is never
delivered to another.

Two real meetcap-servers (A with alice, B with bob), the real `meetcap record` capturing
from the test PulseAudio, killed with SIGKILL while A is down; then a recording for B;
then `meetcap spool list / deliver / discard` as a user runs them.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from meetcap.client.config import account_fingerprint, destination_key
from meetcap.client.spool import META_NAME, RECORD_BYTES, spooled_frames
from meetcap.errors import ProtocolError
from meetcap.protocol import decode_audio
from tests.client.conftest import wait_until
from tests.client.delivery import stored_pcm
from tests.support.pulse import MIC_ID, MIC_SINK, SYSTEM_ID
from tests.support.server_proc import OTHER_TOKEN, OTHER_USER, TOKEN, USER

_REPO = Path(__file__).resolve().parents[2]


def _env(data_dir: Path) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(_REPO), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, MEETCAP_DATA_DIR=str(data_dir), PYTHONPATH=path)


def _meetcap(args: list[str], env: dict[str, str], timeout_s: float = 120):
    return subprocess.run(
        [sys.executable, "-m", "meetcap", *args], env=env, cwd=_REPO,
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout_s,
    )


def _record(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID,
             *args],
            env=env, cwd=_REPO, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )


def _spooled_pcm(directory: Path) -> bytes:
    """The PCM of the whole, valid, contiguous records from frame 0 (what a later run
    recovers and delivers: a record torn by the SIGKILL is cut)."""
    pcm, expected = [], 0
    for segment in sorted(directory.glob("seg-*.dat")):
        data = segment.read_bytes()
        for offset in range(0, len(data) - RECORD_BYTES + 1, RECORD_BYTES):
            try:
                message = decode_audio(data[offset : offset + RECORD_BYTES])
            except ProtocolError:
                return b"".join(pcm)
            if message.seq != expected:
                return b"".join(pcm)
            pcm.append(message.pcm)
            expected += 1
    return b"".join(pcm)


def _sidecars(data_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(data_dir).glob("*.json"))]


def _listed(env: dict[str, str]) -> dict[str, dict]:
    proc = _meetcap(["spool", "list", "--json"], env)
    assert proc.returncode == 0, proc.stderr
    return {r["local_id"]: r for r in json.loads(proc.stdout)}


def test_audio_recorded_for_server_a_is_never_delivered_to_server_b(
    pulse, speech_files, meetcap_server_factory, tmp_path
):
    data = tmp_path / "meetcap-data"
    spool = data / "spool"
    env = _env(data)
    server_a = meetcap_server_factory()
    server_b = meetcap_server_factory()
    a_url, b_url = server_a.url, server_b.url
    server_a.kill()  # A is unreachable while alice records

    # 1. alice records for A; the process is killed (-9) with frames in the spool.
    player = pulse.play(speech_files["mic"].path, MIC_SINK)
    alice_rec = _record(["--url", a_url, "--token", TOKEN, "--seconds", "120"], env,
                        tmp_path / "record-a.log")
    try:
        session_dir = wait_until(lambda: next(iter(spool.glob("*/")), None), timeout_s=30)
        wait_until(lambda: spooled_frames(session_dir)[1] + 1 >= 60, timeout_s=60)
    finally:
        alice_rec.send_signal(signal.SIGKILL)
        alice_rec.wait(10)
        player.kill()
        player.wait(10)
    alice_id = session_dir.name
    alice_meta = json.loads((session_dir / META_NAME).read_text())
    assert alice_meta["destination"] == destination_key(a_url, TOKEN)
    assert TOKEN not in (session_dir / META_NAME).read_text()
    spooled = _spooled_pcm(session_dir)
    spooled_frames_n = len(spooled) // 3200
    assert spooled_frames_n >= 60

    # 2. bob records for B and finishes: B stores bob's session only.
    bob = _meetcap(["record", "--mic", MIC_ID, "--system", SYSTEM_ID, "--url", b_url,
                    "--token", OTHER_TOKEN, "--seconds", "2"], env)
    assert bob.returncode == 0, bob.stdout[-2000:] + bob.stderr[-2000:]
    (b_session,) = _sidecars(server_b.data_dir)
    assert b_session["user"] == OTHER_USER and b_session["frames"] == 20
    assert b_session["finished"] is True
    assert json.loads((session_dir / META_NAME).read_text()) == alice_meta  # untouched

    # 3. alice's session is still listed, for A and her account.
    listed = _listed(env)
    assert set(listed) == {alice_id}
    waiting = listed[alice_id]
    assert waiting["url"] == a_url and waiting["account"] == account_fingerprint(a_url, TOKEN)
    assert waiting["frames"] == spooled_frames_n and waiting["state"] == "waiting"
    assert waiting["why"] == "not yet delivered"
    assert waiting["session_id"] is None  # A never saw it

    # 4. A is back. A recording with a wrong token is refused (401) and waits, saying why.
    server_a.start()  # the same port and data dir
    assert server_a.url == a_url
    wrong = _meetcap(["record", "--mic", MIC_ID, "--system", SYSTEM_ID, "--url", a_url,
                      "--token", "not-alices-token", "--seconds", "1",
                      "--finish-timeout", "5"], env)
    assert wrong.returncode == 3, wrong.stdout[-2000:] + wrong.stderr[-2000:]
    listed = _listed(env)
    (wrong_id,) = set(listed) - {alice_id}
    assert listed[wrong_id]["state"] == "refused"
    assert "refused the token" in listed[wrong_id]["why"]
    assert listed[wrong_id]["refused_code"] == 401
    assert listed[alice_id]["state"] == "waiting"  # the wrong token never touched it

    # Without a terminal and without --yes, discard refuses (exit 2) and keeps it.
    refused = _meetcap(["spool", "discard", wrong_id], env)
    assert refused.returncode == 2 and "--yes" in refused.stderr, refused.stderr
    assert (spool / wrong_id).exists()
    unknown = _meetcap(["spool", "deliver", "no-such-recording", "--token", TOKEN], env)
    assert unknown.returncode == 2 and "no-such-recording" in unknown.stderr
    assert "Traceback" not in unknown.stderr and len(unknown.stderr.strip().splitlines()) == 1
    gone = _meetcap(["spool", "discard", wrong_id, "--yes"], env)
    assert gone.returncode == 0, gone.stderr
    assert not (spool / wrong_id).exists() and set(_listed(env)) == {alice_id}

    # 5. Delivering needs alice's token (the spool never stores it), then goes to A.
    no_token = _meetcap(["spool", "deliver", alice_id], env)
    assert no_token.returncode == 2 and "--token" in no_token.stderr, no_token.stderr
    delivered = _meetcap(["spool", "deliver", alice_id, "--token", TOKEN], env)
    assert delivered.returncode == 0, delivered.stdout + delivered.stderr
    (a_session,) = _sidecars(server_a.data_dir)
    assert a_session["user"] == USER and a_session["finished"] is True
    assert a_session["frames"] == spooled_frames_n
    pcm = stored_pcm(server_a.data_dir, a_session["session_id"])
    assert hashlib.sha256(pcm).hexdigest() == hashlib.sha256(spooled).hexdigest()
    assert a_session["sha256"] == hashlib.sha256(spooled).hexdigest()
    assert _listed(env) == {} and not session_dir.exists()
    # B still holds bob's session alone.
    assert [s["session_id"] for s in _sidecars(server_b.data_dir)] == [b_session["session_id"]]
