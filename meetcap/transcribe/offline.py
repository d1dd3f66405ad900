"""Transcribe a recorded file the way the live server transcribes a session.

The file is read, downmixed and resampled to 16 kHz (soxr, as the capture chain does),
meetcap's own Silero VAD decides speech per sample, the same Framer as the live chain
makes 100 ms frames with speech flags, and the frames go through the same
:class:`StreamingTranscriber` in one-second batches. So ``meetcap transcribe`` of a
session's WAV agrees with the live transcript of that session.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from meetcap.constants import FRAMES_PER_SECOND, SAMPLE_RATE_HZ
from meetcap.dsp.framer import Framer
from meetcap.dsp.resample import Resampler
from meetcap.dsp.vad import VadStream
from meetcap.errors import ConfigError
from meetcap.frames import Frame
from meetcap.transcribe.segments import TranscriptSegment
from meetcap.transcribe.stream import StreamingTranscriber

READ_BLOCK_FRAMES = 1 << 16  # file frames read at a time: bounded memory for long files


@dataclass(frozen=True)
class FileAudio:
    samples: np.ndarray  # float32 mono 16 kHz
    source_rate_hz: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ


def read_audio(path: str | os.PathLike[str]) -> FileAudio:
    """A WAV/FLAC (anything libsndfile reads) as 16 kHz mono float32; ConfigError with
    words if it cannot be read."""
    import soundfile as sf

    if not os.path.isfile(path):
        raise ConfigError(f"the audio file {os.fspath(path)!r} does not exist")
    try:
        info = sf.info(os.fspath(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ConfigError(
            f"{os.fspath(path)!r} is not an audio file meetcap can read (WAV or FLAC): {exc}"
        ) from exc
    resampler = Resampler(info.samplerate, info.channels)
    parts = []
    try:
        for block in sf.blocks(os.fspath(path), blocksize=READ_BLOCK_FRAMES, dtype="float32",
                               always_2d=True):
            parts.append(resampler.process(block))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ConfigError(f"{os.fspath(path)!r} cannot be read to its end: {exc}") from exc
    parts.append(resampler.flush())
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return FileAudio(samples.astype(np.float32, copy=False), info.samplerate, info.channels)


def frames_with_speech(samples: np.ndarray, vad: VadStream | None = None) -> list[Frame]:
    """16 kHz samples as numbered 100 ms frames with the Silero VAD's speech flags, made
    by the live chain's own Framer (the last partial frame is padded with silence)."""
    vad = vad or VadStream()
    vad.load()
    framer = Framer(0.0)
    remainder = (-len(samples)) % (SAMPLE_RATE_HZ // FRAMES_PER_SECOND)
    samples = np.concatenate([samples, np.zeros(remainder, np.float32)])
    framer.push_audio(samples)
    framer.push_speech(vad.process(samples))
    framer.push_speech(vad.flush())
    return framer.pop_frames()


def batches(frames: list[Frame], size: int = FRAMES_PER_SECOND) -> Iterator[list[Frame]]:
    for i in range(0, len(frames), size):
        yield frames[i:i + size]


def transcribe_frames(
    transcriber: StreamingTranscriber, frames: list[Frame], *,
    on_segment: Callable[[TranscriptSegment], None] | None = None,
    batch_frames: int = FRAMES_PER_SECOND,
) -> list[TranscriptSegment]:
    """Feed ``frames`` in batches (as the server's storage hands them over) and flush;
    returns the final segments. ``on_segment`` also sees every partial as it comes."""
    finals = []
    for batch in batches(frames, batch_frames):
        pcm = b"".join(f.pcm for f in batch)
        for seg in transcriber.feed(batch[0].seq, pcm, [f.speech for f in batch]):
            if on_segment is not None:
                on_segment(seg)
            if seg.final:
                finals.append(seg)
    for seg in transcriber.flush():
        if on_segment is not None:
            on_segment(seg)
        finals.append(seg)
    return finals
