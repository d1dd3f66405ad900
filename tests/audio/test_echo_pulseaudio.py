"""Echo cancellation and the echo score on the real rig (issue 10): real PortAudio
capture of a real PulseAudio server, the capture worker and the real MixChain.

The rig (tests/support/echo_rig.py): the person's voice (espeak-ng) is played into the
microphone sink, the remote voice into the speaker sink, and ``module-loopback`` from
the speakers' monitor into the microphone sink, 100 ms late and 15 dB down, is the echo
path of a laptop without headphones. Without the loopback it is a headset.

The test taps the chain's rendered blocks (``MixChain.last_block``) on the worker thread:
the mic lane before the canceller (``raw``) and after it (``gained``, what the mix holds),
and the system lane, on one timeline. Figures are printed (``-s`` shows them).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from meetcap.audio.pipeline import CaptureWorker
from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.chain import ECHO_AUTO, ECHO_OFF, ECHO_ON, MixChain
from meetcap.dsp.echo import LINEAR_BLOCK
from meetcap.dsp.echo_score import CLEAN, REACHES_MIC
from tests.audio.helpers import watch_lost_samples
from tests.support.echo_rig import (
    at_16k,
    double_talk_figures,
    echo_path,
    erle_db,
    local_double_talk_figures,
    locate,
    placed,
)
from tests.support.noise import FAN_DBFS, fan_noise
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID
from tests.support.speech import make_speech

WARM_UP_S = 1.5  # both PulseAudio streams deliver within this after opening


class Tap:
    """Builds the worker's chain and keeps, per rendered block, the lanes and the score."""

    def __init__(self, echo_cancel: str, noise_suppress: bool = False) -> None:
        self.echo_cancel = echo_cancel
        self.noise_suppress = noise_suppress
        self.chain: MixChain | None = None
        self.mic_in: list[np.ndarray] = []
        self.mic_out: list[np.ndarray] = []
        self.system: list[np.ndarray] = []
        self.verdicts: list[tuple[int, str, bool]] = []  # (timeline sample, verdict, cancelling)
        self.errors: list[str] = []
        self._samples = 0
        self._last = None
        self.underruns: dict[str, int] = {}
        self.lock = threading.Lock()

    def make_chain(self, start_time: float) -> MixChain:
        self.chain = MixChain(start_time=start_time, normalize=False,
                              echo_cancel=self.echo_cancel,
                              noise_suppress=self.noise_suppress)
        return self.chain

    def on_frames(self, frames) -> None:  # the worker thread, right after a render
        block = self.chain.last_block
        if block is None or block is self._last:
            return
        self._last = block
        n = len(block.mix)
        silence = np.zeros(n, np.float32)
        with self.lock:
            mic, system = block.parts.get("mic"), block.parts.get("system")
            self.mic_in.append(mic.raw if mic is not None else silence)
            self.mic_out.append(mic.gained if mic is not None else silence)
            self.system.append(system.raw if system is not None else silence)
            self._samples += n
            score = self.chain.echo_score
            self.verdicts.append((self._samples, score.verdict, self.chain.echo_cancelling))
            # A lane that ran dry re-primes and shifts the echo delay: the canceller then
            # learns again. Kept to explain a figure (the machine may be overloaded).
            mixer = self.chain.mixer
            if mixer.sources:  # (after finish() the lanes are gone)
                self.underruns = {name: mixer.lane(name).underruns for name in mixer.sources}

    def on_event(self, event) -> None:
        if event.kind.value == "error":
            self.errors.append(event.message)

    def lanes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with self.lock:
            return (np.concatenate(self.mic_in), np.concatenate(self.mic_out),
                    np.concatenate(self.system))


def run_rig(pulse, echo_cancel: str, plays, seconds: float, *,
            noise_suppress: bool = False) -> Tap:
    tap = Tap(echo_cancel, noise_suppress)
    worker = CaptureWorker(tap.make_chain, {"mic": MIC_ID, "system": SYSTEM_ID},
                           tap.on_frames, tap.on_event)
    worker.open_all()
    worker.start()
    try:
        time.sleep(WARM_UP_S)
        began = time.monotonic()
        for at_s, speech, sink in plays:
            time.sleep(max(0.0, began + at_s - time.monotonic()))
            pulse.play(speech.path, sink)
        time.sleep(max(0.0, began + seconds - time.monotonic()))
    finally:
        worker.stop()
    assert not tap.errors, tap.errors
    return tap


@pytest.fixture(scope="module")
def voices(tmp_path_factory):
    directory = tmp_path_factory.mktemp("echo-voices")
    return {
        "remote": make_speech(
            directory, "remote", "Thanks. The remote team finished the release on Friday, "
            "and the numbers look fine for the next quarter.", voice="en-us", pitch=75,
            lead_s=0.0, tail_s=0.1),
        "person": make_speech(
            directory, "person", "Good morning everyone, let us review the budget.",
            voice="en", pitch=40, lead_s=0.0, tail_s=0.1),
    }


