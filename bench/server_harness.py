"""What the server benches share: a ``meetcap-server`` subprocess to measure, and the
protocol side of one simulated desktop over bench/rawws.py.

The desktop part is a base class: each bench says what an ack means to it
(:meth:`SimDesktop.on_ack`: latency samples, "caught up") and what a frame carries; the
hello, the dispatch of the server's messages and the end with its check of the stored
audio are the same everywhere.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from rawws import connect_raw

REPO = Path(__file__).resolve().parents[1]
USER, TOKEN = "bench", "bench-token-0123456789"


def start_server(
    data_dir: Path, extra_args: list[str], stderr: int | IO[str] = subprocess.DEVNULL
) -> tuple[subprocess.Popen, str]:
    """``python -m meetcap.server`` on a free port with the bench's token and no session
    limits, plus ``extra_args``; returns the process and its ws:// URL."""
    env = dict(os.environ, MEETCAP_TOKENS=f"{USER}:{TOKEN}", PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap.server", "--port", "0", "--data-dir", str(data_dir),
         "--max-sessions-per-user", "100000", "--new-sessions-per-minute", "100000",
         *extra_args],
        stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (ws://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(1)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the server ends its sessions cleanly), SIGKILL after 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


class SimDesktop:
    """One simulated session's protocol: hello, frames of one seeded 100 ms PCM block,
    end. Runs in the client process's event loop."""

    def __init__(self, seed: int) -> None:
        from meetcap.protocol import ClientConnection

        self.rng = random.Random(seed)
        self.pcm = self.rng.randbytes(3200)
        self.conn = ClientConnection()
        self.seq = 0
        self.acked = -1
        loop = asyncio.get_running_loop()
        self.welcomed = loop.create_future()
        self.ended = loop.create_future()
        self.ws = None

    def on_ack(self, seq: int) -> None:
        """The server acknowledged every frame up to ``seq``."""
        self.acked = max(self.acked, seq)

    def on_text(self, text: str) -> None:
        from meetcap.protocol import Ack, Ended, Error, MessageReceived, Welcome

        for event in self.conn.receive_text(text):
            if not isinstance(event, MessageReceived):
                raise RuntimeError(f"protocol violation from the server: {event}")
            msg = event.message
            if isinstance(msg, Ack):
                self.on_ack(msg.seq)
            elif isinstance(msg, Welcome):
                self.welcomed.set_result(msg)
            elif isinstance(msg, Ended):
                self.ended.set_result(msg)
            elif isinstance(msg, Error):
                for future in (self.welcomed, self.ended):
                    if not future.done():
                        future.set_exception(RuntimeError(f"server error: {msg}"))

    async def open(self, url: str, tracks: int | None = None):
        """Connect and say hello; returns the welcome."""
        self.ws = await asyncio.wait_for(connect_raw(url, TOKEN, self.on_text), 30)
        self.ws.send_text(self.conn.hello(None, None, time.time(), "bench", tracks=tracks))
        return await asyncio.wait_for(self.welcomed, 30)

    def send_frame(self, **frame_args) -> None:
        """Send frame ``seq`` (the seeded PCM; ``frame_args`` as ClientConnection.frame)."""
        if self.ws.closed.done():
            raise ConnectionError(f"closed by the server: {self.ws.closed.result()}")
        self.ws.send_binary(self.conn.frame(self.seq, self.pcm, **frame_args))
        self.seq += 1

    async def send_end(self):
        """End the session and close; returns the server's ``ended``."""
        self.ws.send_text(self.conn.end(self.seq - 1))
        result = await asyncio.wait_for(self.ended, 60)
        self.ws.transport.close()
        return result

    def stored_as_sent(self, ended) -> bool:
        """The ``ended`` names every frame sent and the SHA-256 of their PCM."""
        return ended.frames == self.seq and ended.sha256 == hashlib.sha256(
            self.pcm * self.seq).hexdigest()
