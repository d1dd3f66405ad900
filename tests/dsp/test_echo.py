"""The echo score and the mic lane's echo canceller on espeak-ng speech with a made echo
path (delay + loss, as PulseAudio's module-loopback makes it on the real rig, which
tests/audio/test_echo_pulseaudio.py runs). Each test uses a few seconds of audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.chain import ECHO_AUTO, ECHO_OFF, ECHO_ON, MixChain
from meetcap.dsp.echo import (
    LINEAR_BLOCK,
    PRIME_S,
    REST_AFTER_S,
    DelayLine,
    MicEchoCanceller,
)
from meetcap.dsp.echo_score import CLEAN, REACHES_MIC, UNKNOWN, EchoPathEstimator
from meetcap.dsp.linear_aec import SILENT_FAR
from meetcap.dsp.mixer import DEFAULT_TARGET_LATENCY_MS
from tests.dsp.signals import noise, speech_like
from tests.support.echo_rig import double_talk_figures, erle_db

UNIT = 1600  # the chain's 100 ms render unit
LEAD = SAMPLE_RATE_HZ  # a second before the remote voice starts


@pytest.fixture(scope="module")
def remote(espeak_utterance) -> np.ndarray:
    samples, rate = espeak_utterance
    voice = soxr.resample(samples, rate, SAMPLE_RATE_HZ).astype(np.float32)
    # A meeting starts quiet: AEC3 settles on the first second (without it, it removes
    # ~25 dB on this made path instead of ~35 dB).
    return np.concatenate((np.zeros(LEAD, np.float32), 0.5 * voice / np.abs(voice).max()))


@pytest.fixture(scope="module")
def echo_rig_pauses() -> tuple[np.ndarray, np.ndarray]:
    with np.load(Path(__file__).parents[1] / "data" / "echo_rig_pauses.npz") as data:
        return (data["mic"].astype(np.float32) / 32767, data["system"].astype(np.float32) / 32767)


def with_echo(far: np.ndarray, delay_ms: float, loss_db: float) -> np.ndarray:
    delay = int(delay_ms * SAMPLE_RATE_HZ / 1000)
    echo = np.zeros_like(far)
    echo[delay:] = far[: len(far) - delay] * 10 ** (-loss_db / 20)
    return echo


def run(canceller: MicEchoCanceller, mic: np.ndarray, far: np.ndarray) -> np.ndarray:
    out = np.concatenate([canceller.process(mic[i : i + UNIT], far[i : i + UNIT])
                          for i in range(0, len(mic), UNIT)])
    lag = canceller.latency_samples
    return np.concatenate((out[lag:], np.zeros(lag, np.float32)))


def test_the_score_finds_the_echo_delay_and_level(remote):
    estimator = EchoPathEstimator()
    mic = with_echo(remote, 120.0, 15.0) + noise(len(remote) / SAMPLE_RATE_HZ, -60.0)
    for i in range(0, LEAD + 3 * SAMPLE_RATE_HZ, UNIT):
        estimator.process(mic[i : i + UNIT], remote[i : i + UNIT])
    score = estimator.score
    assert score.verdict == REACHES_MIC
    assert score.delay_ms == pytest.approx(120.0, abs=1.0)
    assert score.level_db == pytest.approx(-15.0, abs=1.0)


def test_the_score_reads_clean_when_the_system_audio_does_not_reach_the_mic(remote):
    estimator = EchoPathEstimator()
    room = noise(len(remote) / SAMPLE_RATE_HZ, -65.0, seed=3)  # a headset: the room only
    for i in range(0, LEAD + 3 * SAMPLE_RATE_HZ, UNIT):
        estimator.process(room[i : i + UNIT], remote[i : i + UNIT])
    assert estimator.score.verdict == CLEAN


def test_two_people_talking_at_once_are_not_an_echo(speech_files):
    """The person talks over the remote voice through a headset: their voices correlate
    a little at some delay, which once read "reaches the mic" (and "auto" then cancelled
    a clean microphone). Until the person pauses, the score cannot tell; it must not
    claim an echo."""
    person = soxr.resample(speech_files["mic"].samples, 48_000, SAMPLE_RATE_HZ)
    other = soxr.resample(speech_files["system"].samples, 48_000, SAMPLE_RATE_HZ)
    n = min(len(person), len(other)) // UNIT * UNIT
    estimator = EchoPathEstimator()
    verdicts = set()
    for i in range(0, n, UNIT):
        estimator.process(person[i : i + UNIT].astype(np.float32),
                          other[i : i + UNIT].astype(np.float32))
        verdicts.add(estimator.score.verdict)
    assert REACHES_MIC not in verdicts


def test_the_score_waits_while_the_system_audio_is_silent():
    estimator = EchoPathEstimator()
    person, _ = speech_like(3.0, -25.0, seed=3)
    silent = np.zeros_like(person)
    for i in range(0, len(person), UNIT):
        estimator.process(person[i : i + UNIT], silent[i : i + UNIT])
    assert estimator.score.verdict == UNKNOWN


def test_remote_speech_only_is_cancelled_by_25_db_after_2_s(remote):
    mic = with_echo(remote, 150.0, 12.0) + noise(len(remote) / SAMPLE_RATE_HZ, -70.0)
    canceller = MicEchoCanceller(enabled=True)
    out = run(canceller, mic, remote)
    after = slice(LEAD + 2 * SAMPLE_RATE_HZ, len(mic))
    erle = erle_db(mic[after], out[after])
    print(f"\nERLE {erle:.1f} dB (made echo path, 150 ms, -12 dB)")
    assert erle >= 25.0


class WithoutGeigel(MicEchoCanceller):
    """The talk verdict from AEC3's output alone (as before the Geigel test joined it)."""

    def _follow_delay(self) -> None:
        super()._follow_delay()
        self._geigel_trusted = False


