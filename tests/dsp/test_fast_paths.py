"""The chain's fast paths give exactly what the plain paths give.

Each speed-up of the DSP chain (bench/pipeline.py, bench/pipecat_peer.py measure it) is
checked here against the plain way of doing the same thing, on real espeak-ng speech and
the real Silero model: bit-exact, because none of them changes the arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp import drift, echo_score, vad
from meetcap.dsp.chain import MixChain
from meetcap.dsp.linear_aec import SILENT_FAR, LinearEchoCanceller
from meetcap.dsp.meter import CLIP_LEVEL, WindowStats, count_clips
from meetcap.dsp.mixer import MixBlock, Mixer
from meetcap.dsp.resample import Resampler
from meetcap.dsp.vad_gate import VadGate


@pytest.fixture(scope="module")
def speech_16k(espeak_utterance) -> np.ndarray:
    samples, rate_hz = espeak_utterance
    return Resampler(rate_hz, 1).process(samples)


def _probabilities(model: vad.SileroModel, speech: np.ndarray, run) -> tuple[list, list]:
    window_in = np.zeros((1, vad.CONTEXT_SAMPLES + vad.WINDOW_SAMPLES), np.float32)
    feeds = vad._new_feeds(model, window_in, vad._zero_state())
    probabilities, states = [], []
    for start in range(0, len(speech) - vad.WINDOW_SAMPLES + 1, vad.WINDOW_SAMPLES):
        window = speech[start : start + vad.WINDOW_SAMPLES]
        window_in[0, vad.CONTEXT_SAMPLES :] = window
        probability, feeds["state"] = run(model.output_names, feeds)
        window_in[0, : vad.CONTEXT_SAMPLES] = window[-vad.CONTEXT_SAMPLES :]
        probabilities.append(probability.copy())
        states.append(feeds["state"].copy())
    return probabilities, states


def test_the_vad_native_run_gives_the_public_runs_probabilities_and_states(speech_16k) -> None:
    model = vad.load_model()
    # The fast path is in use here (onnxruntime has _sess), not the public run again.
    assert model.run is not model.session.run and model.run == model.session._sess.run
    fast = _probabilities(model, speech_16k, lambda names, feeds: model.run(names, feeds, None))
    plain = _probabilities(model, speech_16k, model.session.run)
    assert len(fast[0]) > 150
    for got, expected in zip(fast[0] + fast[1], plain[0] + plain[1], strict=True):
        np.testing.assert_array_equal(got, expected)
    assert max(float(p[0, 0]) for p in plain[0]) > 0.9  # real speech went through


def _bound_probabilities(bound: vad.BoundRun, speech: np.ndarray) -> tuple[list, list]:
    probabilities, states = [], []
    for start in range(0, len(speech) - vad.WINDOW_SAMPLES + 1, vad.WINDOW_SAMPLES):
        window = speech[start : start + vad.WINDOW_SAMPLES]
        bound.window[0, vad.CONTEXT_SAMPLES :] = window
        probabilities.append(np.array([[bound.run()]], np.float32))
        bound.window[0, : vad.CONTEXT_SAMPLES] = window[-vad.CONTEXT_SAMPLES :]
        states.append(bound.state.copy())
    return probabilities, states


def test_the_bound_vad_run_gives_the_public_runs_probabilities_and_states(speech_16k) -> None:
    """Buffers bound once (IOBinding, the state going back and forth between two arrays)
    against session.run with fresh feeds: bit for bit, also after a state restart and
    with a second stream's runs in between (each keeps its own state)."""
    model = vad.load_model()
    bound, other = vad.BoundRun(model), vad.BoundRun(model)
    plain = _probabilities(model, speech_16k, model.session.run)
    half = len(speech_16k) // 2 // vad.WINDOW_SAMPLES * vad.WINDOW_SAMPLES
    got = _bound_probabilities(bound, speech_16k[:half])
    _bound_probabilities(other, speech_16k[::-1].copy())  # another stream on the session
    rest = _bound_probabilities(bound, speech_16k[half:])
    for got_value, expected in zip(got[0] + rest[0] + got[1] + rest[1],
                                   plain[0] + plain[1], strict=True):
        np.testing.assert_array_equal(got_value, expected)
    # A restart (the gate's resync) starts from zeros exactly as a fresh stream does.
    bound.zero_state()
    bound.window[:] = 0.0
    restarted = _bound_probabilities(bound, speech_16k)
    for got_value, expected in zip(restarted[0] + restarted[1], plain[0] + plain[1], strict=True):
        np.testing.assert_array_equal(got_value, expected)
    assert max(float(p[0, 0]) for p in plain[0]) > 0.9  # real speech went through


