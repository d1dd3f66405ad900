"""What the app shows about the stream: immutable snapshots, safe to pass between threads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# connecting:   no connection has been welcomed yet in this run
# connected:    the session is attached and frames flow
# reconnecting: the connection dropped; next_retry_in_s says when the next attempt starts
# failed:       a fatal answer (bad token, forbidden, ...): reason says what to change;
#               captured audio still goes to the spool for a later run
# finished:     the server answered ``ended``: every frame is stored
# closed:       close() stopped the streamer without ending; the spool keeps the rest
State = Literal["connecting", "connected", "reconnecting", "failed", "finished", "closed"]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """A snapshot of the live session's delivery, from :meth:`Streamer.status`.

    ``frames_acked`` counts frames the server holds (its ack + 1); ``frames_spooled``
    those on disk waiting for an ack; ``frames_sent`` every frame message sent in this
    run, replays after a reconnect included. ``ack_rtt_ms`` is the time from sending a
    frame to the ack covering it (includes the server's ack batching, ~200-500 ms);
    ``ack_rtt_avg_ms`` its moving average. ``earlier_sessions`` / ``earlier_frames_spooled``
    describe sessions left in the spool by an earlier run that are being delivered.
    ``transcript_lag_s`` is how far the server's transcript is behind the stored audio
    (None: no transcript asked for, or no word from the server yet).
    ``transcript_failed`` is the server's sentence when it gave up transcribing the
    session (no more of its transcript will come; the audio is stored all the same).
    ``spool_problems`` says, one sentence each, what is damaged or odd in the spool:
    frames lost or damaged on disk (sent as silence) in the sessions being delivered,
    and session folders left alone because they cannot be used (each names its folder).
    """

    state: State
    server_url: str
    session_id: str | None = None
    reason: str | None = None
    next_retry_in_s: float | None = None
    frames_sent: int = 0
    frames_acked: int = 0
    frames_spooled: int = 0
    ack_rtt_ms: float | None = None
    ack_rtt_avg_ms: float | None = None
    reconnects: int = 0
    quick_failures: int = 0
    transcript_lag_s: float | None = None
    transcript_failed: str | None = None
    earlier_sessions: int = 0
    earlier_frames_spooled: int = 0
    spool_problems: tuple[str, ...] = ()
    # Tracks mode: True when the server stores both lanes, False when it takes the mono
    # mix only (an older server, or one with the extension off), None until known.
    tracks_stored: bool | None = None


@dataclass(frozen=True, slots=True)
class FinishResult:
    """How ending a session went, from :meth:`Streamer.finish`.

    ``ok`` means the server stored every frame and answered ``ended``, and the server's
    SHA-256 of the stored PCM matches the one computed while frames were submitted
    (``verified``; False for sessions recovered from the spool, whose audio this process
    did not see). Otherwise ``frames_left`` frames stay in the spool for a later run and
    ``message`` says why. ``lost`` names the frames whose audio did not reach the server
    because the spool lost it on disk, as (first, last) runs: they were sent as silence
    at their own place in time (or, damaged after the last intact frame, cut off), and
    ``ok`` is False. ``earlier`` holds the results of sessions recovered from the spool
    that this streamer delivered.
    """

    ok: bool
    message: str
    session_id: str | None = None
    frames: int = 0
    duration_ms: int = 0
    sha256: str | None = None
    local_sha256: str | None = None
    verified: bool = False
    frames_left: int = 0
    earlier: tuple[FinishResult, ...] = ()
    lost: tuple[tuple[int, int], ...] = ()


def format_duration(seconds: float) -> str:
    """A span of the recording for people, to the nearest second: m:ss, h:mm:ss past an
    hour (one format for durations and for offsets into a recording)."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"
