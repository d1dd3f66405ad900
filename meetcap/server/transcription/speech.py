"""The server's own speech decision over a session's stored frames (Silero VAD).

A transcript must not depend on whether the client ran a VAD: the app lets a person turn
it off, ``meetcap record`` runs without ``--vad``, and a client written from
docs/protocol.md need never set bit 0. So the worker ignores the frames' speech bit and
decides speech itself with meetcap's Silero VAD, set up exactly as ``meetcap transcribe``
sets it up (meetcap/transcribe/offline.py: default thresholds, no gate), over the stored
PCM: live and offline transcripts of one session run the same VAD on the same samples.
It runs ~255x real time on one core: ~5 % over what a live session's transcription with
partials costs, ~18 % over finals only (bench/transcribe_vad_cost.py).

Restarts: the VAD is recurrent, and Silero's state carries over seconds (a VAD started
afresh two seconds before a frame can end a sentence 0.1 s off from one that heard the
whole session). So a worker that takes a session up at its resume point ``R`` (after a
restart, a kill -9 of the server, or a resume on another instance) runs the VAD over the
stored audio from frame 0 to ``R`` first, verdicts thrown away (:meth:`warm_up`, a chunk
at a time between other sessions' work): its flags from ``R`` on are exactly those of a
worker that never stopped, hence its finals are too. That costs the VAD's time over the
session so far (~0.4 % of the audio's duration on this machine: ~15 s for an hour) once
per take-up.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from meetcap.constants import FRAME_BYTES, FRAME_SAMPLES
from meetcap.dsp.vad import VadStream


def pcm_to_float(pcm: bytes) -> np.ndarray:
    """int16 LE frames as float32 in [-1, 1), as offline.py's reader gives a WAV."""
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / np.float32(32768)


class SpeechDecider:
    """Speech flags, one a frame, for the frames fed in order from ``first_seq`` on.

    :meth:`warm_up` with the frames before ``first_seq`` (in order, from frame 0, in
    any number of calls), then :meth:`feed` frames; each call returns the frames whose
    flag is decided by now (the VAD holds back up to ~0.1 s to confirm a speech start),
    and :meth:`flush` the rest at the end of the session. A frame is speech when at least
    half of its samples are (meetcap.dsp.framer's rule, as the client and ``meetcap
    transcribe`` use).
    """

    def __init__(self, first_seq: int, vad: VadStream | None = None) -> None:
        self.vad = vad or VadStream()
        self.vad.load()
        self.first_seq = first_seq
        self._next_out = first_seq  # seq of the first frame in _pending
        self._pending: deque[bytes] = deque()  # frames fed, flag not decided yet
        self._skip = 0  # warm-up samples whose verdicts are still to come (thrown away)
        self._verdicts = np.zeros(0, dtype=bool)  # decided, for the frames in _pending

    def warm_up(self, pcm: bytes) -> None:
        """Audio before ``first_seq``, heard but not decided (only before any feed)."""
        self._skip += len(pcm) // 2
        self._take(self.vad.process(pcm_to_float(pcm)))

    def feed(self, pcm: bytes) -> tuple[int, bytes, list[bool]]:
        """The next frames (whole 3,200-byte frames); returns ``(seq, pcm, flags)`` of
        the frames decided now, consecutive, possibly none."""
        for i in range(0, len(pcm), FRAME_BYTES):
            self._pending.append(pcm[i:i + FRAME_BYTES])
        self._take(self.vad.process(pcm_to_float(pcm)))
        return self._pop()

    def flush(self) -> tuple[int, bytes, list[bool]]:
        """The session ended: decide every frame still held."""
        self._take(self.vad.flush())
        return self._pop()

    def _take(self, verdicts: np.ndarray) -> None:
        if self._skip:
            dropped = min(self._skip, len(verdicts))
            self._skip -= dropped
            verdicts = verdicts[dropped:]
        if len(verdicts):
            self._verdicts = np.concatenate([self._verdicts, verdicts])

    def _pop(self) -> tuple[int, bytes, list[bool]]:
        count = min(len(self._pending), len(self._verdicts) // FRAME_SAMPLES)
        seq = self._next_out
        if not count:
            return seq, b"", []
        speech = np.count_nonzero(
            self._verdicts[:count * FRAME_SAMPLES].reshape(count, FRAME_SAMPLES), axis=1
        )
        self._verdicts = self._verdicts[count * FRAME_SAMPLES:]
        frames = [self._pending.popleft() for _ in range(count)]
        self._next_out += count
        return seq, b"".join(frames), [bool(2 * n >= FRAME_SAMPLES) for n in speech]