class PlainRun:
    """BoundRun's interface on the public session.run with fresh feeds every window."""

    def __init__(self, model: vad.SileroModel) -> None:
        self.model = model
        self.window = np.zeros((1, vad.CONTEXT_SAMPLES + vad.WINDOW_SAMPLES), np.float32)
        self.state = vad._zero_state()
        self.runs = 0

    def zero_state(self) -> None:
        self.state = vad._zero_state()

    def run(self) -> float:
        feeds = {"input": self.window.copy(), "state": self.state}
        if self.model.takes_sr:
            feeds["sr"] = np.array(16000, np.int64)
        probability, self.state = self.model.session.run(self.model.output_names, feeds)
        self.runs += 1
        return float(probability[0, 0])


class PlainRunStream(vad.VadStream):
    def _bind(self):
        if self._bound is None:
            self._bound = PlainRun(self._model or self.model)
        return self._bound


@pytest.mark.parametrize("gate", [False, True])
def test_a_vad_stream_on_the_bound_run_decides_as_on_the_plain_run(speech_16k, gate) -> None:
    """The whole stream (hot loop, resyncs of the gate, reset) on the bound run against
    the same stream on session.run: the same verdict for every sample."""
    rng = np.random.default_rng(2)
    room = (rng.standard_normal(24000) * 10 ** (-65 / 20)).astype(np.float32)
    audio = np.concatenate([np.zeros(8000, np.float32), speech_16k, np.zeros(16000, np.float32),
                            room, speech_16k * 0.1 + room[0], room]).astype(np.float32)
    verdicts = []
    for stream in (vad.VadStream(batch_windows=6, gate=gate),
                   PlainRunStream(batch_windows=6, gate=gate)):
        out = []
        for _ in range(2):  # the second pass after flush's reset: a fresh stream again
            out += [stream.process(audio[i : i + 1600]) for i in range(0, len(audio), 1600)]
            out.append(stream.flush())
        verdicts.append(np.concatenate(out))
        if gate:
            assert stream.windows_skipped > 0  # the gate's skips and resyncs were there
    assert isinstance(stream._bound, PlainRun) and stream._bound.runs > 300
    fast, plain = verdicts
    assert len(fast) == 2 * len(audio)
    assert 0.2 < fast.mean() < 0.9  # speech and no speech both occurred
    np.testing.assert_array_equal(fast, plain)


def _packaged(name: str) -> str:
    return str(Path(vad.default_model_path()).with_name(name))


@pytest.fixture(scope="module")
def speech_silence_and_room(speech_16k) -> np.ndarray:
    rng = np.random.default_rng(4)
    room = (rng.standard_normal(32000) * 10 ** (-62 / 20)).astype(np.float32)
    quiet_speech = speech_16k[::-1] * 0.05
    quiet_speech[: len(room)] += room[: len(quiet_speech)]
    return np.concatenate([speech_16k, np.zeros(12000, np.float32), room, quiet_speech,
                           room]).astype(np.float32)