def first_verdict_s(tap: Tap, verdict: str, after_sample: int) -> float | None:
    for sample, said, _ in tap.verdicts:
        if sample > after_sample and said == verdict:
            return (sample - after_sample) / SAMPLE_RATE_HZ
    return None


def test_echo_is_cancelled_and_the_person_survives_double_talk(pulse, voices, monkeypatch):
    """Only the remote side speaks: ERLE >= 25 dB from 2 s on. Then the person talks
    over it: their voice keeps correlation >= 0.9 with the clean voice, < 3 dB lost,
    over the whole double-talk span at one fixed lag.
    The echo score reads "reaches the mic" within 3 s of the remote voice starting."""
    remote, person = voices["remote"], voices["person"]
    # Silence a capture wrote for samples it judged lost moves its lane against the
    # other: the canceller then learns the echo again. Printed to explain a figure.
    detectors = watch_lost_samples(monkeypatch)
    with echo_path(pulse, delay_ms=100, loss_db=15.0):
        time.sleep(0.5)
        tap = run_rig(pulse, ECHO_ON, [(0.0, remote, SPEAKER_SINK),
                                       (3.8, person, MIC_SINK)], seconds=9.0)
    mic_in, mic_out, system = tap.lanes()
    latency = tap.chain._echo.latency_samples  # the lane comes out this late (8 ms)
    out = np.concatenate((mic_out[latency:], np.zeros(latency, np.float32)))
    far_at = locate(at_16k(remote.samples), system)
    person_16k = at_16k(person.samples)
    near_at = locate(person_16k, mic_in)
    assert near_at - far_at > 3.0 * SAMPLE_RATE_HZ, (far_at, near_at)
    # Up to the 20 ms block before the person starts: the canceller switches to the
    # linear output for the whole block the voice starts in (its Geigel verdict is per
    # block), and that block's echo before the voice is cancelled only linearly (on one
    # recording 53.7 dB up to there, 51.8 dB up to the voice itself).
    echo_only = slice(far_at + 2 * SAMPLE_RATE_HZ, near_at - LINEAR_BLOCK)
    erle = erle_db(mic_in[echo_only], out[echo_only])
    voiced = np.flatnonzero(np.abs(person_16k) > 0.02)
    far_voiced_end = far_at + np.flatnonzero(np.abs(at_16k(remote.samples)) > 0.02)[-1]
    both = slice(near_at + voiced[0], min(near_at + voiced[-1], far_voiced_end))
    assert both.stop - both.start > SAMPLE_RATE_HZ, "at least 1 s of double talk"
    clean = placed(person_16k, near_at, len(mic_in))
    # Judged as the issue states it: over the whole double-talk span at ONE fixed lag
    # (where the voice sits in the raw mic, plus the canceller's own latency), so any
    # time-warp of the lane counts against it too. The figure per half second at a
    # local lag (+-2 ms) is printed beside it: a gap between the two would point at
    # the lane moving (the mixer) rather than at the canceller.
    correlation, level_db = double_talk_figures(out[both], clean[both])
    raw_correlation, raw_level_db = double_talk_figures(mic_in[both], clean[both])
    local_correlation, local_level_db = local_double_talk_figures(out[both], clean[both])
    score_after = first_verdict_s(tap, REACHES_MIC, far_at)
    filled = {lane: detector.silence_frames for lane, detector in detectors.items()}
    print(f"\nERLE {erle:.1f} dB (echo only, from 2 s after the remote voice starts); "
          f"double talk over {(both.stop - both.start) / SAMPLE_RATE_HZ:.1f} s at one "
          f"fixed lag: correlation {correlation:.3f}, level {level_db:+.1f} dB (raw mic "
          f"{raw_correlation:.3f}, {raw_level_db:+.1f} dB; per half second at a local "
          f"lag: {local_correlation:.3f}, {local_level_db:+.1f} dB); echo score "
          f"'{REACHES_MIC}' {score_after} s after the remote voice began; lane underruns "
          f"{tap.underruns}, silence for lost samples {filled}")
    assert erle >= 25.0, f"lane underruns {tap.underruns}, silence for lost samples {filled}"
    assert correlation >= 0.9, f"lane underruns {tap.underruns}, lost-sample fills {filled}"
    assert level_db > -3.0, "the person's voice lost 3 dB or more"
    assert score_after is not None and score_after <= 3.0


def test_echo_score_reads_clean_without_the_echo_path_and_auto_stays_off(pulse, voices):
    tap = run_rig(pulse, ECHO_AUTO, [(0.0, voices["remote"], SPEAKER_SINK)], seconds=4.0)
    _, _, system = tap.lanes()
    far_at = locate(at_16k(voices["remote"].samples), system)
    clean_after = first_verdict_s(tap, CLEAN, far_at)
    print(f"\necho score '{CLEAN}' {clean_after} s after the remote voice began")
    assert clean_after is not None and clean_after <= 3.0
    assert all(said != REACHES_MIC for _, said, _ in tap.verdicts)
    assert not any(cancelling for *_, cancelling in tap.verdicts), "auto stays off: no echo"


