"""`--data-dir` moves the spool for `meetcap record` and `meetcap spool` alike.

A real `meetcap record` against the test PulseAudio streams to a server that is not
there; what the server never confirmed waits in <data dir>/spool, where `meetcap spool
--data-dir` lists it and discards it. Nothing is written to the user's data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support.net import closed_port_url
from tests.support.pulse import MIC_ID


def meetcap(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meetcap", *args], capture_output=True,
                          text=True, timeout=90, env=env)


def test_record_and_spool_share_the_data_dir_given(pulse, tmp_path):
    data = tmp_path / "data"
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(home / "share")}
    env.pop("MEETCAP_DATA_DIR", None)
    url = closed_port_url()
    run = meetcap("record", "--mic", MIC_ID, "--no-system", "--seconds", "1", "--url", url,
                  "--token", "some-token", "--finish-timeout", "2", "--data-dir", str(data),
                  env=env)
    assert run.returncode == 3, run.stderr
    assert "10 frames left in the spool (see `meetcap spool`)" in run.stdout
    listed = meetcap("spool", "--data-dir", str(data), "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (recording,) = json.loads(listed.stdout)
    assert recording["url"] == url and recording["frames"] == 10
    assert not home.exists() or not any(home.rglob("spool")), "nothing in the user's folder"
    gone = meetcap("spool", "--data-dir", str(data), "discard", recording["local_id"], "--yes",
                   env=env)
    assert gone.returncode == 0, gone.stderr
    assert json.loads(meetcap("spool", "--data-dir", str(data), "--json", env=env).stdout) == []
