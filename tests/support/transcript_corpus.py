"""Speech of known text for transcription tests and bench/transcribe.py.

espeak-ng says each sentence with its own voice, speed and pitch; the sentences are put
one after another at 16 kHz with known pauses between them, so every test knows what
was said and when. Sentences use no digits or abbreviations (their spelling would be a
matter of taste, not of recognition). Nothing is downloaded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

RATE_HZ = 16_000

# (text, voice, words per minute, pitch): several voices and speeds.
SENTENCES: tuple[tuple[str, str, int, int], ...] = (
    ("Good morning everyone, let us review the quarterly budget and the hiring plan.",
     "en-us", 160, 45),
    ("The remote team finished the release on Friday and the numbers look fine.",
     "en-gb", 175, 60),
    ("We should move the product launch forward by one week if marketing agrees.",
     "en-us", 145, 70),
    ("Please send the meeting notes to the whole group before the end of the day.",
     "en-gb-x-rp", 190, 40),
    ("The customer asked for a simpler way to export their reports.",
     "en-us", 200, 55),
    ("Our support queue is shorter than last month, which is good news.",
     "en-029", 165, 50),
)
# More sentences for longer runs (bench/transcript_latency.py's 20, and a test of the
# partials within their budget on the same audio).
MORE_SENTENCES: tuple[tuple[str, str, int, int], ...] = (
    ("The budget review will take place on the second floor after lunch.", "en-us", 170, 50),
    ("Could you share the slides with the design team this afternoon?", "en-gb", 160, 65),
    ("Our new office opens in the spring, close to the central station.", "en-us", 180, 40),
    ("The contract needs a signature from the legal department first.", "en-gb-x-rp", 150, 55),
    ("Sales grew in every region except the north, where it stayed flat.", "en-us", 185, 60),
    ("Let us schedule a short call with the supplier for tomorrow morning.", "en-029", 165, 45),
    ("The test results came back clean, so we can ship the update.", "en-us", 175, 70),
    ("Everyone should finish the security training before the end of the month.",
     "en-gb", 155, 50),
)


@dataclass(frozen=True)
class Utterance:
    text: str
    start_s: float  # where the voice starts in the corpus file
    end_s: float


@dataclass(frozen=True)
class Corpus:
    samples: np.ndarray  # float32 mono 16 kHz
    utterances: tuple[Utterance, ...]

    @property
    def text(self) -> str:
        return " ".join(u.text for u in self.utterances)

    @property
    def duration_s(self) -> float:
        return len(self.samples) / RATE_HZ


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def say(text: str, voice: str, wpm: int, pitch: int) -> np.ndarray:
    """espeak-ng's speech as float32 16 kHz, trimmed to the voiced part, peak 0.5."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "say.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(raw), text],
            check=True, capture_output=True,
        )
        samples, rate = sf.read(raw, dtype="float32")
    samples = soxr.resample(samples, rate, RATE_HZ).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 0.01 * np.abs(samples).max())
    samples = samples[loud[0]:loud[-1] + 1]
    return (samples * (0.5 / float(np.abs(samples).max()))).astype(np.float32)


def make_corpus(
    sentences: tuple[tuple[str, str, int, int], ...] = SENTENCES, *,
    pause_s: float = 1.2, lead_s: float = 0.6, noise_dbfs: float = -60.0, seed: int = 9,
) -> Corpus:
    """The sentences one after another, ``pause_s`` apart, over faint white noise (a real
    room is never digital silence)."""
    parts: list[np.ndarray] = [np.zeros(int(lead_s * RATE_HZ), np.float32)]
    position = len(parts[0])
    utterances = []
    for text, voice, wpm, pitch in sentences:
        voiced = say(text, voice, wpm, pitch)
        utterances.append(Utterance(text, position / RATE_HZ, (position + len(voiced)) / RATE_HZ))
        gap = np.zeros(int(pause_s * RATE_HZ), np.float32)
        parts += [voiced, gap]
        position += len(voiced) + len(gap)
    samples = np.concatenate(parts)
    rng = np.random.default_rng(seed)
    samples += (10 ** (noise_dbfs / 20) * rng.standard_normal(len(samples))).astype(np.float32)
    return Corpus(samples.astype(np.float32), tuple(utterances))


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, one space between words (for WER)."""
    text = text.lower().replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate of ``hypothesis`` against ``reference`` (jiwer), both normalised."""
    import jiwer

    return float(jiwer.wer(normalise(reference), normalise(hypothesis)))


def make_overlap(sentences: tuple[tuple[str, str, int, int], ...] = SENTENCES, *,
                 second_gain: float = 0.7) -> tuple[np.ndarray, str]:
    """Two speakers talking over each other: the even sentences from one, the odd ones
    from another starting 1.9 s later (each speaker pausing 2.5 s between sentences),
    the second at ``second_gain``. Returns the mix and the reference text, the sentences
    in the order they start."""
    first = make_corpus(sentences[0::2], pause_s=2.5)
    second = make_corpus(sentences[1::2], pause_s=2.5, lead_s=2.5, seed=3)
    mix = np.zeros(max(len(first.samples), len(second.samples)), np.float32)
    mix[: len(first.samples)] += first.samples
    mix[: len(second.samples)] += second_gain * second.samples
    said = sorted(first.utterances + second.utterances, key=lambda u: u.start_s)
    return mix, " ".join(u.text for u in said)