def test_the_fixed_shape_16k_model_gives_the_full_models_probabilities_and_states(
    speech_silence_and_room,
) -> None:
    """The default (the package's 16 kHz export, batch and sequence fixed: no If nodes
    run) against the package's 8+16 kHz model with dynamic shapes, both through the
    public session.run: bit for bit on speech, digital silence, room noise, quiet speech."""
    assert Path(vad.default_model_path()).name == vad.PACKAGED_16K_MODEL
    fast = vad.load_model()
    full = vad.load_model(_packaged(vad.PACKAGED_MODEL))
    assert fast.session is not full.session
    got = _probabilities(fast, speech_silence_and_room, fast.session.run)
    expected = _probabilities(full, speech_silence_and_room, full.session.run)
    assert len(got[0]) > 300
    for got_value, expected_value in zip(got[0] + got[1], expected[0] + expected[1],
                                         strict=True):
        np.testing.assert_array_equal(got_value, expected_value)
    probabilities = np.array([float(p[0, 0]) for p in got[0]])
    assert probabilities.max() > 0.9 and probabilities.min() < 0.05  # both kinds were there


def test_the_vad_stream_on_the_default_model_decides_as_on_the_full_model_run_plainly(
    speech_silence_and_room,
) -> None:
    """Everything fast together (16 kHz export with fixed shapes, bound buffers, gate
    skips) against the full model through session.run with the same gate: the same verdict
    for every sample."""
    audio = speech_silence_and_room
    fast_stream = vad.VadStream(batch_windows=6, gate=True)
    plain_stream = PlainRunStream(_packaged(vad.PACKAGED_MODEL), batch_windows=6, gate=True)
    verdicts = []
    for stream in (fast_stream, plain_stream):
        out = [stream.process(audio[i : i + 1600]) for i in range(0, len(audio), 1600)]
        verdicts.append(np.concatenate([*out, stream.flush()]))
    assert plain_stream.model.path.endswith(vad.PACKAGED_MODEL)
    assert fast_stream.windows_skipped > 0
    assert 0.2 < verdicts[1].mean() < 0.9
    np.testing.assert_array_equal(verdicts[0], verdicts[1])


def test_window_stats_without_peaks_give_the_same_mean_squares(speech_16k) -> None:
    """HealthTracker's path (no peaks) against the full feed, in blocks of every kind:
    exactly one window, less, several at once."""
    rng = np.random.default_rng(8)
    full, lean = WindowStats(FRAME_SAMPLES), WindowStats(FRAME_SAMPLES)
    at, windows = 0, 0
    while at < len(speech_16k):
        size = FRAME_SAMPLES if rng.random() < 0.5 else int(rng.integers(1, 4 * FRAME_SAMPLES))
        block = speech_16k[at : at + size]
        expected, peaks = full.feed(block)
        got, no_peaks = lean.feed(block, with_peaks=False)
        np.testing.assert_array_equal(got, expected)
        assert len(no_peaks) == 0 and len(peaks) == len(expected)
        windows += len(got)
        at += size
    assert windows == len(speech_16k) // FRAME_SAMPLES


def test_the_echo_score_skips_digital_silence_as_it_skipped_a_quiet_far_end(
    speech_16k, monkeypatch
) -> None:
    """The far lane digitally silent, then playing with an echo, then silent again: every
    reading the same as with the RMS computed on the zeros too."""
    far = np.concatenate([np.zeros(48000, np.float32), speech_16k, np.zeros(48000, np.float32),
                          speech_16k]).astype(np.float32)
    mic = 0.3 * np.concatenate([np.zeros(800, np.float32), far[:-800]])
    mic += (np.random.default_rng(6).standard_normal(len(far)) * 1e-3).astype(np.float32)
    fast = _scores(far, mic)

    class AlwaysSomething(np.ndarray):  # .any() never short-cuts: the plain path
        def any(self, *args, **kwargs):
            return True

    original = echo_score.EchoPathEstimator._measure

    def plain_measure(self):
        self._far = self._far.view(AlwaysSomething)
        try:
            original(self)
        finally:
            self._far = self._far.view(np.ndarray)

    monkeypatch.setattr(echo_score.EchoPathEstimator, "_measure", plain_measure)
    plain = _scores(far, mic)
    assert fast == plain
    assert any(s.reaches_mic for s in fast)


def test_a_session_without_the_native_call_falls_back_to_its_public_run() -> None:
    class PublicOnly:
        def run(self, names, feeds, options=None):
            return "public"

    session = PublicOnly()
    assert vad._native_run(session) == session.run


