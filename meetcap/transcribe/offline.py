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
from typing import Any

import numpy as np

from meetcap.constants import FRAME_SAMPLES, FRAMES_PER_SECOND, SAMPLE_RATE_HZ
from meetcap.dsp.framer import Framer
from meetcap.dsp.resample import Resampler
from meetcap.dsp.vad import VadStream
from meetcap.errors import ConfigError
from meetcap.frames import Frame
from meetcap.transcribe.segments import TranscriptSegment
from meetcap.transcribe.stream import StreamingTranscriber

READ_BLOCK_FRAMES = 1 << 16  # file frames read at a time (transcribe_file: bounded memory)


@dataclass(frozen=True)
class FileAudio:
    samples: np.ndarray  # float32 mono 16 kHz
    source_rate_hz: int
    source_channels: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE_HZ


def check_audio_file(path: str | os.PathLike[str]) -> None:
    """ConfigError with words unless ``path`` is an audio file libsndfile can open."""
    _open_info(path)


def _open_info(path: str | os.PathLike[str]) -> Any:  # soundfile's _SoundFileInfo
    import soundfile as sf

    if not os.path.isfile(path):
        raise ConfigError(f"the audio file {os.fspath(path)!r} does not exist")
    try:
        info = sf.info(os.fspath(path))
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ConfigError(
            f"{os.fspath(path)!r} is not an audio file meetcap can read (WAV or FLAC): {exc}"
        ) from exc
    return info


def iter_audio(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """A WAV/FLAC (anything libsndfile reads) as blocks of 16 kHz mono float32, resampled
    by soxr as the capture chain does; ConfigError with words if it cannot be read."""
    import soundfile as sf

    info = _open_info(path)
    resampler = Resampler(info.samplerate, info.channels)
    try:
        for block in sf.blocks(os.fspath(path), blocksize=READ_BLOCK_FRAMES, dtype="float32",
                               always_2d=True):
            yield resampler.process(block)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ConfigError(f"{os.fspath(path)!r} cannot be read to its end: {exc}") from exc
    yield resampler.flush()


def read_audio(path: str | os.PathLike[str]) -> FileAudio:
    """The whole file as 16 kHz mono float32 (see :func:`iter_audio`)."""
    info = _open_info(path)
    samples = np.concatenate(list(iter_audio(path)))
    return FileAudio(samples.astype(np.float32, copy=False), info.samplerate, info.channels)


def frames_with_speech(samples: np.ndarray, vad: VadStream | None = None) -> list[Frame]:
    """16 kHz samples as numbered 100 ms frames with the Silero VAD's speech flags, made
    by the live chain's own Framer (the last partial frame is padded with silence)."""
    vad = vad or VadStream()
    vad.load()
    framer = Framer(0.0)
    remainder = (-len(samples)) % FRAME_SAMPLES
    samples = np.concatenate([samples, np.zeros(remainder, np.float32)])
    framer.push_audio(samples)
    framer.push_speech(vad.process(samples))
    framer.push_speech(vad.flush())
    return framer.pop_frames()


def transcribe_file(
    path: str | os.PathLike[str], transcriber: StreamingTranscriber, *,
    on_segment: Callable[[TranscriptSegment], None] | None = None,
    batch_frames: int = FRAMES_PER_SECOND, vad: VadStream | None = None,
) -> tuple[list[TranscriptSegment], float]:
    """A file through resampler, VAD, Framer and ``transcriber`` block by block, so a
    long recording never sits in memory whole; returns the finals and the file's length
    in seconds. The same frames and flags as :func:`frames_with_speech` of the whole file
    (each stage is a stream whose output does not depend on how it is cut)."""
    _open_info(path)  # a clear error before any audio is processed
    vad = vad or VadStream()
    vad.load()
    framer = Framer(0.0)
    finals: list[TranscriptSegment] = []
    waiting: list[Frame] = []
    samples_total = 0

    def deliver(frames: list[Frame], *, last: bool = False) -> None:
        waiting.extend(frames)
        while len(waiting) >= batch_frames or (last and waiting):
            batch, waiting[:] = waiting[:batch_frames], waiting[batch_frames:]
            pcm = b"".join(f.pcm for f in batch)
            for seg in transcriber.feed(batch[0].seq, pcm, [f.speech for f in batch]):
                _collect(seg, finals, on_segment)

    for block in iter_audio(path):
        samples_total += len(block)
        framer.push_audio(block)
        framer.push_speech(vad.process(block))
        deliver(framer.pop_frames())
    pad = np.zeros((-samples_total) % FRAME_SAMPLES, np.float32)
    framer.push_audio(pad)
    framer.push_speech(np.concatenate([vad.process(pad), vad.flush()]))
    deliver(framer.pop_frames(), last=True)
    for seg in transcriber.flush():
        _collect(seg, finals, on_segment)
    return finals, samples_total / SAMPLE_RATE_HZ


def _collect(
    seg: TranscriptSegment, finals: list[TranscriptSegment],
    on_segment: Callable[[TranscriptSegment], None] | None,
) -> None:
    if on_segment is not None:
        on_segment(seg)
    if seg.final:
        finals.append(seg)


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
