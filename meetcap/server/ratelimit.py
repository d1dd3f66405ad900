"""Rate limits by audio time (docs/protocol.md, "Limits").

Two rules, both on server time:

* :class:`AudioClock` - the flood rule. A session's audio can never run ahead of the
  wall clock since the session started, plus a slack: a client that captures in real
  time cannot exceed it however it reconnects, a flooding one is refused (4009).
* :class:`Pacer` - catch-up pacing. After a reconnect a client replays its backlog; the
  server reads it at most ``catchup_x`` times real time by delaying its reads, so TCP
  backpressure slows the client and one backlog cannot starve other sessions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from meetcap.constants import FRAME_MS


@dataclass(frozen=True, slots=True)
class AudioClock:
    """The flood rule for one session; ``start_s`` is server epoch time of frame 0."""

    start_s: float
    slack_s: float

    @staticmethod
    def for_session(
        created_at_s: float, started_at_s: float, offline_grace_s: float, slack_s: float
    ) -> AudioClock:
        """The clock starts when the server created the session, or earlier by what the
        client says it captured offline (``started_at``), by at most ``offline_grace_s``:
        a client's clock cannot buy more than that."""
        start = max(created_at_s - offline_grace_s, min(started_at_s, created_at_s))
        return AudioClock(start, slack_s)

    def excess_ms(self, seq: int, now_s: float | None = None) -> int:
        """How far frame ``seq`` ends ahead of what the clock allows (<= 0: allowed)."""
        now = time.time() if now_s is None else now_s
        audio_end_ms = (seq + 1) * FRAME_MS
        allowed_ms = (now - self.start_s + self.slack_s) * 1000.0
        return int(audio_end_ms - allowed_ms)


class Pacer:
    """Spaces a connection's reads to at most ``speed_x`` times real time.

    Each frame costs ``FRAME_MS / speed_x`` of wall time; unused budget is kept up to
    ``burst_audio_s`` worth of audio, so a real-time client (10 frames a second) never
    waits, and a backlog starts with at most that much read at once.
    """

    def __init__(self, speed_x: float, burst_audio_s: float = 1.0) -> None:
        self._cost_s = FRAME_MS / 1000.0 / speed_x
        self._burst_s = burst_audio_s / speed_x
        self._next_s = time.monotonic() - self._burst_s

    def delay_s(self) -> float:
        """Account for one frame; returns how long to wait before reading the next."""
        now = time.monotonic()
        self._next_s = max(self._next_s, now - self._burst_s) + self._cost_s
        return max(0.0, self._next_s - now)
