"""MixChain, the whole pipeline as the capture worker drives it."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp.chain import MixChain
from meetcap.errors import ConfigError
from meetcap.levels import SILENCE_DBFS, Health
from tests.dsp.signals import sine

STEP_S = 0.02  # the worker wakes every 20 ms


class Worker:
    """Plays the capture worker: pushes each source's blocks and renders what the clock says."""

    def __init__(self, chain: MixChain) -> None:
        self.chain = chain
        self.frames: list = []
        self.t_s = 0.0

    def step(self, blocks: dict[str, np.ndarray]) -> None:
        for name, block in blocks.items():
            self.chain.push(name, block)
        self.t_s += STEP_S
        due = round(self.t_s * 16000) - self.chain.samples_rendered
        self.frames += self.chain.render(due)

    def play(self, seconds: float, signals: dict[str, tuple[np.ndarray, int]], offset_s=0.0):
        """Feed ``signals`` (name -> (samples (n, ch), rate)) from ``offset_s`` for ``seconds``."""
        steps = round(seconds / STEP_S)
        for i in range(steps):
            t0 = offset_s + i * STEP_S
            blocks = {
                name: x[round(t0 * rate) : round((t0 + STEP_S) * rate)]
                for name, (x, rate) in signals.items()
            }
            self.step(blocks)


def tone(rate_hz: int, seconds: float, amplitude: float, channels: int = 1, freq=440.0):
    mono = sine(freq, rate_hz, seconds, amplitude)
    return np.repeat(mono[:, None], channels, axis=1), rate_hz


def test_levels_list_mic_system_and_mix_before_anything_starts() -> None:
    levels = MixChain(start_time=0.0).levels()
    assert set(levels) == {"mic", "system", "mix"}
    assert all(lv.health is Health.STOPPED for lv in levels.values())
    assert all(lv.peak_dbfs == SILENCE_DBFS for lv in levels.values())


def test_meters_show_each_source_after_its_gain() -> None:
    chain = MixChain(start_time=0.0, normalize=False)
    chain.add_source("mic", 48000, 1)
    chain.add_source("system", 44100, 2)
    chain.set_gain_db("system", -6.0)
    Worker(chain).play(1.0, {"mic": tone(48000, 1.0, 0.5), "system": tone(44100, 1.0, 0.5, 2)})
    levels = chain.levels()
    assert levels["mic"].peak_dbfs == pytest.approx(-6.02, abs=0.1)
    assert levels["system"].peak_dbfs == pytest.approx(-12.02, abs=0.1)
    assert levels["mic"].health is Health.OK and levels["system"].health is Health.OK
    assert levels["mix"].health is Health.OK and levels["mix"].rms_dbfs > -10.0


def test_a_clipping_input_is_reported_even_when_its_gain_turns_it_down() -> None:
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 48000, 1)
    chain.set_gain_db("mic", -20.0)
    hot, rate = tone(48000, 0.5, 1.4)
    hot = np.clip(hot, -1.0, 1.0)  # what a converter at its rails delivers
    Worker(chain).play(0.5, {"mic": (hot, rate)})
    levels = chain.levels()
    assert levels["mic"].health is Health.CLIPPING
    assert levels["mic"].clip_count == np.count_nonzero(np.abs(hot) >= 1.0)
    assert levels["mic"].peak_dbfs < -19.0  # after the gain, what the mix gets
    assert levels["mix"].clip_count == 0 and levels["mix"].health is Health.OK


def test_an_os_muted_microphone_is_reported_within_two_seconds() -> None:
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 48000, 1)
    worker = Worker(chain)
    worker.play(2.0, {"mic": tone(48000, 2.0, 0.3)})
    zeros = (np.zeros((48000 * 3, 1), np.float32), 48000)
    for i in range(150):
        worker.play(STEP_S, {"mic": zeros}, offset_s=i * STEP_S)
        if chain.levels()["mic"].health is Health.MUTED:
            break
    muted_after_s = (i + 1) * STEP_S
    assert 1.0 <= muted_after_s <= 2.0
    # The user's own mute button is not a device problem: the meter drops, health does not.
    other = MixChain(start_time=0.0)
    other.add_source("mic", 48000, 1)
    other.set_muted("mic", True)
    Worker(other).play(3.0, {"mic": tone(48000, 3.0, 0.3)})
    assert other.levels()["mic"].health is Health.OK
    assert other.levels()["mic"].peak_dbfs == SILENCE_DBFS


