"""Ending a session hashes its audio in reads small enough not to swell a worker thread's
heap (issue 11, "server memory flat").

The hash runs on a to_thread worker. It read 1 MiB at a time: above glibc's 128 KiB mmap
threshold, and once one such block had been freed glibc served the next ones from the
worker's own heap and kept them there, so every worker thread that ever ended a session
held 1-2 MB more (the soak's single instance: six of them, most of its growth in the
first minutes; bench/soak.py, docs/figures.md). What the hash holds at once decides it:
counted here with tracemalloc (exact, not RSS) on a real session's files.
"""

from __future__ import annotations

import hashlib
import os
import random
import threading
import time
import tracemalloc

from meetcap.constants import FRAME_BYTES
from meetcap.server import wavfile
from meetcap.server.sidecar import SessionMeta
from meetcap.server.storage import Storage

MMAP_THRESHOLD = 128 * 1024  # glibc's default M_MMAP_THRESHOLD
FRAMES = 600  # one minute of audio: 1.9 MB


def test_ending_a_session_never_holds_a_read_above_the_mmap_threshold(tmp_path):
    storage = Storage(tmp_path, flusher=None)  # type: ignore[arg-type] - no rounds here
    storage.prepare()
    meta = SessionMeta("alice", "s" * 22, time.time(), time.time())
    writer = storage._open_sync(meta, 0, create=True)
    pcm = random.Random(7).randbytes(FRAMES * FRAME_BYTES)
    os.pwrite(writer.wav_fd, pcm, wavfile.pcm_offset(0))  # what the rounds would have written
    writer.durable_frames = FRAMES
    done = {}

    def finalise() -> None:  # on a thread, as the server runs it
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            done["result"] = writer.finalise_sync()
            done["peak"] = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    worker = threading.Thread(target=finalise)
    worker.start()
    worker.join()
    os.close(writer.speech_fd)
    os.close(writer.wav_fd)
    assert done["result"].sha256 == hashlib.sha256(pcm).hexdigest()
    assert done["result"].frames == FRAMES
    assert done["peak"] < MMAP_THRESHOLD, f"{done['peak']} bytes held at once while hashing"