class RollingLinearCanceller(LinearEchoCanceller):
    """The filter's history as it was kept before (np.roll into new arrays): the plain
    path the in-place shift must match."""

    def process(self, near, far, *, adapt=True):
        block = self.block
        far64 = far.astype(np.float64)
        peak = float(np.max(np.abs(far64)))
        self._far_peaks = np.roll(self._far_peaks, 1)
        self._far_peaks[0] = peak
        quiet = max(float(np.max(self._far_peaks)), float(np.max(np.abs(self._far_tail))))
        if quiet < SILENT_FAR:
            self._far_tail = far64
            self._far_spectra = np.roll(self._far_spectra, 1, axis=0)
            self._far_spectra[0] = 0.0
            self.double_talk = False
            self._hangover = 0
            self.echo_estimate = np.zeros(block, np.float32)
            return np.asarray(near, np.float32)
        spectrum = np.fft.rfft(np.concatenate((self._far_tail, far64)))
        self._far_tail = far64
        self._far_spectra = np.roll(self._far_spectra, 1, axis=0)
        self._far_spectra[0] = spectrum
        self._far_power = np.einsum("pk,pk->k", self._far_spectra,
                                    np.conj(self._far_spectra)).real
        echo_spectrum = np.einsum("pk,pk->k", self._weights, self._far_spectra)
        echo = np.fft.irfft(echo_spectrum)[block:]
        error = near.astype(np.float64) - echo
        self.echo_estimate = echo.astype(np.float32)
        if float(np.max(np.abs(near))) > 0.5 * float(np.max(self._far_peaks)):
            self._hangover = self._hangover_blocks
        elif self._hangover > 0:
            self._hangover -= 1
        self.double_talk = self._hangover > 0
        if adapt and not self.double_talk and self._far_peaks[0] > 0.0:
            self._adapt(error)
        return error.astype(np.float32)


@pytest.mark.parametrize("partitions", [1, 4])
def test_the_linear_canceller_shifting_in_place_matches_the_rolling_history(
    speech_16k, partitions: int
) -> None:
    """Far-end speech with digital silence between (the skip path), an echo 30 ms late
    and 12 dB down, and the person talking over part of it (double talk, no adaptation)."""
    rng = np.random.default_rng(3)
    far = np.concatenate([speech_16k[:32000], np.zeros(16000, np.float32),
                          speech_16k[32000:64000]])
    echo = 0.25 * np.concatenate([np.zeros(480, np.float32), far[:-480]])
    near = echo + (rng.standard_normal(len(far)) * 1e-3).astype(np.float32)
    near[20000:28000] += speech_16k[40000:48000]
    fast = LinearEchoCanceller(partitions, 320)
    plain = RollingLinearCanceller(partitions, 320)
    outs = []
    for start in range(0, len(far) - 319, 320):
        part = slice(start, start + 320)
        adapt = start % 3200 != 0  # the caller's hold as well
        got = fast.process(near[part], far[part], adapt=adapt)
        expected = plain.process(near[part], far[part], adapt=adapt)
        np.testing.assert_array_equal(got, expected)
        assert fast.double_talk == plain.double_talk
        outs.append(got)
    np.testing.assert_array_equal(fast._weights, plain._weights)
    out = np.concatenate(outs)
    # It did cancel (the comparison ran through adapting, skipping and double talk): the
    # 30 ms echo fits in the 80 ms of four partitions (one partition: 20 ms, it cannot).
    tail = slice(len(out) - 16000, len(out))
    if partitions == 1:
        return
    assert float(np.dot(out[tail], out[tail])) < 0.1 * float(np.dot(near[tail], near[tail]))


def _scores(far: np.ndarray, mic: np.ndarray) -> list[echo_score.EchoScore]:
    estimator = echo_score.EchoPathEstimator()
    scores = []
    for start in range(0, len(far), FRAME_SAMPLES):
        estimator.process(mic[start : start + FRAME_SAMPLES], far[start : start + FRAME_SAMPLES])
        scores.append(estimator.score)
    return scores