def test_quiet_source_turns_silent_after_the_configured_seconds() -> None:
    chain = MixChain(start_time=0.0, silent_after_s=2.0)
    chain.add_source("system", 48000, 2)
    worker = Worker(chain)
    worker.play(1.9, {"system": tone(48000, 4.0, 10 ** (-70 / 20), 2)})
    assert chain.levels()["system"].health is Health.OK
    worker.play(0.5, {"system": tone(48000, 4.0, 10 ** (-70 / 20), 2)}, offset_s=1.9)
    assert chain.levels()["system"].health is Health.SILENT


def test_lost_overrun_and_stopped_sources() -> None:
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 48000, 1)
    chain.set_overruns("mic", 3)
    assert chain.levels()["mic"].health is Health.OVERRUN
    chain.mark_lost("mic")
    chain.remove_source("mic")
    chain.render(8000)
    lost = chain.levels()["mic"]
    assert lost.health is Health.LOST and lost.problem_for_s == pytest.approx(0.5)
    chain.add_source("mic", 44100, 2)  # the device came back, in another format
    levels = chain.levels()["mic"]
    assert levels.health is not Health.LOST and levels.overruns == 3
    chain.remove_source("mic")
    assert chain.levels()["mic"].health is Health.STOPPED
    assert chain.levels()["mix"].health is Health.STOPPED


def test_a_source_dropping_out_and_reopening_keeps_frames_gapless() -> None:
    chain = MixChain(start_time=1000.0)
    chain.add_source("mic", 48000, 1)
    chain.add_source("system", 48000, 2)
    worker = Worker(chain)
    mic, system = tone(48000, 10.0, 0.2), tone(48000, 10.0, 0.2, 2, freq=300.0)
    worker.play(3.0, {"mic": mic, "system": system})
    worker.play(2.0, {"mic": mic}, offset_s=3.0)  # system delivers nothing for 2 s
    chain.mark_lost("system")
    chain.remove_source("system")
    worker.play(1.0, {"mic": mic}, offset_s=5.0)
    chain.add_source("system", 44100, 1)  # reopened at another rate
    worker.play(2.0, {"mic": mic, "system": tone(44100, 2.0, 0.2)}, offset_s=6.0)
    frames = worker.frames + chain.finish()

    assert [f.seq for f in frames] == list(range(len(frames)))
    # 8 s on the clock, then finish() plays out the ~0.2-0.3 s still queued.
    assert len(frames) == chain.samples_rendered // FRAME_SAMPLES
    assert 80 < len(frames) <= 83
    assert frames[79].capture_time == pytest.approx(1000.0 + 7.9)
    assert chain.levels()["system"].health is not Health.LOST


def test_finish_delivers_every_captured_sample() -> None:
    chain = MixChain(start_time=0.0, normalize=False)
    chain.add_source("mic", 48000, 1)
    burst = np.zeros((48000, 1), np.float32)
    burst[-4800:, 0] = sine(1000, 48000, 0.1, 0.5)  # the last 100 ms before stop
    worker = Worker(chain)
    worker.play(1.0, {"mic": (burst, 48000)})
    frames = worker.frames + chain.finish()

    pcm = np.frombuffer(b"".join(f.pcm for f in frames), "<i2") / 32767
    assert len(pcm) % FRAME_SAMPLES == 0
    energy_in = np.sum(sine(1000, 16000, 0.1, 0.5).astype(float) ** 2)
    assert np.sum(pcm**2) == pytest.approx(energy_in, rel=0.02)


def test_normalisation_can_be_switched_off_and_on() -> None:
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 16000, 1)
    quiet = tone(16000, 20.0, 10 ** (-40 / 20))
    worker = Worker(chain)
    worker.play(10.0, {"mic": quiet})
    assert chain.levels()["mix"].rms_dbfs > -35.0  # the AGC raised it
    chain.set_normalize(False)
    worker.play(2.0, {"mic": quiet}, offset_s=10.0)
    assert chain.levels()["mix"].rms_dbfs == pytest.approx(-43.0, abs=0.2)
    assert not chain.normalize_enabled