def test_auto_turns_the_canceller_on_when_the_speakers_reach_the_mic(pulse, voices):
    with echo_path(pulse, delay_ms=60, loss_db=20.0):
        time.sleep(0.5)
        tap = run_rig(pulse, ECHO_AUTO, [(0.0, voices["remote"], SPEAKER_SINK)], seconds=4.0)
    _, _, system = tap.lanes()
    far_at = locate(at_16k(voices["remote"].samples), system)
    reaches_after = first_verdict_s(tap, REACHES_MIC, far_at)
    print(f"\n60 ms, -20 dB: echo score '{REACHES_MIC}' {reaches_after} s after the remote "
          "voice began")
    assert reaches_after is not None and reaches_after <= 3.0
    assert tap.verdicts[-1][2], "auto turned the canceller on"


# Noise suppression (WebRTC's, after the canceller; off by default, --noise-suppress and
# the Settings switch turn it on).
NOISE_SETTLE_S = 1.0  # the suppressor learns the noise first; pauses counted after that


def rms_dbfs(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def test_noise_suppression_lowers_the_noise_floor_and_keeps_the_voice(pulse, voices, tmp_path):
    """A voice and a steady fan-like noise played into the microphone sink (two streams
    the sound server mixes, as a room does), the real chain with noise suppression on:
    in the pauses (after the suppressor's first second) the mic lane's noise floor drops
    by >= 6 dB against the same lane before the suppressor; during the voice the lane
    still correlates >= 0.9 with the played voice (one fixed lag over the whole voice)
    and keeps its level (within 3 dB)."""
    fan = fan_noise(tmp_path, seconds=7.0)
    person = voices["person"]
    tap = run_rig(pulse, ECHO_OFF, [(0.0, fan, MIC_SINK),
                                    (2.5, person, MIC_SINK)], seconds=7.5,
                  noise_suppress=True)
    mic_in, mic_out, _ = tap.lanes()
    noise_16k, person_16k = at_16k(fan.samples), at_16k(person.samples)
    noise_at = locate(noise_16k, mic_in)
    in_at, out_at = locate(person_16k, mic_in), locate(person_16k, mic_out)
    clean_in = placed(person_16k, in_at, len(mic_in))
    # One fixed lag for the suppressed lane: where the voice sits in it (the chain's
    # echo-stage delay, which the system lane gets too, and the suppressor's own).
    clean_out = placed(person_16k, out_at, len(mic_out))
    suppressor_ms = (out_at - in_at - tap.chain._echo.latency_samples) * 1000 / SAMPLE_RATE_HZ
    noise_end = min(noise_at + len(noise_16k), len(mic_in))

    def pauses(clean: np.ndarray) -> np.ndarray:
        """20 ms pieces with no voice in them, while the noise plays and after it settled."""
        piece = SAMPLE_RATE_HZ // 50
        start = noise_at + int(NOISE_SETTLE_S * SAMPLE_RATE_HZ)
        out = []
        for at in range(start, noise_end - piece, piece):
            # (a piece next to the voice counts as voice: reverb-free, but the
            # suppressor's window spans 16 ms)
            if np.max(np.abs(clean[max(0, at - piece) : at + 2 * piece])) < 1e-3:
                out.append(np.arange(at, at + piece))
        return np.concatenate(out)

    quiet_in, quiet_out = pauses(clean_in), pauses(clean_out)
    floor_in, floor_out = rms_dbfs(mic_in[quiet_in]), rms_dbfs(mic_out[quiet_out])
    voiced = np.flatnonzero(np.abs(clean_out) > 0.02)
    span = slice(voiced[0], voiced[-1])
    correlation, level_db = double_talk_figures(mic_out[span], clean_out[span])
    in_voiced = np.flatnonzero(np.abs(clean_in) > 0.02)
    raw_correlation, raw_level_db = double_talk_figures(
        mic_in[in_voiced[0] : in_voiced[-1]], clean_in[in_voiced[0] : in_voiced[-1]])
    print(f"\nnoise suppression: noise floor in the pauses {floor_in:.1f} -> {floor_out:.1f} "
          f"dBFS ({floor_in - floor_out:.1f} dB down, {len(quiet_out) / SAMPLE_RATE_HZ:.1f} s "
          f"of pauses); voice over {(span.stop - span.start) / SAMPLE_RATE_HZ:.1f} s at one "
          f"fixed lag: correlation {correlation:.3f}, level {level_db:+.1f} dB (before the "
          f"suppressor {raw_correlation:.3f}, {raw_level_db:+.1f} dB); the suppressor "
          f"delays the mic lane {suppressor_ms:.1f} ms more than the system lane; lane "
          f"underruns {tap.underruns}")
    assert len(quiet_out) >= SAMPLE_RATE_HZ, "at least 1 s of pauses judged"
    assert floor_in > FAN_DBFS - 3, "the noise reached the mic lane"
    assert floor_in - floor_out >= 6.0
    assert correlation >= 0.9
    assert level_db > -3.0
    assert abs(suppressor_ms) < 0.1, "the system lane waits as long (one timeline)"
