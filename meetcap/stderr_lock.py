"""One lock for standard error (fd 2) shared by PortAudio's re-scan and the CLI's lines.

sounddevice points fd 2 at /dev/null while PortAudio initialises (its _ignore_stderr,
to hide ALSA's chatter), so a line another thread writes in that moment is lost: the
CLI's "this server does not store two tracks" vanished that way in 1 of 6 runs. Whoever
re-initialises PortAudio and whoever prints a line meant for a person holds this lock.
"""

from __future__ import annotations

import threading

STDERR_LOCK = threading.Lock()