@pytest.mark.parametrize("loss_db", [3.0, 0.0])
def test_speakers_turned_up_do_not_read_as_the_person_talking(remote, loss_db):
    """An echo at -3 or 0 dB (speakers loud, mic close) is louder than the linear
    filter's Geigel test allows for an echo: it must not read as the person talking
    (the linear output then replaced AEC3's: ERLE 0.0-0.2 dB). The lane is exactly what
    the talk verdict from AEC3's output alone gives."""
    mic = with_echo(remote, 150.0, loss_db) + noise(len(remote) / SAMPLE_RATE_HZ, -70.0)
    canceller = MicEchoCanceller(enabled=True)
    out = run(canceller, mic, remote)
    np.testing.assert_array_equal(out, run(WithoutGeigel(enabled=True), mic, remote))
    assert canceller.score.reaches_mic and not canceller._geigel_trusted
    after = slice(LEAD + 2 * SAMPLE_RATE_HZ, len(mic))
    print(f"\nERLE {erle_db(mic[after], out[after]):.1f} dB (made echo path, 150 ms, "
          f"-{loss_db:g} dB)")


def test_the_geigel_test_is_trusted_on_an_echo_well_below_the_far_end(remote):
    mic = with_echo(remote, 150.0, 12.0)
    canceller = MicEchoCanceller(enabled=True)
    run(canceller, mic, remote)
    assert canceller._geigel_trusted


def test_double_talk_keeps_the_persons_voice(remote):
    person, _ = speech_like(len(remote) / SAMPLE_RATE_HZ, -22.0, seed=5)
    person[: LEAD + 2 * SAMPLE_RATE_HZ] = 0.0  # the remote side alone first, then both
    mic = with_echo(remote, 150.0, 12.0) + person
    canceller = MicEchoCanceller(enabled=True)
    out = run(canceller, mic, remote)
    both = slice(LEAD + 2 * SAMPLE_RATE_HZ, len(mic) - SAMPLE_RATE_HZ)
    correlation, level_db = double_talk_figures(out[both], person[both])
    print(f"\ndouble talk: correlation {correlation:.3f}, level {level_db:+.1f} dB")
    assert correlation >= 0.9
    assert level_db > -3.0


