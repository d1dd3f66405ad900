"""Levels and health of one audio source (or of the mix), as shown to a user.

These are the values the pipeline publishes a few dozen times a second. They are
snapshots: a reader (meters, CLI, warnings) only ever needs the latest one, so the
channel that carries them may drop old values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypedDict

# The floor of every meter: digital silence reads as this, not as -inf, so that
# values stay finite for JSON and arithmetic.
SILENCE_DBFS = -120.0


class Health(str, enum.Enum):
    """What a source is doing, most urgent first when several apply."""

    LOST = "device_lost"  # the device vanished (unplugged, module unloaded)
    MUTED = "muted"  # exact digital zeros: muted at the OS or in hardware
    SILENT = "silent"  # below the silence threshold for longer than the grace period
    CLIPPING = "clipping"  # samples at full scale in the last second
    OVERRUN = "overrun"  # the capture callback lost blocks recently
    OK = "ok"
    STOPPED = "stopped"  # not capturing (no device picked, or capture not started)

    @property
    def is_problem(self) -> bool:
        return self not in (Health.OK, Health.STOPPED)

    @property
    def words(self) -> str:
        """What this state means, for a person (after the source's name)."""
        return _HEALTH_WORDS[self]


_HEALTH_WORDS = {
    Health.LOST: "was unplugged or removed",
    Health.MUTED: "sends only digital silence: muted at the device or in the system?",
    Health.SILENT: "has been too quiet to hear for a while",
    Health.CLIPPING: "is clipping: lower its gain or input volume",
    Health.OVERRUN: "is dropping audio: the computer is too busy to keep up",
    Health.OK: "is fine",
    Health.STOPPED: "is not capturing",
}


@dataclass(frozen=True, slots=True)
class SourceLevels:
    """One snapshot of a source's meter and health.

    ``peak_dbfs`` and ``rms_dbfs`` cover the most recent meter window (after gain and
    mute, i.e. what goes into the mix); ``clip_count`` and ``overruns`` are totals since
    capture started; ``problem_for_s`` is how long the current ``health`` has lasted.
    """

    source: str
    peak_dbfs: float = SILENCE_DBFS
    rms_dbfs: float = SILENCE_DBFS
    clip_count: int = 0
    overruns: int = 0
    health: Health = Health.STOPPED
    problem_for_s: float = 0.0
    speech: bool = False  # VAD verdict for the latest frame (mix only)
    # The mic only: how strongly the system audio reaches it (meetcap/dsp/echo_score.py):
    # "reaches the mic", "clean", "not measured yet" ("" for other sources), the echo's
    # level relative to the system audio in dB (-inf when unknown), and whether the echo
    # canceller runs now.
    echo: str = ""
    echo_db: float = float("-inf")
    echo_cancel: bool = False
    # The mixer's clock-drift correction for this source (meetcap/dsp/mixer.py): the read
    # rate's offset now and the largest so far this session, in ppm (0 on one clock).
    correction_ppm: float = 0.0
    correction_peak_ppm: float = 0.0


class LevelExtras(TypedDict, total=False):
    """The SourceLevels fields only some sources carry (the mic's echo score, a mixed
    source's drift correction), typed so they can be handed on as keyword arguments."""

    echo: str
    echo_db: float
    echo_cancel: bool
    correction_ppm: float
    correction_peak_ppm: float
