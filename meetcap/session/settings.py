"""One settings record for a recording session, shared by the app, the CLI and capture.

:class:`SessionSettings` holds what a person chooses: the capture part (devices, gains,
mutes, speech detection, normalisation) is the audio manager's own
:class:`~meetcap.audio.manager.CaptureSettings`, held by reference, so a live control
changes one number in one place and the app saves that same object. The rest says
where the audio goes: a server and its token (none: the app's built-in server), and an
optional local copy.

Front ends build it from their own input (QSettings, command-line options) and call
:meth:`SessionSettings.validate` once, at that edge; everything below trusts it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from meetcap.audio.manager import CaptureSettings
from meetcap.client.config import validate_token, validate_url
from meetcap.constants import CAPTURE_SOURCES
from meetcap.dsp.gain import check_gain_db
from meetcap.errors import ConfigError

# A local copy named like this is that file; any other path is a folder that gets one
# file per session, named by its start time.
COPY_SUFFIXES = (".wav", ".flac")


@dataclass
class SessionSettings:
    """What to record and where it goes.

    ``capture.mic_device_id`` / ``capture.system_device_id``: None = not chosen yet (a
    front end picks the system default once devices are listed); ``""`` = none, on
    purpose. ``server_url`` empty = the built-in server (app) or no server (CLI).
    ``local_copy`` empty = none; a ``.wav``/``.flac`` path is that file, anything else a
    folder that gets ``meetcap-<start time>.wav`` per session. ``transcribe``: ask for
    the live transcript (and have the built-in server make it).
    """

    capture: CaptureSettings = field(default_factory=CaptureSettings)
    server_url: str = ""
    token: str = ""
    local_copy: str = ""
    # Live transcript (issue 9): the built-in server transcribes each session, and the
    # recorder asks whichever server it streams to for the transcript.
    transcribe: bool = True
    # Live partial text of the sentence being spoken (the built-in server's
    # ``--partials``); off: finals only, less CPU.
    partials: bool = True

    # -- the capture part, by source name (what the strips and the store use)

    def device_id(self, source: str) -> str | None:
        return self.capture.device_ids()[source]

    def set_device_id(self, source: str, device_id: str | None) -> None:
        setattr(self.capture, f"{source}_device_id", device_id)

    # -- checks

    def validate(self) -> SessionSettings:
        """Check every field; ConfigError names the first bad one and a valid example.
        Returns self, with the URL normalised (e.g. the stream path added)."""
        for source in CAPTURE_SOURCES:
            check_gain_db(self.capture.gain_db.get(source, 0.0))
        url = self.server_url.strip()
        if url:
            self.server_url = validate_url(url)
            validate_token(self.token.strip())
        if self.local_copy.strip():
            self.local_copy_path(time.time())  # a bad name fails now, not at Start
        return self

    def local_copy_path(self, started_at: float) -> Path | None:
        """The local copy's file for a session started at ``started_at`` (or None)."""
        text = self.local_copy.strip()
        if not text:
            return None
        path = Path(text).expanduser()
        if path.suffix.lower() in COPY_SUFFIXES:
            return path
        if path.suffix and not path.is_dir():
            raise ConfigError(
                f"cannot record to {path.name!r}: name a .wav or .flac file, or a folder"
            )
        stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(started_at))
        return path / f"meetcap-{stamp}.wav"