def test_the_echo_score_correlating_only_the_delays_it_reads_matches_the_full_correlation(
    speech_16k, monkeypatch
) -> None:
    """System audio reaching the mic 120 ms late and 14 dB down, then the person talking
    over it, then a clean mic: every reading the same as with the full correlation."""
    rng = np.random.default_rng(5)
    far = np.concatenate([speech_16k, speech_16k, speech_16k]).astype(np.float32)
    delay = 1920
    mic = 0.2 * np.concatenate([np.zeros(delay, np.float32), far[:-delay]])
    third = len(far) // 3
    mic[third : 2 * third] += speech_16k[: third][::-1]  # double talk (another "voice")
    mic[2 * third :] = 0.0  # headset from here on: no echo
    mic += (rng.standard_normal(len(far)) * 1e-3).astype(np.float32)
    assert echo_score.correlation_size(8000, 9600, 1600) == 9600

    fast = _scores(far, mic)
    monkeypatch.setattr(  # the full linear correlation: a power of two over both lanes
        echo_score, "correlation_size",
        lambda mic_n, far_n, _: 1 << int(np.ceil(np.log2(far_n + mic_n))))
    full = _scores(far, mic)
    for got, expected in zip(fast, full, strict=True):
        assert (got.verdict, got.delay_ms) == (expected.verdict, expected.delay_ms)
        assert got.level_db == pytest.approx(expected.level_db, abs=1e-9)
    verdicts = [s.verdict for s in fast]
    assert echo_score.REACHES_MIC in verdicts and verdicts[-1] == echo_score.CLEAN
    assert any(s.delay_ms == pytest.approx(120.0, abs=0.5) for s in fast)


def test_the_echo_score_decimation_equals_the_mean_of_each_four_bit_for_bit(speech_16k) -> None:
    for samples in (speech_16k, speech_16k[:-3], np.zeros(10, np.float32)):
        usable = len(samples) - len(samples) % echo_score.DECIMATE
        plain = samples[:usable].astype(np.float64).reshape(-1, echo_score.DECIMATE).mean(axis=1)
        np.testing.assert_array_equal(echo_score._decimate(samples), plain)


