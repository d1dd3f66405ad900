"""An opt-in trace of what the mixer is fed and how its lanes' drift loops answer.

Off unless ``MEETCAP_MIXTRACE`` names a file (then every process appends to it). Each
line is one event, space separated, times from ``time.monotonic()``:

- ``C <device> <t> <frames> <overflow>``: a capture callback's block arrived.
- ``P <mixer> <lane> <t> <samples> <upstream>``: the mixer was pushed 16 kHz samples.
- ``R <mixer> <t> <n> <clock_lead>``: the mixer rendered ``n`` samples.
- ``S <mixer> <lane> <t> <latency> <estimate> <reference> <rate_ppm> <correction_ppm>
  <backlog> <underruns> <steps> <primed>``: a lane's state, once per second of timeline.

Why at the mixer's push and render, and not only the capture callback: the drift loop
sees nothing else (sample counts, never the audio), so replaying P and R lines through a
fresh :class:`~meetcap.dsp.mixer.Mixer` reproduces every decision it made, exactly
(tests/dsp/test_mixer_replay.py). Off, it costs one ``is None`` test per call.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from typing import TextIO

ENV = "MEETCAP_MIXTRACE"

_lock = threading.Lock()
_file: TextIO | None = None
_opened = False


def _out() -> TextIO | None:
    global _file, _opened
    if not _opened:
        _opened = True
        path = os.environ.get(ENV)
        if path:
            _file = open(path, "a", buffering=1 << 16, encoding="ascii")  # noqa: SIM115
            atexit.register(_file.close)
    return _file


def enabled() -> bool:
    return _out() is not None


def write(*fields: object) -> None:
    """One event line (see the module doc); cheap enough for the audio callback."""
    out = _out()
    if out is None:
        return
    line = " ".join(f"{f:.6f}" if isinstance(f, float) else str(f) for f in fields) + "\n"
    with _lock:
        out.write(line)


def now() -> float:
    return time.monotonic()


def flush() -> None:
    out = _out()
    if out is not None:
        with _lock:
            out.flush()
