"""`meetcap record --transcript` on real PulseAudio, to a server that gives up transcribing
the session: the server's sentence (naming `meetcap transcribe <id>.wav`) is printed once,
as a warning line of its own, and the recording is delivered whole (exit 0).

The server's transcription worker is made to crash on the session by its test-only
fault-injection hook (MEETCAP_FAULT_CRASH_SESSIONS_FILE, see
tests/server/test_transcription_crash_bound.py); the session is named in that file as soon
as the server stores its first file. Everything else is real.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from meetcap.server.transcription.worker import FAULT_CRASH_ENV
from tests.support.pulse import MIC_ID
from tests.support.server_proc import TOKEN


def test_record_transcript_prints_once_that_the_server_gave_the_transcript_up(
    pulse, meetcap_server_factory, tmp_path, monkeypatch
):
    crash_file = tmp_path / "crash-sessions"
    crash_file.write_text("")
    monkeypatch.setenv(FAULT_CRASH_ENV, str(crash_file))
    server = meetcap_server_factory(transcribe=True, realtime_slack_s=1000)
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--no-normalize",
         "--seconds", "6", "--url", server.url, "--token", TOKEN, "--transcript",
         "--data-dir", str(tmp_path / "client")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 20
    while not (sidecars := [p for p in server.data_dir.glob("*.json")
                            if not p.name.endswith(".transcript.json")]):
        assert time.monotonic() < deadline and proc.poll() is None, "no session stored"
        time.sleep(0.05)
    session_id = sidecars[0].name.removesuffix(".json")
    crash_file.write_text(session_id + "\n")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr  # the audio is whole: the recording succeeded
    told = [line for line in stderr.splitlines() if "crashed 3 times" in line]
    assert len(told) == 1, stderr  # once, not per status
    assert told[0].startswith("warning: Transcription of this session stopped"), told
    assert f"'meetcap transcribe {session_id}.wav'" in told[0], told
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["finished"] and sidecar["frames"] == 60