def test_bad_calls_get_clear_errors() -> None:
    chain = MixChain(start_time=0.0)
    with pytest.raises(ValueError, match="add_source"):
        chain.push("mic", np.zeros((480, 1), np.float32))
    with pytest.raises(ValueError, match="mix"):
        chain.add_source("mix", 48000, 1)
    with pytest.raises(ConfigError, match="gain"):
        chain.set_gain_db("mic", 40.0)
    chain.add_source("mic", 48000, 2)
    with pytest.raises(ValueError, match=r"\(frames, 2\)"):
        chain.push("mic", np.zeros((480, 1), np.float32))


def test_garbage_samples_from_a_driver_are_contained() -> None:
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 48000, 1)
    block = sine(440, 48000, 0.5, 0.3)[:, None].copy()
    block[100:110] = np.nan
    block[200] = np.inf
    Worker(chain).play(0.5, {"mic": (block, 48000)})
    frames = chain.render(3200)
    assert chain.levels()["mic"].clip_count == 11
    assert all(np.all(np.isfinite(np.frombuffer(f.pcm, "<i2"))) for f in frames)
    assert np.isfinite(chain.levels()["mix"].rms_dbfs)


def test_any_render_sizes_give_one_frame_per_100_ms_of_clock() -> None:
    chain = MixChain(start_time=50.0)
    chain.add_source("mic", 44100, 2)
    rng = np.random.default_rng(3)
    x, _ = tone(44100, 10.0, 0.2, 2)
    frames, pushed = [], 0
    for size in [0, 1, 1599, 1, 1600, 5000, 37] + list(rng.integers(0, 3000, 80)):
        frames += chain.render(int(size))
        target = round(chain.samples_rendered * 44100 / 16000)
        chain.push("mic", x[pushed:target])
        pushed = target
        assert len(frames) == chain.samples_rendered // FRAME_SAMPLES  # none held back
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.capture_time == pytest.approx(50.0 + 0.1 * f.seq) for f in frames)


class FailingSession:
    """Stands in for an onnxruntime session whose run() breaks mid-stream (a corrupted
    model or an onnxruntime bug cannot be produced on purpose with the real one)."""

    def run(self, *args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : LSTM node failed")


def test_vad_failing_mid_stream_with_stub_session_raises_and_keeps_every_frame() -> None:
    from meetcap.dsp.vad import SileroModel
    from meetcap.errors import ModelError

    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 16000, 1)
    chain.set_vad(True)
    worker = Worker(chain)
    worker.play(1.0, {"mic": tone(16000, 3.0, 0.2)})
    chain._vad._model = SileroModel("broken.onnx", FailingSession(), takes_sr=True)
    with pytest.raises(ModelError, match="failed to run"):
        worker.play(1.0, {"mic": tone(16000, 3.0, 0.2)}, offset_s=1.0)
    assert not chain.vad_enabled  # never silently treated as "no speech" while broken
    worker.play(1.0, {"mic": tone(16000, 3.0, 0.2)}, offset_s=2.0)
    assert [f.seq for f in worker.frames] == list(range(len(worker.frames)))
    assert len(worker.frames) == chain.samples_rendered // FRAME_SAMPLES


def test_jittery_delivery_neither_starves_nor_keeps_splicing() -> None:
    """Device blocks every 10 ms that reach the worker up to 35 ms late, for 5 minutes.

    The 100 ms margin absorbs the jitter (no dropouts) and, the clocks being equal, the
    drift control settles once after start-up instead of hunting.
    """
    rng = np.random.default_rng(11)
    chain = MixChain(start_time=0.0)
    chain.add_source("mic", 48000, 1)
    chain.add_source("system", 44100, 2)
    seconds = 300
    blocks = {
        "mic": np.full((480, 1), 0.01, np.float32),
        "system": np.full((441, 2), 0.01, np.float32),
    }
    arrivals = {
        name: np.maximum.accumulate(
            np.arange(seconds * 100) * 0.01 + rng.uniform(0, 0.035, seconds * 100)
        )
        for name in blocks
    }
    sent = dict.fromkeys(blocks, 0)
    t = 0.0
    while t < seconds:
        t += 0.02
        for name, block in blocks.items():
            while sent[name] < len(arrivals[name]) and arrivals[name][sent[name]] <= t:
                chain.push(name, block)
                sent[name] += 1
        chain.render(round(t * 16000) - chain.samples_rendered)
    for name in blocks:
        lane = chain.mixer.lane(name)
        assert lane.underruns == 0
        assert lane.correction_ppm == 0.0  # equal clocks: nothing to correct, no warp
        assert abs(lane.latency_error_samples) < 80  # within 5 ms of where it settled
