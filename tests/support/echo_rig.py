"""The echo rig: a laptop without headphones, made of PulseAudio null sinks.

The person's voice is played into the microphone sink; the remote voices into the
speaker sink. ``module-loopback`` from the speakers' monitor into the microphone sink,
late and quieter, is the echo path (the speakers reaching the microphone). Without the
loopback the rig is a headset.

:func:`echo_path` adds the loopback for a block; :func:`record_lanes` plays voices at
known times and records both lanes (the virtual microphone and the speakers' monitor)
with ``parec`` at 16 kHz; :func:`double_talk_figures` and :func:`erle_db` are the
measures docs/figures.md reports (bench/echo.py and tests/audio/test_echo_pulseaudio.py
print them).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from tests.support.pulse import MIC_SINK, SPEAKER_SINK, SYSTEM_SOURCE, VIRTUAL_MIC, SoundServer
from tests.support.speech import PLAY_RATE_HZ

RATE_HZ = 16_000


@contextmanager
def echo_path(server: SoundServer, *, delay_ms: int = 100, loss_db: float = 15.0) -> Iterator[int]:
    """The speakers reach the microphone ``delay_ms`` late and ``loss_db`` down, for the
    block (yields the loopback module's index)."""
    module = int(server.pactl(
        "load-module", "module-loopback", f"source={SYSTEM_SOURCE}", f"sink={MIC_SINK}",
        f"latency_msec={delay_ms}", "source_dont_move=true", "sink_dont_move=true",
    ))
    try:
        deadline = time.monotonic() + 5
        while True:
            inputs = json.loads(server.pactl("-f", "json", "list", "sink-inputs"))
            mine = [i for i in inputs if str(i.get("owner_module")) == str(module)]
            if mine:
                server.pactl("set-sink-input-volume", str(mine[0]["index"]), f"-{loss_db}dB")
                break
            if time.monotonic() > deadline:
                raise RuntimeError("module-loopback made no sink input")
            time.sleep(0.05)
        yield module
    finally:
        try:
            server.pactl("unload-module", str(module))
        except RuntimeError:
            if subprocess.run(["pactl", "info"], capture_output=True,
                              env={**server.env, "PATH": "/usr/bin:/bin"}).returncode == 0:
                raise  # the server is there and refused: a real problem
            # the server already stopped (bench/app_cpu.py keeps the path to the end)


@dataclass
class Lanes:
    mic: np.ndarray  # float32 16 kHz, what the virtual microphone delivered
    system: np.ndarray  # float32 16 kHz, the speakers' monitor (the far-end reference)


def _parec(server: SoundServer, device: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["parec", f"--device={device}", f"--rate={RATE_HZ}", "--channels=1",
         "--format=float32le", "--latency-msec=10", "--raw", str(out)],
        env={**server.env, "PATH": "/usr/bin:/bin"},
    )


def record_lanes(server: SoundServer, directory: Path, plays: list[tuple[float, Path, str]],
                 seconds: float) -> Lanes:
    """Record both lanes for ``seconds`` while each ``(at_s, wav, sink)`` plays from
    ``at_s`` on. Both lanes start within a few ms of each other (two parec processes);
    the canceller finds the rest of the delay itself."""
    mic_raw, sys_raw = directory / "mic.f32", directory / "system.f32"
    recorders = [_parec(server, VIRTUAL_MIC, mic_raw), _parec(server, SYSTEM_SOURCE, sys_raw)]
    try:
        time.sleep(0.5)  # both streams running before anything plays
        began = time.monotonic()
        for at_s, wav, sink in sorted(plays, key=lambda p: p[0]):
            time.sleep(max(0.0, began + at_s - time.monotonic()))
            server.play(wav, sink)
        time.sleep(max(0.0, began + seconds - time.monotonic()))
    finally:
        for proc in recorders:
            proc.terminate()
            proc.wait(timeout=5)
    mic = np.fromfile(mic_raw, np.float32)
    system = np.fromfile(sys_raw, np.float32)
    n = min(len(mic), len(system))
    return Lanes(mic[:n], system[:n])


def at_16k(samples_48k: np.ndarray) -> np.ndarray:
    return soxr.resample(samples_48k, PLAY_RATE_HZ, RATE_HZ).astype(np.float32)


def locate(signal: np.ndarray, inside: np.ndarray) -> int:
    """Where ``signal`` starts inside ``inside`` (cross-correlation peak, in samples)."""
    n = 1 << int(np.ceil(np.log2(len(inside) + len(signal))))
    spectrum = np.fft.rfft(inside, n) * np.conj(np.fft.rfft(signal, n))
    corr = np.fft.irfft(spectrum, n)[: len(inside)]
    return int(np.argmax(corr))


def placed(signal: np.ndarray, start: int, length: int) -> np.ndarray:
    """``signal`` put at ``start`` in zeros of ``length``."""
    out = np.zeros(length, np.float32)
    end = min(length, start + len(signal))
    out[start:end] = signal[: end - start]
    return out


def erle_db(before: np.ndarray, after: np.ndarray) -> float:
    """Echo return loss enhancement: energy of the echo in, over what is left of it."""
    return float(10 * np.log10(np.sum(before.astype(np.float64) ** 2)
                               / max(np.sum(after.astype(np.float64) ** 2), 1e-20)))


def double_talk_figures(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """How the person's voice survives: (correlation with the clean voice, its level in dB
    relative to the clean voice: the least-squares gain of ``clean`` in ``out``)."""
    out64, clean64 = out.astype(np.float64), clean.astype(np.float64)
    correlation = float(np.corrcoef(out64, clean64)[0, 1])
    gain = float(np.dot(out64, clean64) / np.dot(clean64, clean64))
    return correlation, float(20 * np.log10(max(abs(gain), 1e-9)))


def local_double_talk_figures(out: np.ndarray, clean: np.ndarray, *, window: int = 8000,
                              max_lag: int = 32) -> tuple[float, float]:
    """:func:`double_talk_figures` per half second, each at its own best lag within
    +-2 ms, weighted by the clean voice's energy: what the canceller did to the voice,
    apart from the mixer moving a whole lane by a few ms (its drift correction does that
    under load; tests/audio/test_tracks_pulseaudio.py judges its channels the same way)."""
    weights, correlations, gains = [], [], []
    for start in range(max_lag, len(clean) - window - max_lag + 1, window):
        ref = clean[start : start + window].astype(np.float64)
        energy = float(np.dot(ref, ref))
        if energy < 1e-6:
            continue
        best = max(range(-max_lag, max_lag + 1), key=lambda lag: float(
            np.dot(out[start + lag : start + lag + window], ref)))
        seg = out[start + best : start + best + window].astype(np.float64)
        correlations.append(float(np.corrcoef(seg, ref)[0, 1]))
        gains.append(float(np.dot(seg, ref) / energy))
        weights.append(energy)
    w = np.asarray(weights) / np.sum(weights)
    gain = float(np.dot(w, gains))
    return float(np.dot(w, correlations)), float(20 * np.log10(max(abs(gain), 1e-9)))


def write_wav(path: Path, samples: np.ndarray) -> None:
    sf.write(path, samples, RATE_HZ, subtype="FLOAT")


__all__ = ["Lanes", "SPEAKER_SINK", "MIC_SINK", "echo_path", "record_lanes", "locate",
           "placed", "erle_db", "double_talk_figures", "at_16k", "RATE_HZ"]
