"""Meeting-like audio for the speed benches: two people taking turns, about half of the
time someone speaks, the rest silence and room noise.

- mic (48 kHz mono): the person's voice (espeak-ng, voice "en") in their turns, over a
  steady room noise at -65 dBFS RMS that never stops (a laptop mic in a quiet room);
- system (48 kHz stereo): the remote voice (espeak-ng, "en-us") in the other turns and
  digital silence between them (a meeting app outputs zeros when nobody talks).

Written once per length to a cache file, so bench/pipeline.py and bench/pipecat_peer.py
(two processes, two venvs) feed the very same samples to both chains.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

RATE_HZ = 48_000
NOISE_DBFS = -65.0
SPEECH_PEAK = 0.3  # about -20 dBFS RMS speech
SENTENCES = (
    "Good morning everyone, let us look at the budget for the next quarter.",
    "Thanks. The remote team finished the release on Friday and it went well.",
    "Great, then we can plan the launch for the middle of next month.",
    "We still need the numbers from the sales office before we decide.",
    "I will ask them today and send everyone the report by tomorrow.",
    "That works for us. Can we also talk about hiring for the support team?",
)


def _speak(text: str, voice: str, directory: Path) -> np.ndarray:
    import soundfile as sf
    import soxr

    path = directory / "s.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
    samples, rate = sf.read(path, dtype="float32")
    samples = soxr.resample(samples, rate, RATE_HZ).astype(np.float32)
    return samples * (SPEECH_PEAK / max(float(np.abs(samples).max()), 1e-9))


def make_meeting(seconds: float, seed: int = 5) -> dict[str, np.ndarray]:
    """{"mic": (n, 1), "system": (n, 2)} float32 at 48 kHz; see the module docstring."""
    if shutil.which("espeak-ng") is None:
        raise SystemExit("the meeting-like audio needs espeak-ng (apt install espeak-ng)")
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE_HZ)
    mic = (rng.standard_normal(n) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)
    system = np.zeros(n, np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        voices = [
            _speak(text, "en" if i % 2 == 0 else "en-us", Path(tmp))
            for i, text in enumerate(SENTENCES)
        ]
    at, turn = int(0.5 * RATE_HZ), 0
    while at < n:
        voice = voices[turn % len(voices)]
        lane = mic if turn % 2 == 0 else system
        end = min(n, at + len(voice))
        lane[at:end] += voice[: end - at]
        # A pause of 0.5-0.8 of the turn: with the pauses inside sentences, about half of
        # the time somebody speaks.
        at = end + int(len(voice) * rng.uniform(0.5, 0.8))
        turn += 1
    return {"mic": mic[:, None], "system": np.repeat(system[:, None], 2, axis=1)}


def cached_meeting(seconds: float, directory: Path | None = None) -> Path:
    """The path of an .npz holding :func:`make_meeting` (made on first use)."""
    directory = directory or Path(tempfile.gettempdir())
    path = directory / f"meetcap-bench-meeting-{seconds:g}s.npz"
    if not path.exists():
        audio = make_meeting(seconds)
        partial = path.with_suffix(".part.npz")
        np.savez(partial, **audio)
        partial.replace(path)
    return path


def load_meeting(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {"mic": data["mic"], "system": data["system"]}


def speech_share(sources: dict[str, np.ndarray]) -> float:
    """Share of 100 ms stretches where a voice is (either lane above -40 dBFS RMS)."""
    both = np.abs(sources["mic"][:, 0]) + np.abs(sources["system"][:, 0])
    usable = len(both) // 4800 * 4800
    blocks = both[:usable].reshape(-1, 4800)
    return float(np.mean(np.sqrt(np.mean(blocks**2, axis=1)) > 0.01))
