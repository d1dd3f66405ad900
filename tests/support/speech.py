"""Speech files with known speech spans, made by espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

PLAY_RATE_HZ = 48_000


@dataclass(frozen=True)
class SpeechFile:
    path: Path
    samples: np.ndarray  # float32 mono at PLAY_RATE_HZ, exactly what is played
    speech_spans_s: tuple[tuple[float, float], ...]  # where the voice really is

    @property
    def duration_s(self) -> float:
        return len(self.samples) / PLAY_RATE_HZ


def make_speech(
    directory: Path, name: str, text: str, *, voice: str = "en", pitch: int = 50,
    lead_s: float = 0.5, tail_s: float = 0.5, amplitude: float = 0.5,
) -> SpeechFile:
    """espeak-ng speech, resampled to 48 kHz, with silence of known length around it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    raw = directory / f"{name}.raw.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-w", str(raw), text], check=True)
    voice_samples, rate = sf.read(raw, dtype="float32")
    import soxr

    voice_samples = soxr.resample(voice_samples, rate, PLAY_RATE_HZ).astype(np.float32)
    voice_samples *= amplitude / max(float(np.abs(voice_samples).max()), 1e-9)
    # espeak's own leading/trailing quiet counts as silence: find the voiced span.
    loud = np.flatnonzero(np.abs(voice_samples) > 0.02 * amplitude)
    start, end = (loud[0], loud[-1]) if len(loud) else (0, 0)
    lead = np.zeros(int(lead_s * PLAY_RATE_HZ), np.float32)
    tail = np.zeros(int(tail_s * PLAY_RATE_HZ), np.float32)
    samples = np.concatenate((lead, voice_samples, tail))
    path = directory / f"{name}.wav"
    sf.write(path, samples, PLAY_RATE_HZ, subtype="FLOAT")
    span = ((len(lead) + start) / PLAY_RATE_HZ, (len(lead) + end) / PLAY_RATE_HZ)
    return SpeechFile(path, samples, (span,))


def make_tone(directory: Path, name: str, *, seconds: float, amplitude: float) -> SpeechFile:
    """A 440 Hz tone (amplitude 0 gives exact digital zeros: a muted source)."""
    t = np.arange(int(seconds * PLAY_RATE_HZ)) / PLAY_RATE_HZ
    samples = (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    path = directory / f"{name}.wav"
    sf.write(path, samples, PLAY_RATE_HZ, subtype="FLOAT")
    return SpeechFile(path, samples, ((0.0, seconds),) if amplitude else ())


@pytest.fixture(scope="session")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SpeechFile]:
    """Two different voices: one for the microphone, one for the meeting's audio."""
    directory = tmp_path_factory.mktemp("speech")
    return {
        "mic": make_speech(directory, "mic", "Good morning everyone, let us review the quarterly "
                           "budget and the hiring plan.", voice="en", pitch=40),
        "system": make_speech(directory, "system", "Thanks. The remote team finished the release "
                              "on Friday and the numbers look fine.", voice="en-us", pitch=75),
    }
