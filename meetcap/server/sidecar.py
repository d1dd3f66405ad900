"""The small JSON file next to each session's WAV: who, when, how long, where speech is,
and who spoke (speaker turns, from the speakers extension's frame flags).

Written atomically (meetcap.durable) when a session is created, when a connection detaches and
when the session ends; ``finished`` and ``sha256`` are set only by the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from meetcap.constants import FRAME_BYTES, FRAME_MS, SAMPLE_RATE_HZ
from meetcap.durable import atomic_write_json, read_json
from meetcap.frames import SPEAKER_BOTH, SPEAKER_NAMES, SPEAKER_OTHERS, SPEAKER_YOU
from meetcap.protocol.audio import FLAG_SPEECH, SPEAKER_SHIFT

SIDECAR_VERSION = 1
_SPEAKER_BY_NAME = {name: code for code, name in SPEAKER_NAMES.items()}


@dataclass(frozen=True, slots=True)
class SessionMeta:
    """What the server knows about a session besides its audio."""

    user: str
    session_id: str
    created_at_s: float  # server epoch time of creation
    started_at_s: float  # the client's epoch time of frame 0 (hello.started_at)


def speech_segments(flags: Sequence[int] | bytes) -> list[dict[str, int]]:
    """Runs of frames flagged as speech, as ``{"start_ms", "end_ms"}`` (end exclusive)."""
    segments: list[dict[str, int]] = []
    start: int | None = None
    for seq, flag in enumerate(flags):
        flag &= FLAG_SPEECH
        if flag and start is None:
            start = seq
        elif not flag and start is not None:
            segments.append({"start_ms": start * FRAME_MS, "end_ms": seq * FRAME_MS})
            start = None
    if start is not None:
        segments.append({"start_ms": start * FRAME_MS, "end_ms": len(flags) * FRAME_MS})
    return segments


def speaker_turns(flags: Sequence[int] | bytes) -> list[dict[str, int | str]]:
    """Runs of frames with the same speaker ("you", "others" or "both"), as
    ``{"speaker", "start_ms", "end_ms"}`` (end exclusive); frames where nobody spoke (or
    no who-spoke flags came: a client without the speakers extension) are in no turn."""
    turns: list[dict[str, int | str]] = []
    current, start = 0, 0
    for seq, flag in enumerate([*flags, 0]):
        code = (flag >> SPEAKER_SHIFT) & SPEAKER_BOTH
        if code != current:
            if current:
                turns.append({"speaker": SPEAKER_NAMES[current], "start_ms": start * FRAME_MS,
                              "end_ms": seq * FRAME_MS})
            current, start = code, seq
    return turns


def speaker_of_frames(flags: Sequence[int] | bytes) -> str | None:
    """Who spoke over a stretch of frames (their stored flags, e.g. the frames of one
    transcript segment): "you", "others" or "both", or None when no frame says.

    "both" when each side speaks in at least a quarter of the labelled frames (a real
    exchange, not a stray frame of the other side); otherwise the side with more frames.
    """
    you = others = 0
    for flag in flags:
        code = (flag >> SPEAKER_SHIFT) & SPEAKER_BOTH
        you += bool(code & SPEAKER_YOU)
        others += bool(code & SPEAKER_OTHERS)
    if not you and not others:
        return None
    if 4 * min(you, others) >= you + others:
        return SPEAKER_NAMES[SPEAKER_BOTH]
    return SPEAKER_NAMES[SPEAKER_YOU if you > others else SPEAKER_OTHERS]


def speaker_in_turns(turns: Sequence[dict], start_ms: int, end_ms: int) -> str | None:
    """:func:`speaker_of_frames` for a finished session, from its sidecar's turns."""
    flags = bytearray(max(0, (end_ms - start_ms + FRAME_MS - 1) // FRAME_MS))
    for turn in turns:
        code = _SPEAKER_BY_NAME[turn["speaker"]] << SPEAKER_SHIFT
        first = max(turn["start_ms"], start_ms) - start_ms
        last = min(turn["end_ms"], end_ms) - start_ms
        for i in range(first // FRAME_MS, -(-last // FRAME_MS)):
            flags[i] = code
    return speaker_of_frames(flags)


def write_sidecar(
    path: Path,
    meta: SessionMeta,
    audio_name: str,
    flags: bytes,
    *,
    finished: bool = False,
    sha256: str | None = None,
    tracks_audio: str | None = None,
) -> None:
    """Write the sidecar of a session holding ``len(flags)`` frames. Blocks (fsync).
    ``tracks_audio``: the two-lane WAV's name, for a tracks session (protocol.md 3.5)."""
    frames = len(flags)
    atomic_write_json(
        path,
        {
            "version": SIDECAR_VERSION,
            "session_id": meta.session_id,
            "user": meta.user,
            "created_at": meta.created_at_s,
            "started_at": meta.started_at_s,
            "audio": audio_name,
            "format": {
                "encoding": "s16le", "sample_rate": SAMPLE_RATE_HZ, "channels": 1,
                "frame_bytes": FRAME_BYTES, "frame_ms": FRAME_MS,
            },
            "frames": frames,
            "duration_ms": frames * FRAME_MS,
            "speech_segments": speech_segments(flags),
            "speaker_turns": speaker_turns(flags),
            "tracks": tracks_audio is not None,
            "tracks_audio": tracks_audio,
            "finished": finished,
            "sha256": sha256,
        },
    )


@dataclass(frozen=True, slots=True)
class StoredSession:
    """What a sidecar says about its session (read to recover a lost state record)."""

    meta: SessionMeta
    finished: bool


def read_sidecar(path: Path) -> StoredSession | None:
    """The sidecar at ``path``; None when it is missing or not of the shape write_sidecar
    gives (a damaged sidecar proves nothing about who owns the audio). Blocks."""
    try:
        data = read_json(path)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    user, session_id = data.get("user"), data.get("session_id")
    created, started = data.get("created_at"), data.get("started_at")
    finished = data.get("finished")
    numbers_ok = all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in (created, started)
    )
    if not (isinstance(user, str) and isinstance(session_id, str) and numbers_ok
            and isinstance(finished, bool)):
        return None
    created_s, started_s = cast(float, created), cast(float, started)  # numbers_ok says so
    return StoredSession(SessionMeta(user, session_id, float(created_s), float(started_s)),
                         finished)
