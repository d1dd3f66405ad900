"""The mic and system lanes stay on one timeline whatever the mic lane's processing does.

WebRTC's noise suppressor delivers 6 ms (96 samples) late and AEC3 8 ms. A click played
into both lanes at the same instant must come out at the same sample of both tracks
with noise suppression on, off, and switched during the recording; a switch must
neither move the lane nor lose or insert a sample (dsp/noise.py says why it crossfades
at a constant delay instead of moving the system lane). Deterministic: the chain is fed
16 kHz blocks by sample count, as tests/dsp/test_echo.py does.
"""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.constants import FRAME_SAMPLES, SAMPLE_RATE_HZ
from meetcap.dsp.chain import ECHO_OFF, ECHO_ON, MixChain
from meetcap.dsp.noise import FADE_SAMPLES, LaneNoiseSuppressor, ns_delay_samples
from meetcap.dsp.normalize import Normalizer
from meetcap.dsp.tracks import TRACK_CHANNELS
from tests.dsp.signals import noise

UNIT = FRAME_SAMPLES  # the worker renders 100 ms units
SECONDS = 4.0
N = int(SECONDS * SAMPLE_RATE_HZ)
SEARCH = UNIT * 3  # a click leaves within this (the mixer's margin and the stage delays)
SWITCH_ON_UNIT, SWITCH_OFF_UNIT = 12, 27  # 1.2 s and 2.7 s into the recording
# The click captured 2.5 ms before the mixer hands out the unit rendered at the switch
# off (its 200 ms margin earlier): when the switch comes, it sits inside the mic lane's
# delays (AEC3's 8 ms then the suppressor's 6 ms), where a dropped suppressor took it.
HELD_CLICK = SWITCH_OFF_UNIT * UNIT - 3200 - 200
# A click every 0.25 s (not on a unit boundary), that one, and one 40 samples before the
# end: the last captured samples must leave too (finish() plays out every delay).
# (none within SEARCH of another, so each click's search finds only its own)
CLICKS = np.array(sorted(
    [at for at in range(1234, N - 2 * SEARCH, SAMPLE_RATE_HZ // 4)
     if abs(at - HELD_CLICK) >= SEARCH] + [HELD_CLICK, N - 40]))
CLICK = 0.5


def lanes() -> tuple[np.ndarray, np.ndarray]:
    """Room noise (different in each lane, far under the clicks) and the same clicks."""
    mic = noise(SECONDS, -60.0, seed=21)[:N]
    system = noise(SECONDS, -60.0, seed=22)[:N]
    for lane in (mic, system):
        lane[CLICKS] += CLICK
    return mic, system


def record(switches: dict[int, bool], *, initially: bool,
           echo_cancel: str = ECHO_OFF) -> tuple[np.ndarray, np.ndarray]:
    """The two tracks (mic, system) of a recording with noise suppression ``initially``
    on or off and set to ``switches[unit]`` before that 100 ms unit is rendered."""
    chain = MixChain(start_time=0.0, normalize=False, tracks=True,
                     echo_cancel=echo_cancel, noise_suppress=initially)
    chain.add_source("mic", SAMPLE_RATE_HZ, 1)
    chain.add_source("system", SAMPLE_RATE_HZ, 1)
    mic, system = lanes()
    frames = []
    for unit, at in enumerate(range(0, N, UNIT)):
        if unit in switches:
            chain.set_noise_suppress(switches[unit])
        chain.push("mic", mic[at : at + UNIT, None])
        chain.push("system", system[at : at + UNIT, None])
        frames += chain.render(UNIT)
    frames += chain.finish()
    pcm = np.frombuffer(b"".join(f.tracks for f in frames), "<i2")
    both = pcm.reshape(-1, TRACK_CHANNELS).astype(np.float32) / 32768.0
    return both[:, 0], both[:, 1]


def click_positions(track: np.ndarray) -> list[int]:
    """Where each click came out: the loudest sample after the instant it was played."""
    return [at + int(np.argmax(np.abs(track[at : at + SEARCH]))) for at in CLICKS]


@pytest.fixture(scope="module")
def plain() -> tuple[np.ndarray, np.ndarray]:
    return record({}, initially=False)


SCHEDULES = {
    "on": ({}, True),
    "switched on mid-recording": ({SWITCH_ON_UNIT: True}, False),
    "switched off mid-recording": ({SWITCH_OFF_UNIT: False}, True),
    "on, off, on again": ({SWITCH_ON_UNIT: True, SWITCH_OFF_UNIT: False, 33: True}, False),
}


def test_without_suppression_a_click_leaves_both_tracks_at_the_same_sample(plain):
    mic, system = plain
    assert click_positions(mic) == click_positions(system)
    assert len(mic) >= N, "every captured sample left in a frame"


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_with_suppression_both_tracks_keep_one_timeline(schedule, plain):
    """On, or switched during the recording: each click sits at the same sample in both
    tracks, and at the same sample as without suppression (nothing moved)."""
    switches, initially = SCHEDULES[schedule]
    mic, system = record(switches, initially=initially)
    expected = click_positions(plain[1])
    assert click_positions(system) == expected
    assert click_positions(mic) == expected, "the mic lane moved against the system lane"
    # The suppressor took the clicks down (it ran), they did not vanish.
    peaks = np.abs(mic[click_positions(mic)])
    assert peaks.min() > 0.05


@pytest.mark.parametrize("initially", [False, True], ids=["off-on-off", "on-off"])
def test_switching_loses_and_inserts_nothing(initially, plain):
    """Switched on at 1.2 s (when it starts off) and off at 2.7 s: outside the stretch
    where it was on (and the 10 ms fade after it), the mic track is sample for sample
    the one never switched; dropping or inserting even one sample would shift
    everything after the switch. The click inside the lane's delays when the switch
    goes off comes out too."""
    switches = {SWITCH_OFF_UNIT: False} | ({} if initially else {SWITCH_ON_UNIT: True})
    mic, system = record(switches, initially=initially)
    plain_mic, plain_system = plain
    assert len(mic) == len(plain_mic)
    np.testing.assert_array_equal(system, plain_system)
    # A switch acts on what the chain renders from that unit on (the lanes' timeline
    # positions from unit * UNIT), then the tracks' limiter delays by its look-ahead.
    look_ahead = Normalizer(enabled=False).latency_samples
    on_at = 0 if initially else SWITCH_ON_UNIT * UNIT + look_ahead
    off_done = SWITCH_OFF_UNIT * UNIT + look_ahead + FADE_SAMPLES
    np.testing.assert_array_equal(mic[:on_at], plain_mic[:on_at])
    np.testing.assert_array_equal(mic[off_done:], plain_mic[off_done:])
    assert not np.array_equal(mic[on_at:off_done], plain_mic[on_at:off_done]), "it ran"
    held = click_positions(plain_mic)[list(CLICKS).index(HELD_CLICK)]
    assert abs(mic[held]) > 0.05, "the click held in the lane's delays at the switch"


def test_with_echo_cancellation_on_too_the_lanes_stay_aligned(plain):
    """Both of the mic lane's delays at once (AEC3's and the suppressor's), switched."""
    mic, system = record({SWITCH_ON_UNIT: True}, initially=False, echo_cancel=ECHO_ON)
    assert click_positions(mic) == click_positions(system) == click_positions(plain[1])


def test_the_suppressor_stage_holds_its_delay_for_any_block_sizes():
    """The stage alone, fed in odd sizes (finish() renders such; a stretch not yet a
    whole 10 ms block then plays plain), switched on and off in the middle of a fade
    and of its warm-up: every click leaves exactly ``delay`` samples later."""
    stage = LaneNoiseSuppressor(enabled=False)
    assert stage.delay == ns_delay_samples() == 96  # WebRTC NS at 16 kHz (6 ms)
    mic, _ = lanes()
    out, at = [], 0
    sizes = [1600, 1600, 999, 161, 1600, 37, 1600, 3200]
    toggles = {2: True, 4: False, 5: True, 6: False, 7: True}
    step = 0
    while at < N:
        if step in toggles:
            stage.set_enabled(toggles[step])
        size = sizes[step % len(sizes)]
        out.append(stage.process(mic[at : at + size]))
        at += size
        step += 1
    out.append(stage.process(np.zeros(stage.delay, np.float32)))
    lane = np.concatenate(out)[stage.delay :]
    assert len(lane) == N
    # (clicks 0.25 s apart: found where the lane rises above the -60 dBFS room noise)
    assert np.flatnonzero(np.abs(lane) > 0.1).tolist() == CLICKS.tolist()
    assert np.abs(lane[CLICKS[-4:]]).max() < 0.4, "suppressed (it ran)"


# --- the lanes kept together (meetcap/audio/lane_alignment.py) ---------------------


class _DelayInRing:
    """What LaneAligner needs of a MixChain, over drive()'s devices: the mixer, and
    silence written into a device's ring (through its resampler, as delay_source does)."""

    def __init__(self, mixer, devices) -> None:
        self.mixer, self._devices = mixer, devices

    def delay_source(self, name: str, seconds: float) -> None:
        self._devices[name]._ring.append(np.zeros(round(seconds * 48000), np.float32))


def _lanes_apart(seed: int, *, align: bool, pause=None, seconds: float = 10.0):
    """Clicks at the same instants in two lanes delivered differently (the mic in 60 ms
    bursts, the system in 20 ms blocks, each at its own phase and latency): the mic's
    place minus the system's beyond what their servers handed over apart (samples), the
    clicks' times (s), and the aligner."""
    from meetcap.audio.lane_alignment import LaneAligner
    from meetcap.audio.lost_samples import LostSampleDetector
    from meetcap.dsp.mixer import Mixer
    from tests.dsp.delivery import ClickDevice, Delivery, drive

    clicks = np.arange(0.5, seconds - 0.5, 0.25) + 0.0077
    if pause is not None:
        clicks = clicks[(clicks < pause[0] - 0.01) | (clicks > pause[1] + 0.01)]
    rng = np.random.default_rng(seed)
    devices = {
        "mic": ClickDevice(48000, clicks, seed=1, detector=LostSampleDetector(48000), pause=pause,
                           delivery=Delivery(latency_s=0.010 + rng.uniform(0, 0.02),
                                             burst_blocks=3)),
        "system": ClickDevice(48000, clicks, seed=2, detector=LostSampleDetector(48000),
                              pause=pause,
                              delivery=Delivery(latency_s=0.010 + rng.uniform(0, 0.02))),
    }
    mixer = Mixer()
    aligner = LaneAligner()
    chain = _DelayInRing(mixer, devices)
    detectors = {name: d.detector for name, d in devices.items()}
    run = drive(mixer, devices, seconds, seed=seed, keep_parts=True, callback_s=0.001,
                every_tick=(lambda now: aligner.check(chain, detectors, 0.0, now)) if align
                else None)
    where = {}
    for name in devices:
        lane = np.concatenate([p.raw for p in run.parts[name]])
        hits = np.flatnonzero(np.abs(lane) > 0.05)
        where[name] = hits[np.diff(hits, prepend=-(10**9)) > 40].astype(float)
    n = min(len(where["mic"]), len(where["system"]))
    # The servers handed the clicks over this far apart (the latencies differ on
    # purpose): the lanes should be apart by exactly that, no more.
    handed = devices["mic"].delivery.latency_s - devices["system"].delivery.latency_s
    apart = where["mic"][:n] - where["system"][:n] - round(handed * SAMPLE_RATE_HZ)
    return apart, where["system"][:n] / SAMPLE_RATE_HZ, aligner, mixer


@pytest.mark.parametrize("seed", range(6))
def test_the_lanes_starts_are_aligned_on_their_deliveries(seed) -> None:
    """Each lane primes wherever its delivery burst falls, so the lanes start up to a
    burst apart (-19 to +26 ms measured on PipeWire); once both delivery floors are known
    the earlier lane is delayed by the difference and a sound handed over at the same
    instant sits at the same sample in both."""
    before, times, _, _ = _lanes_apart(seed, align=False)
    after, times_after, aligner, _ = _lanes_apart(seed, align=True)
    before, after = before[times > 3.0], after[times_after > 3.0]
    print(f"\nseed {seed}: lanes apart beyond the handover, before {np.unique(before)}, after "
          f"{np.unique(after)} samples; waits {aligner.waits}, delays {aligner.delays}")
    assert aligner.done
    # Within 1 ms (16 samples): the synthetic callbacks come every 1 ms, so that is how
    # well each delivery floor is known here.
    assert np.all(np.abs(after) <= 16)
    assert np.all(np.abs(before) <= 16) or np.max(np.abs(after)) < np.max(np.abs(before))


@pytest.mark.parametrize("seed", range(4))
def test_after_both_lanes_ran_dry_in_a_pause_they_are_aligned_again(seed) -> None:
    """The server's clock pauses 300 ms (beyond the 200 ms margin): both lanes run dry,
    each is zero-filled until it primes again at its own reference, and they come out of
    it apart; once both play again (and 1 s without another dry-out) the earlier is
    delayed by the difference."""
    pause = (6.0, 6.3)
    after, times, aligner, mixer = _lanes_apart(seed, align=True, pause=pause, seconds=14.0)
    plain, plain_times, _, _ = _lanes_apart(seed, align=False, pause=pause, seconds=14.0)
    late = times > pause[1] + 3.0
    print(f"\nseed {seed}: dry-outs {[mixer.lane(n).underruns for n in mixer.sources]}; lanes "
          f"apart after the pause {np.unique(after[late])} (not aligned: "
          f"{np.unique(plain[plain_times > pause[1] + 3.0])}) samples; aligned {aligner.aligned}")
    assert all(mixer.lane(n).underruns >= 1 for n in mixer.sources)
    assert len(aligner.aligned) >= 2
    assert np.all(np.abs(after[late]) <= 16)


def _steady_share(trace: str, start_s: float, stop_s: float) -> float:
    """How often both lanes' delivery floors held still (LaneAligner's condition), every
    50 ms between ``start_s`` and ``stop_s`` of a real traced run (tests/data)."""
    from pathlib import Path

    from meetcap.audio.lane_alignment import floor_is_steady
    from meetcap.audio.lost_samples import LostSampleDetector

    data = np.load(Path(__file__).parent.parent / "data" / f"{trace}.npz")
    detectors = [LostSampleDetector(48000), LostSampleDetector(48000)]
    steady, next_check = [], start_s
    times = data["block_t_us"] / 1e6  # the app's floors hold within 0.1 ms: whole ms won't do
    for i in np.argsort(times, kind="stable"):
        t = float(times[i])
        detectors[int(data["block_lane"][i])].on_block(int(data["block_frames"][i]), t)
        if start_s <= t < stop_s and t >= next_check:
            next_check = t + 0.05
            steady.append(all(floor_is_steady(d.history(), t) for d in detectors))
    return float(np.mean(steady))


def test_the_delivery_floor_is_a_clock_on_pipewire_and_not_on_pulseaudio() -> None:
    """What the alignment stands on: PipeWire's floors hold within 1 ms over a second
    (a real run without a stall); PulseAudio's ramp 15 ms over 3-5 s and drop back, each
    lane at its own phase (a real keep_time run): not a clock to align the lanes to."""
    pipewire = _steady_share("mixtrace_pipewire_steady", 4.0, 60.0)
    pulseaudio = _steady_share("mixtrace_pulseaudio_floor_ramps", 4.0, 30.0)
    print(f"\nboth floors steady: PipeWire {pipewire:.0%}, PulseAudio {pulseaudio:.0%} of checks")
    assert pipewire >= 0.95
    assert pulseaudio <= 0.05
