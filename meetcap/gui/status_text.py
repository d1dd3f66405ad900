"""The words the app shows: health lines, warnings and connection state (no Qt here).

Every warning says what happened and what to do about it, in the user's terms
("Microphone", "System audio"), never the code's ("mic", "device_lost").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from meetcap.client.status import StreamStatus
from meetcap.constants import SOURCE_MIC, SOURCE_MIX, SOURCE_SYSTEM
from meetcap.levels import SILENCE_DBFS, Health, SourceLevels

Severity = Literal["idle", "ok", "info", "warning", "error"]

SOURCE_TITLES = {SOURCE_MIC: "Microphone", SOURCE_SYSTEM: "System audio", SOURCE_MIX: "Mix"}
_OTHER = {SOURCE_MIC: SOURCE_SYSTEM, SOURCE_SYSTEM: SOURCE_MIC}


@dataclass(frozen=True, slots=True)
class StatusLine:
    """One line of status: how bad it is, and the words."""

    severity: Severity
    text: str


@dataclass(frozen=True, slots=True)
class Warning:
    """A problem a person must notice during a session (banner + tray notification).

    ``key`` identifies the problem (source and kind): the same key across updates is the
    same warning, so it is announced once, not at every refresh.
    """

    key: str
    severity: Severity
    title: str
    text: str


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 90:
        return f"{value:.0f} s"
    return f"{value / 60:.0f} min"


def describe_source(
    levels: SourceLevels, *, user_muted: bool, has_device: bool, recording: bool
) -> StatusLine:
    """The health line under a source's meter."""
    if not has_device:
        return StatusLine("idle", "Off: no device picked")
    if not recording:
        return StatusLine("idle", "Ready" + (" (muted)" if user_muted else ""))
    health = levels.health
    if health is Health.LOST:
        return StatusLine("error", "Device lost: plug it back in or pick another")
    if user_muted:
        return StatusLine("warning", "Muted in meetcap: not in the recording")
    if health is Health.MUTED:
        return StatusLine(
            "error", f"Muted: only digital silence for {_seconds(levels.problem_for_s)}"
        )
    if health is Health.SILENT:
        return StatusLine("warning", f"Silent for {_seconds(levels.problem_for_s)}")
    if health is Health.CLIPPING:
        return StatusLine("warning", "Clipping: lower the gain or the input volume")
    if health is Health.OVERRUN:
        return StatusLine("warning", "Dropouts: the computer is too busy to keep up")
    if health is Health.STOPPED:
        return StatusLine("info", "Starting…")
    return StatusLine("ok", "OK")


def describe_mix(levels: SourceLevels, *, recording: bool, vad: bool) -> StatusLine:
    """The line under the mix meter (what is sent)."""
    if not recording:
        return StatusLine("idle", "Not recording")
    if levels.health is Health.CLIPPING:
        return StatusLine("warning", "Very loud: the limiter is holding the mix back")
    return StatusLine("ok", "Sending" + (" (speech detection on)" if vad else ""))


def source_warnings(
    source: str, levels: SourceLevels, *, user_muted: bool, has_device: bool
) -> list[Warning]:
    """What a person must be told about one capture source during a session."""
    title = SOURCE_TITLES[source]
    other = SOURCE_TITLES[_OTHER[source]].lower()
    if not has_device:
        return []
    health = levels.health
    if health is Health.LOST:
        return [Warning(
            f"{source}:lost", "error", f"{title} disconnected",
            f"{title} was unplugged or removed. Plug it back in or pick another device; "
            f"{other} keeps recording meanwhile.",
        )]
    if user_muted:
        return [Warning(
            f"{source}:muted-here", "warning", f"{title} is muted in meetcap",
            f"{title} is not in the recording. Click Unmute on its strip when it should be.",
        )]
    if health is Health.MUTED:
        where = ("the microphone's mute switch or the system's input volume"
                 if source == SOURCE_MIC else "the output volume or the meeting app's output")
        return [Warning(
            f"{source}:muted", "error", f"{title} is muted",
            f"{title} sends only digital silence ({_seconds(levels.problem_for_s)}). "
            f"Check {where}.",
        )]
    if health is Health.SILENT:
        hint = ("Is this the microphone you speak into? Speak to test it, or pick another."
                if source == SOURCE_MIC
                else "Is the meeting playing on the output picked here? Pick the monitor "
                     "of the output you hear it on.")
        return [Warning(
            f"{source}:silent", "warning",
            f"{title} has been silent for {_seconds(levels.problem_for_s)}", hint,
        )]
    if health is Health.CLIPPING:
        return [Warning(
            f"{source}:clipping", "warning", f"{title} is clipping",
            f"{title} reaches full scale, which distorts speech. Lower its gain slider, "
            "or its input volume in the system's sound settings.",
        )]
    if health is Health.OVERRUN:
        return [Warning(
            f"{source}:overrun", "warning", f"{title} is dropping audio",
            f"The computer did not keep up with {title.lower()} and short pieces were "
            "lost. Close busy programs; the recording goes on.",
        )]
    return []


def describe_stream(status: StreamStatus | None) -> StatusLine:
    """The connection state in words (None: before the first session)."""
    if status is None:
        return StatusLine("idle", "Not connected: connects when you start recording")
    state, reason = status.state, status.reason
    if state == "connecting":
        return StatusLine("info", "Connecting…")
    if state == "connected":
        return StatusLine("ok", "Connected")
    if state == "reconnecting":
        retry = status.next_retry_in_s
        when = f" in {max(0.0, retry):.1f} s" if retry is not None and retry > 0.05 else " now"
        why = f" ({reason})" if reason else ""
        return StatusLine("warning", f"Reconnecting{when}{why}; audio waits in the spool")
    if state == "failed":
        return StatusLine("error", f"Failed: {reason or 'the server refused the session'}")
    if state == "finished":
        return StatusLine("ok", "All audio delivered")
    if state == "closed":
        spooled = status.frames_spooled
        return StatusLine(
            "info", f"Stopped: {spooled} frames wait in the spool for this server"
            if spooled else "Stopped",
        )
    return StatusLine("info", str(state))


def stream_warnings(status: StreamStatus | None) -> list[Warning]:
    """A failed connection is a banner too: the audio is safe but goes nowhere."""
    if status is None or status.state != "failed":
        return []
    reason = status.reason or "the server refused the session"
    return [Warning(
        "stream:failed", "error", "The server refused the recording",
        f"{reason}. The audio is kept on this computer, and meetcap offers to deliver it "
        "when it starts; "
        "fix the server address or token in Settings.",
    )]


def format_dbfs(dbfs: float) -> str:
    """A level for the numbers line: '-12.3' or '-inf' for silence."""
    return "-inf" if dbfs <= SILENCE_DBFS + 0.1 else f"{dbfs:5.1f}"


def format_elapsed(seconds: float) -> str:
    """H:MM:SS (or M:SS under an hour)."""
    total = int(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"
