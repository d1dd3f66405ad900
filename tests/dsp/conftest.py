"""Fixtures of the DSP tests: real synthetic speech from espeak-ng."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile

SENTENCE = (
    "the quarterly meeting will start with a short review of the budget "
    "and then we discuss the new product roadmap"
)


@pytest.fixture(scope="session")
def espeak_utterance(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, int]:
    """One spoken sentence (~5.4 s) from espeak-ng: (float32 samples, rate_hz)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        pytest.fail("espeak-ng is not installed: apt-get install espeak-ng")
    wav = Path(tmp_path_factory.mktemp("speech")) / "sentence.wav"
    subprocess.run([espeak, "-w", str(wav), SENTENCE], check=True, timeout=60)
    samples, rate_hz = soundfile.read(wav, dtype="float32")
    return samples, rate_hz
