"""Helpers of the fault tests: a frame pump and the Jepsen-style check of stored audio."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from meetcap.client import FinishResult, Streamer
from meetcap.constants import FRAME_BYTES
from tests.client.frames import SubmitLog, synthetic_frames

WAV_HEADER_BYTES = 44  # meetcap-server stores each session as <id>.wav: header + PCM


class FramePump:
    """Submits seeded frames from its own thread at ``rate_hz`` (the audio side's role)
    until :meth:`stop`, logging each frame's seq and hash once submit() returned.
    The first ``burst_frames`` go at once (audio captured while offline)."""

    def __init__(
        self, streamer: Streamer, rate_hz: float, seed: int = 1, burst_frames: int = 0
    ) -> None:
        self.streamer = streamer
        self.rate_hz = rate_hz
        self.burst_frames = burst_frames  # submitted at once first (captured offline)
        self.seed = seed
        self.log = SubmitLog()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="frame-pump", daemon=True)

    def start(self) -> FramePump:
        self._thread.start()
        return self

    def stop(self) -> SubmitLog:
        self._stop.set()
        self._thread.join(10)
        if self.error is not None:
            raise self.error
        return self.log

    def _run(self) -> None:
        started = time.monotonic()
        try:
            for frame in synthetic_frames(10**9, seed=self.seed):
                if self._stop.is_set():
                    return
                paced = max(0, frame.seq - self.burst_frames)
                delay = started + paced / self.rate_hz - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.streamer.submit(frame)
                self.log.record(frame)
        except BaseException as exc:  # surfaced by stop()
            self.error = exc


def stored_pcm(data_dir: Path, session_id: str) -> bytes:
    """The PCM meetcap-server stored for a session (read from its data directory)."""
    return (Path(data_dir) / f"{session_id}.wav").read_bytes()[WAV_HEADER_BYTES:]


def assert_delivered_exactly(result: FinishResult, log: SubmitLog, data_dir: Path) -> None:
    """Every submitted frame stored once, in order, bit for bit; nothing else."""
    assert result.ok and result.verified, result.message
    assert result.session_id is not None
    pcm = stored_pcm(data_dir, result.session_id)
    stored_frames = len(pcm) // FRAME_BYTES
    assert len(pcm) % FRAME_BYTES == 0
    differing = [
        seq for seq, digest in log.hashes.items()
        if hashlib.sha256(pcm[seq * FRAME_BYTES : (seq + 1) * FRAME_BYTES]).hexdigest() != digest
    ]
    assert differing == [], f"frames stored wrong or missing: {differing[:10]}"
    assert stored_frames == len(log), f"stored {stored_frames} frames, submitted {len(log)}"
    assert hashlib.sha256(pcm).hexdigest() == log.sha256 == result.sha256