def test_the_first_syllable_after_a_pause_keeps_its_level_in_double_talk(remote):
    """AEC3's suppressor cuts the start of a syllable that follows a pause while the far
    end plays (it lets the voice through only once it has heard it); the canceller must
    switch to the linear filter's output from the first block of it. Judged over the
    first 40 ms of every syllable that starts after 50 ms of pause: the median was
    15.7 dB down before the fix, -0.1 dB after (and test_double_talk_keeps_the_persons_
    voice read 0.924, -1.5 dB before, 1.000, -0.0 dB after)."""
    far = np.concatenate((remote, remote[LEAD:]))
    person, active = speech_like(len(far) / SAMPLE_RATE_HZ, -22.0, seed=5)
    start = LEAD + 2 * SAMPLE_RATE_HZ
    person[:start] = 0.0
    active[:start] = False
    mic = with_echo(far, 150.0, 12.0) + person
    out = run(MicEchoCanceller(enabled=True), mic, far)
    pause, first = SAMPLE_RATE_HZ // 20, 640
    onsets = [i for i in range(start + pause, len(mic) - SAMPLE_RATE_HZ)
              if active[i] and not active[i - pause : i].any()]
    levels_db = []
    for at in onsets:
        got, clean = out[at : at + first], person[at : at + first]
        gain = float(np.dot(got, clean) / np.dot(clean, clean))
        levels_db.append(20 * np.log10(max(abs(gain), 1e-9)))
    print(f"\n{len(onsets)} syllable onsets in double talk: median {np.median(levels_db):+.1f} "
          f"dB, worst {min(levels_db):+.1f} dB over their first 40 ms")
    assert len(onsets) >= 6
    assert np.median(levels_db) > -3.0


