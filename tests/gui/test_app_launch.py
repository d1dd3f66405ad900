"""The real app starts every time, whatever order its parts come up in (issue 8).

The app (``meetcap --smoke-test``, offscreen, a real PulseAudio with the test devices,
a fresh HOME each time) is launched 30 times: 15 with the device watcher faster than
the window (the devices are listed, and the watcher's thread runs, before the window
is built: the order that crashed one launch in eight) and 15 with it slower (the
devices arrive after the window is shown). Every launch must exit 0, show its window,
and end with the default devices picked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pulse import MIC_ID, SYSTEM_ID

LAUNCHER = Path(__file__).with_name("launch_app.py")
ROOT = LAUNCHER.parents[2]
LAUNCHES_PER_ORDER = 15

pytestmark = pytest.mark.timeout(600)


def launch(order: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
           "XDG_DATA_HOME": str(home / ".local/share"), "QT_QPA_PLATFORM": "offscreen",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, str(LAUNCHER), order, "--smoke-test=2.5"],
        env=env, capture_output=True, text=True, timeout=90, cwd=ROOT,
    )


@pytest.mark.parametrize("order", ["fast", "slow"],
                         ids=["watcher-before-window", "watcher-after-window"])
def test_the_app_starts_every_time_and_shows_the_devices(pulse, tmp_path, order):
    failures = []
    for attempt in range(LAUNCHES_PER_ORDER):
        home = tmp_path / f"home-{attempt}"
        home.mkdir()
        run = launch(order, home)
        shown = "meetcap smoke test: window 'meetcap' shown" in run.stdout
        picked = (f"picker mic: {MIC_ID}" in run.stdout
                  and f"picker system: {SYSTEM_ID}" in run.stdout)
        if run.returncode != 0 or not shown or not picked or "Traceback" in run.stderr:
            failures.append(f"launch {attempt}: exit {run.returncode}\n{run.stdout[-800:]}\n"
                            f"{run.stderr[-2000:]}")
    assert not failures, f"{len(failures)} of {LAUNCHES_PER_ORDER} launches failed:\n" + \
        "\n".join(failures[:3])
