"""Settings of the server's live transcription (``meetcap-server --transcribe``)."""

from __future__ import annotations

from dataclasses import dataclass

from meetcap.errors import ConfigError
from meetcap.transcribe.segments import DEFAULT_MIN_WORDS


@dataclass(frozen=True)
class TranscriptionConfig:
    """``model`` None is the packaged Whisper tiny.en; a name of a packaged model or a
    faster-whisper model directory otherwise. ``language`` None: the model's own (an
    English-only model is English). ``workers`` processes each load one engine with
    ``threads`` threads; sessions are spread over them."""

    model: str | None = None
    language: str | None = None
    workers: int = 1
    threads: int = 1
    min_words: int = DEFAULT_MIN_WORDS  # fewer words: the segment is marked minor
    # Audio between two partials; under 1 s so that, with the time a partial takes, one
    # still comes at least once a second (bench/transcript_latency.py measures it).
    partial_interval_s: float = 0.8
    # Live partial text (``--partials on|off``). Off: the workers compute no partial at
    # all, only finals, which are the same either way (they never depend on partials).
    partials: bool = True
    # The most CPU the partials may take, as a fraction of the audio time
    # (``--partial-budget PERCENT``); None: the streaming transcriber's own default
    # (DEFAULT_PARTIAL_BUDGET in meetcap/transcribe/stream.py), resolved in the worker
    # so that this module (imported by the server's main process) does not load numpy.
    partial_budget: float | None = None
    max_utterance_s: float = 20.0
    # Partials are the first thing dropped when behind: a worker more than this much
    # audio behind a session computes no partials for it until it has caught up.
    partial_max_lag_s: float = 1.0
    # After the session's end, a connection that asked for transcripts stays open this
    # long at most for the last finals (then closes normally; the files get them anyway).
    tail_timeout_s: float = 30.0
    # A session with no new audio for this long (its client went away) is let go of by
    # its worker (the files and their lock), so another instance can take it over.
    idle_release_s: float = 10.0
    ready_timeout_s: float = 120.0  # a worker must load its model within this
    # A session on which its worker died this many times in a row, each time at the same
    # point of its audio, is given up (service.py): it would crash it forever and starve
    # the other sessions on that worker.
    max_crashes: int = 3

    def __post_init__(self) -> None:
        checks = [
            (self.workers >= 1, "transcription workers must be >= 1"),
            (self.threads >= 1, "transcription threads must be >= 1"),
            (self.min_words >= 0, "min_words must be >= 0"),
            (self.partial_interval_s > 0, "partial_interval_s must be > 0"),
            (self.partial_budget is None or 0 < self.partial_budget <= 1,
             "partial_budget must be above 0 and at most 1 (100 % of the audio time)"),
            (self.max_utterance_s >= 5, "max_utterance_s must be >= 5"),
            (self.tail_timeout_s >= 0, "tail_timeout_s must be >= 0"),
            (self.idle_release_s > 0, "idle_release_s must be > 0"),
            (self.max_crashes >= 1, "max_crashes must be >= 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