class RescanningGate(VadGate):
    """The noise floor as it was found before: min() over the whole span every window."""

    def quiet(self, windows: np.ndarray) -> np.ndarray:
        n = windows.shape[0]
        if n == 0:
            return np.zeros(0, dtype=bool)
        peaks = np.abs(windows).max(axis=1)
        quarters = np.einsum("ijk,ijk->ij", *(windows.reshape(n, 4, -1),) * 2) / (
            windows.shape[1] // 4)
        powers = quarters.mean(axis=1)
        flags = peaks < self._silence_peak
        steady = quarters.max(axis=1) <= self._steady * np.maximum(quarters.min(axis=1), 1e-20)
        for i in range(n):
            if flags[i]:
                continue
            power = float(powers[i])
            self._recent.append(power)
            floor = min(self._recent)
            if steady[i] and floor <= self._floor_max and power <= self._steady * floor:
                flags[i] = True
        return flags


def test_the_gate_keeping_its_floor_flags_what_rescanning_the_span_flagged(speech_16k) -> None:
    """Speech, digital silence, a room that gets louder and quieter (so the floor leaves
    the span and must be found again), in calls of 0 to 20 windows."""
    rng = np.random.default_rng(11)
    room = np.concatenate([rng.standard_normal(16000 * k) * 10 ** (db / 20)
                           for k, db in ((3, -65), (2, -50), (4, -70), (3, -58), (4, -62))])
    audio = np.concatenate([np.zeros(8000), speech_16k * 0.5, room, np.zeros(20000),
                            speech_16k * 0.02 + room[: len(speech_16k)]]).astype(np.float32)
    windows = audio[: len(audio) // 512 * 512].reshape(-1, 512)
    fast, plain = VadGate(), RescanningGate()
    at, got, expected = 0, [], []
    while at < len(windows):
        take = int(rng.integers(0, 21))
        got.append(fast.quiet(windows[at : at + take]))
        expected.append(plain.quiet(windows[at : at + take]))
        at += take
    expected_flags = np.concatenate(expected)
    np.testing.assert_array_equal(np.concatenate(got), expected_flags)
    assert 0.2 < expected_flags.mean() < 0.9  # quiet and not quiet both occurred
    fast.reset()
    plain.reset()
    np.testing.assert_array_equal(fast.quiet(windows[-40:]), plain.quiet(windows[-40:]))


def test_the_linear_canceller_passing_silence_at_once_matches_block_by_block(speech_16k) -> None:
    """Far-end speech, then digital silence (and a far end just under SILENT_FAR) in
    stretches of 1 to 7 blocks: pass_silence gives process()'s output and state, bit for
    bit, on silence (one step) and on stretches that are not silent (block by block)."""
    rng = np.random.default_rng(9)
    block = 320
    far = np.concatenate([speech_16k[:16000], np.zeros(9600, np.float32),
                          np.full(3200, 0.5 * SILENT_FAR, np.float32),
                          speech_16k[16000:24000], np.zeros(12800, np.float32)])
    far = far[: len(far) // block * block]
    near = 0.25 * np.concatenate([np.zeros(480, np.float32), far[:-480]])
    near += (rng.standard_normal(len(far)) * 1e-3).astype(np.float32)
    class Counting(LinearEchoCanceller):
        blocks = 0

        def process(self, near, far, *, adapt=True):
            Counting.blocks += 1
            return super().process(near, far, adapt=adapt)

    fast, plain = Counting(4, block), LinearEchoCanceller(4, block)
    at = 0
    while at < len(far):
        take = int(rng.integers(1, 8)) * block
        part = slice(at, min(len(far), at + take))
        got = fast.pass_silence(near[part], far[part])
        expected = np.concatenate([plain.process(near[i : i + block], far[i : i + block])
                                   for i in range(part.start, part.stop, block)])
        np.testing.assert_array_equal(got, expected)
        assert fast.double_talk == plain.double_talk
        at = part.stop
    for name in ("_weights", "_far_spectra", "_far_power", "_far_tail", "_far_peaks",
                 "echo_estimate"):
        np.testing.assert_array_equal(getattr(fast, name), getattr(plain, name))
    # Both ways were taken: block by block over the speech, at once over silence.
    assert len(far) // block // 2 < Counting.blocks < len(far) // block - 30
    with pytest.raises(ValueError, match="whole blocks"):
        fast.pass_silence(near[:100], far[:100])


class PlainMixer(Mixer):
    """Always sums the parts, as before ``summed=False`` (the chain ignores its sum)."""

    def render(self, n, clock_lead=0, *, summed=True):
        block = super().render(n, clock_lead, summed=True)
        assert block.mix is not None
        return block


class PlainChain(MixChain):
    """The chain's plain paths: the mixer's sum, a copy of the parts, and ndarray.max/min
    for the device blocks' peaks."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self._mixer = PlainMixer()

    def _resample_pending(self, name):
        blocks = self._raw[name]
        if not blocks:
            return
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        blocks.clear()
        if joined.size:
            top, bottom = float(joined.max()), float(joined.min())
            if not (np.isfinite(top) and np.isfinite(bottom)):
                self._trackers[name].note_clips(int(np.count_nonzero(~np.isfinite(joined))))
                joined = np.nan_to_num(joined, nan=0.0, posinf=0.0, neginf=0.0)
                top, bottom = float(joined.max()), float(joined.min())
            if top >= CLIP_LEVEL or bottom <= -CLIP_LEVEL:
                self._trackers[name].note_clips(count_clips(joined))
        resampler = self._resamplers[name]
        self._mixer.push(name, resampler.process_valid(joined), resampler.pending_samples)

    def _cancel_echo(self, block, n):
        block = MixBlock(block.mix, dict(block.parts))  # the mixer's dict left alone
        return super()._cancel_echo(block, n)


def test_the_chain_with_the_mixer_unsummed_gives_the_plain_chains_output(
        speech_16k) -> None:
    """A whole session through both chains: speech on the mic, its echo and noise on the
    system lane (stereo 48 kHz, with digital silence, a clipped and a NaN block), the
    canceller switched on, off and on again, a third source, a mute: every frame, every
    part of every rendered block and the levels are the same, bit for bit."""
    rng = np.random.default_rng(11)
    far16 = np.tile(speech_16k, 3)[: 16000 * 9]
    seconds = len(far16) / 16000
    # The speakers reach the mic 100 ms late, 10 dB down; the person talks at 6-7 s.
    mic = 0.3 * np.concatenate([np.zeros(1600, np.float32), far16[:-1600]])
    mic[16000 * 6 : 16000 * 7] += 0.5 * far16[16000 * 2 : 16000 * 3]
    mic = (mic + rng.standard_normal(len(mic)) * 1e-3).astype(np.float32)
    system = np.repeat(far16, 3)[:, None] * np.array([[1.0, 0.9]])
    system = (system + rng.standard_normal(system.shape) * 1e-3).astype(np.float32)
    system[48000 * 7 : 48000 * 8] = 0.0  # digital silence: the canceller rests
    system[48000 * 5 : 48000 * 5 + 480, 0] = 1.5  # clipped
    system[48000 * 6 + 100, 1] = np.nan  # a broken driver
    chains = [MixChain(start_time=1.0), PlainChain(start_time=1.0)]
    outputs: list[list] = [[], []]
    for chain, out in zip(chains, outputs, strict=True):
        chain.add_source("mic", 16000, 1)
        chain.add_source("system", 48000, 2)
        chain.add_source("room", 16000, 1)
        chain.set_gain_db("system", -3.0)
        chain.set_vad(True)
        for step in range(int(seconds * 50)):  # 20 ms device blocks, the worker's ticks
            chain.push("mic", mic[step * 320 : (step + 1) * 320, None])
            chain.push("system", system[step * 960 : (step + 1) * 960])
            if step < 100:
                chain.push("room", mic[step * 320 : (step + 1) * 320, None] * 0.1)
            if step == 100:
                chain.remove_source("room")
            if step in (180, 300):
                chain.set_echo_cancel("on")
            if step == 260:
                chain.set_echo_cancel("off")
            if step == 420:
                chain.set_muted("mic", True)
            for frame in chain.render(320):
                out.append((frame.seq, frame.pcm, frame.speech))
            block = chain.last_block
            if block is not None:
                out.append(block.mix.tobytes())
                for name, part in sorted(block.parts.items()):
                    out.append((name, part.raw.tobytes(), part.gained.tobytes(), part.delivered))
            out.append(repr(sorted(chain.levels().items())))
        out.extend((f.seq, f.pcm, f.speech) for f in chain.finish())
    assert len(outputs[0]) == len(outputs[1])
    for got, expected in zip(*outputs, strict=True):
        assert got == expected
    frames = [item for item in outputs[0] if isinstance(item, tuple) and len(item) == 3
              and isinstance(item[0], int)]
    assert len(frames) >= 10 * seconds and any(speech for _, _, speech in frames)
    assert chains[0].echo_score.reaches_mic  # the canceller followed the echo's delay
    levels = chains[0].levels()
    assert levels["system"].clip_count >= 481  # the clipped and NaN blocks were counted


def test_the_drift_windows_level_is_numpys_80th_percentile_bit_for_bit() -> None:
    """drift.window_level in plain floats against np.percentile (linear), on windows of
    1 to 60 latencies in samples: fractional, whole, equal, far apart."""
    rng = np.random.default_rng(4)
    for n in list(range(1, 61)) * 60:
        values = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 3000.0])
                  + rng.choice([0.0, 3200.5])).tolist()
        if rng.random() < 0.3:
            values = [float(round(v)) for v in values]
        expected = float(np.percentile(np.asarray(values, dtype=np.float64), 80.0))
        assert drift.window_level(values) == expected