def test_an_echo_starting_after_a_pause_is_not_taken_for_the_person(echo_rig_pauses):
    """Real lanes (tests/data/echo_rig_pauses.npz: recorded on the rig of
    tests/support/echo_rig.py, echo path 100 ms / -15 dB, through the chain with
    cancellation off, as 16-bit): the remote voice, 3 s in which only the person
    talks, the remote voice again. AEC3 passes the first 10-20 ms of the echo that
    starts after the pause; that read as the person talking and held the linear
    output (which removes far less) for 100 ms: the whole last voice kept 16.9 dB of
    ERLE instead of 38.9 (AEC3 alone there: 43 dB)."""
    mic, system = echo_rig_pauses
    canceller = MicEchoCanceller(enabled=True)
    out = run(canceller, mic, system)
    active = np.abs(system[: len(system) // 160 * 160]).reshape(-1, 160).max(axis=1) > 1e-3
    # The last remote voice: after the longest silence of the system lane.
    silent = np.flatnonzero(~active)
    gaps = np.split(silent, np.flatnonzero(np.diff(silent) > 1) + 1)
    longest = max((g for g in gaps if g[-1] + 1 < len(active)), key=len)
    start, stop = (longest[-1] + 1) * 160, len(mic) - UNIT  # (the recording ends with it)
    assert stop - start > 2 * SAMPLE_RATE_HZ and len(longest) > 250  # 2 s of voice, pause > 2.5 s
    erle = erle_db(mic[start:stop], out[start:stop])
    print(f"\nERLE {erle:.1f} dB over the {(stop - start) / SAMPLE_RATE_HZ:.1f} s of remote voice "
          f"after a {len(longest) / 100:.1f} s pause")
    assert erle >= 30.0


def test_off_only_delays_the_lane_and_loses_nothing():
    canceller = MicEchoCanceller(enabled=False)
    mic = noise(0.5, -20.0, seed=1)
    out = np.concatenate([canceller.process(mic[i : i + 1000], np.zeros(1000, np.float32))
                          for i in range(0, len(mic), 1000)]
                         + [canceller.process(np.zeros(canceller.latency_samples, np.float32),
                                              np.zeros(canceller.latency_samples, np.float32))])
    np.testing.assert_array_equal(out[canceller.latency_samples:], mic)


def test_turning_the_canceller_on_mid_stream_drops_no_sample():
    canceller = MicEchoCanceller(enabled=False)
    mic = noise(0.4, -20.0, seed=2)
    silent = np.zeros(UNIT, np.float32)
    first = canceller.process(mic[:UNIT], silent)
    canceller.set_enabled(True)
    rest = [canceller.process(mic[i : i + UNIT], silent) for i in range(UNIT, len(mic), UNIT)]
    out = np.concatenate([first, *rest])
    lag = canceller.latency_samples
    # No far end: AEC3 passes the mic (after its high-pass), the linear filter untouched.
    assert np.corrcoef(out[lag + UNIT : len(mic)], mic[UNIT : len(mic) - lag])[0, 1] > 0.95
    np.testing.assert_array_equal(out[lag:UNIT], mic[: UNIT - lag])


def test_delay_line():
    line = DelayLine(3)
    assert line.process(np.arange(1, 6, dtype=np.float32)).tolist() == [0, 0, 0, 1, 2]
    assert line.process(np.zeros(4, np.float32)).tolist() == [3, 4, 5, 0]


def chain_with_echo(mode: str, remote: np.ndarray) -> tuple[MixChain, np.ndarray]:
    chain = MixChain(start_time=0.0, normalize=False, echo_cancel=mode)
    chain.add_source("mic", SAMPLE_RATE_HZ, 1)
    chain.add_source("system", SAMPLE_RATE_HZ, 1)
    chain.set_muted("system", True)  # the mix is then the mic lane alone
    mic = with_echo(remote, 80.0, 15.0)
    mix = []
    for i in range(0, len(remote), UNIT):
        chain.push("mic", mic[i : i + UNIT, None])
        chain.push("system", remote[i : i + UNIT, None])
        chain.render(UNIT)
        mix.append(chain.last_block.mix)
    return chain, np.concatenate(mix)


@pytest.mark.parametrize("mode", [ECHO_AUTO, ECHO_ON, ECHO_OFF])
def test_the_chain_cancels_the_mic_lane_as_its_mode_says(mode, remote):
    chain, mix = chain_with_echo(mode, remote)
    levels = chain.levels()["mic"]
    assert levels.echo == REACHES_MIC
    assert levels.echo_db == pytest.approx(-15.0, abs=1.5)
    assert levels.echo_cancel is (mode != ECHO_OFF)
    tail = slice(len(mix) - 2 * SAMPLE_RATE_HZ, len(mix))
    mic = with_echo(remote, 80.0, 15.0)
    # The same instant of the mic: the mix holds it the mixer's margin and the echo
    # stage's delay late (compared unaligned, the off case read -0.5 dB, not 0).
    lag = round(DEFAULT_TARGET_LATENCY_MS * SAMPLE_RATE_HZ / 1000) + chain._echo.latency_samples
    reduction = erle_db(mic[tail.start - lag : tail.stop - lag], mix[tail])
    if mode == ECHO_OFF:
        assert abs(reduction) < 0.5
    else:
        # "auto" starts the canceller mid-voice, once the score has spoken; AEC3 gets
        # ~24 dB on this made path (50+ on the real rig: tests/audio/test_echo_pulseaudio.py
        # holds the 25 dB target). Here: the chain runs it, and the echo is well down.
        assert reduction >= 12.0


def test_the_chain_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="auto, on, off"):
        MixChain(start_time=0.0, echo_cancel="yes")


def test_once_the_echo_is_in_aec3_rests_and_wakes_at_the_next_sound(remote):
    """While nothing plays the microphone passes untouched (AEC3 is not run: half its
    CPU in a meeting); when the system audio plays again the echo is cancelled again."""
    gap = np.zeros(3 * SAMPLE_RATE_HZ, np.float32)
    far = np.concatenate((remote, gap, remote[LEAD:]))
    person, _ = speech_like(len(gap) / SAMPLE_RATE_HZ, -25.0, seed=9)
    mic = with_echo(far, 120.0, 12.0)
    mic[len(remote) : len(remote) + len(gap)] += person
    canceller = MicEchoCanceller(enabled=True)
    out = run(canceller, mic, far)
    resting = slice(len(remote) + int(REST_AFTER_S * SAMPLE_RATE_HZ) + UNIT,
                    len(remote) + len(gap))
    np.testing.assert_array_equal(out[resting], mic[resting])
    again = slice(len(remote) + len(gap) + SAMPLE_RATE_HZ, len(far) - SAMPLE_RATE_HZ)
    assert erle_db(mic[again], out[again]) >= 12.0


class RecordingAec3:
    """The real AEC3 of a canceller, with what it was given and gave back kept."""

    def __init__(self, aec3) -> None:
        self.aec3 = aec3
        self.near: list[np.ndarray] = []
        self.far: list[np.ndarray] = []
        self.out: list[np.ndarray] = []

    def process(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        out = self.aec3.process(near, far)
        self.near.append(near.copy())
        self.far.append(far.copy())
        self.out.append(out.copy())
        return out


def aec3_fed(pause_s: float, remote: np.ndarray) -> tuple[RecordingAec3, np.ndarray, np.ndarray]:
    """The remote voice, ``pause_s`` of silence on the system lane (the voice's own
    trailing silence and a gap; the person talks in it), the voice again, through a
    canceller whose AEC3 is recorded; returns it with the mic and far lanes."""
    voice_end = int(np.flatnonzero(np.abs(remote) >= SILENT_FAR)[-1]) + 1
    gap = np.zeros(int(pause_s * SAMPLE_RATE_HZ) - (len(remote) - voice_end), np.float32)
    far = np.concatenate((remote, gap, remote[LEAD:]))
    person, _ = speech_like(len(gap) / SAMPLE_RATE_HZ, -25.0, seed=4)
    mic = with_echo(far, 120.0, 12.0) + noise(len(far) / SAMPLE_RATE_HZ, -65.0, seed=6)
    mic[len(remote) : len(remote) + len(gap)] += person
    canceller = MicEchoCanceller(enabled=True)
    recorder = RecordingAec3(canceller._aec3)
    canceller._aec3 = recorder
    run(canceller, mic, far)
    return recorder, mic, far


def test_a_rest_shorter_than_the_prime_leaves_aec3_as_if_it_had_never_rested(remote):
    """AEC3 rested (fewer calls than blocks), but when sound came again it was first
    given what it skipped: every sample reached it in order, so every output after the
    pause is bit for bit what an AEC3 that never rested gives."""
    pause_s = REST_AFTER_S + PRIME_S - 0.1
    recorder, mic, far = aec3_fed(pause_s, remote)
    n = len(mic) // LINEAR_BLOCK * LINEAR_BLOCK
    assert len(recorder.near) < n // LINEAR_BLOCK - 10, "AEC3 rested in the pause"
    np.testing.assert_array_equal(np.concatenate(recorder.near)[:n], mic[:n])
    np.testing.assert_array_equal(np.concatenate(recorder.far)[:n], far[:n])
    from pywebrtc_audio import EchoCanceller

    never_rested = EchoCanceller(SAMPLE_RATE_HZ, 1, 0)
    expected = np.concatenate([never_rested.process(mic[i : i + LINEAR_BLOCK],
                                                    far[i : i + LINEAR_BLOCK])
                               for i in range(0, n, LINEAR_BLOCK)])
    np.testing.assert_array_equal(np.concatenate(recorder.out)[:n], expected)


def test_after_a_long_rest_aec3_is_first_given_the_last_second_it_skipped(remote):
    """A long pause: AEC3 skips its middle, and before the next sound it gets the
    PRIME_S just before it (the echo of the coming sound lines up with a silent past,
    as it is in the room), never the sound from before the pause."""
    pause_s = 4.0
    recorder, mic, far = aec3_fed(pause_s, remote)
    # Where the second voice starts on the system lane: AEC3 wakes in that 20 ms block.
    sound_again = len(far) - len(remote) + LEAD
    sound_again += int(np.flatnonzero(np.abs(far[sound_again:]) >= SILENT_FAR)[0])
    woke = sound_again // LINEAR_BLOCK * LINEAR_BLOCK
    prime = int(PRIME_S * SAMPLE_RATE_HZ)
    sizes = [len(near) for near in recorder.near]
    primed = max(i for i, size in enumerate(sizes) if size > LINEAR_BLOCK)  # the last prime
    before = sum(sizes[:primed])  # AEC3 got the mic from the start up to the rest
    np.testing.assert_array_equal(np.concatenate(recorder.near[:primed]), mic[:before])
    assert woke - prime - before >= (pause_s - REST_AFTER_S - PRIME_S - 0.1) * SAMPLE_RATE_HZ
    np.testing.assert_array_equal(recorder.near[primed], mic[woke - prime : woke])
    np.testing.assert_array_equal(recorder.far[primed], far[woke - prime : woke])
    after = np.concatenate(recorder.near[primed + 1 :])
    np.testing.assert_array_equal(after[:SAMPLE_RATE_HZ], mic[woke : woke + SAMPLE_RATE_HZ])


class BlockByBlockCanceller(MicEchoCanceller):
    """The plain path: every rendered block through _cancel 20 ms at a time, also while
    AEC3 rests through a silent system lane (no _rest_unit)."""

    def _rests_through(self, mic: np.ndarray, far: np.ndarray) -> bool:
        return False


def test_resting_through_whole_blocks_gives_the_lane_and_state_of_the_plain_path(remote):
    """Remote voice, pauses of 0.3 s (no rest), 2 s and 5 s (rests; the person talks in
    one), blocks of 1,600 and odd ones: the output and the state, bit for bit."""
    far = np.concatenate((remote, np.zeros(4800, np.float32), remote[LEAD:],
                          np.zeros(2 * SAMPLE_RATE_HZ, np.float32), remote[LEAD:],
                          np.zeros(5 * SAMPLE_RATE_HZ, np.float32), remote[LEAD:]))
    mic = with_echo(far, 120.0, 12.0) + noise(len(far) / SAMPLE_RATE_HZ, -65.0, seed=8)
    person, _ = speech_like(2.0, -25.0, seed=2)
    talk = len(far) - len(remote) + LEAD - 3 * SAMPLE_RATE_HZ
    mic[talk : talk + len(person)] += person
    fast, plain = MicEchoCanceller(enabled=True), BlockByBlockCanceller(enabled=True)
    rests = 0
    sizes = [UNIT, UNIT, UNIT, 960, UNIT, 2 * UNIT]
    at, i = 0, 0
    while at < len(far):
        size = sizes[i % len(sizes)]
        i += 1
        part = slice(at, at + size)
        rests += fast._rests_through(mic[part], far[part])
        np.testing.assert_array_equal(fast.process(mic[part], far[part]),
                                      plain.process(mic[part], far[part]))
        at += size
    assert rests > 2 * SAMPLE_RATE_HZ // UNIT, "whole blocks rested"
    np.testing.assert_array_equal(fast._linear._weights, plain._linear._weights)
    np.testing.assert_array_equal(fast._linear._far_spectra, plain._linear._far_spectra)
    np.testing.assert_array_equal(fast._far_history, plain._far_history)
    assert (fast._quiet_samples, fast._resting, fast._hold) == (
        plain._quiet_samples, plain._resting, plain._hold)


def test_a_found_echo_reads_clean_only_after_3_s_without_it(remote):
    """Headphones plugged in mid-meeting: the word changes after 3 s of system audio
    without an echo, not at the first window that misses one (auto would flap)."""
    estimator = EchoPathEstimator()
    far = np.concatenate((remote, remote[LEAD:]))
    echo = with_echo(far, 120.0, 15.0)
    room = noise(len(far) / SAMPLE_RATE_HZ, -65.0, seed=4)
    verdicts = []
    for i in range(0, len(far) - UNIT, UNIT):
        mic = echo if i < LEAD + 2 * SAMPLE_RATE_HZ else room  # then headphones
        estimator.process(mic[i : i + UNIT], far[i : i + UNIT])
        verdicts.append((i + UNIT, estimator.score.verdict))
    switch = LEAD + 2 * SAMPLE_RATE_HZ
    assert [v for at, v in verdicts if at == switch] == [REACHES_MIC]
    assert all(v == REACHES_MIC for at, v in verdicts
               if switch <= at < switch + 2.5 * SAMPLE_RATE_HZ)
    assert verdicts[-1][1] == CLEAN


def test_without_pywebrtc_audio_auto_stays_off_and_on_says_what_to_install(monkeypatch, remote):
    """Not a fake of the canceller: the import of pywebrtc-audio is made to fail, as on a
    system where its wheel does not install; capture must go on, and "on" must say why
    it cannot."""
    import meetcap.dsp.echo as echo_module
    from meetcap.errors import ConfigError

    monkeypatch.setattr(echo_module, "_webrtc_available", lambda: False)
    chain, mix = chain_with_echo(ECHO_AUTO, remote)
    levels = chain.levels()["mic"]
    assert levels.echo == REACHES_MIC and not levels.echo_cancel
    with pytest.raises(ConfigError, match="pip install pywebrtc-audio"):
        chain.set_echo_cancel(ECHO_ON)
