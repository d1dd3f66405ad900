"""A virtual X display (Xvfb) for the benches that run the real app window."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def xvfb(display: str, screen: str = "1280x1024x24") -> Iterator[None]:
    """An Xvfb server on ``display`` (``":95"``) with one screen of ``screen``
    (WIDTHxHEIGHTxDEPTH) for the block; ready once its socket exists."""
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", screen, "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/tmp/.X11-unix/X{display.lstrip(':')}").exists():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("Xvfb did not start")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=10)
