"""Samples a sound server never delivered become silence in their lane, so the lanes stay
in step (meetcap/audio/lost_samples.py): synthetic devices and servers (tests/dsp/
delivery.py) that drop samples without a word, the way PipeWire's virtual mic did here,
or pause the whole graph, each through a real Mixer; the real servers are in
test_capture_pulseaudio.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.audio.lost_samples import LostSampleDetector
from meetcap.audio.ringbuffer import AudioRing
from meetcap.dsp.mixer import Mixer
from tests.dsp.delivery import RATE, ClickDevice, Delivery, drive, pair_offsets

SECONDS = 60.0
CLICKS = np.arange(1.0, SECONDS, 1.0)  # mic clicks; the system's come 0.5 s after each
# Bursty, late now and then: the way the servers deliver here (tests/dsp/test_mixer.py).
SERVER = {"burst_blocks": 2, "hiccups_per_s": 1.0}
# The detector sees each block when its callback runs, right as the server hands it
# over: the worker's 50 ms tick would add up to 50 ms of phase to the floor, so the
# devices are polled finely here (the mixer still renders whole 100 ms units).
TICK_S = 0.005


def lanes(*, mic: dict | None = None, system: dict | None = None, pause=None,
          detect: bool = True, fill_unflagged: bool = False, seed: int = 0):
    """Two devices on one clock, each through its own LostSampleDetector (as in
    PortAudioCapture), or none when ``detect`` is False."""

    def detector():
        return LostSampleDetector(48000, fill_unflagged=fill_unflagged) if detect else None

    return {
        "mic": ClickDevice(48000, CLICKS, seed=1, pause=pause, detector=detector(),
                           delivery=Delivery(seed=1 + seed, **SERVER, **(mic or {}))),
        "system": ClickDevice(48000, CLICKS + 0.5, seed=2, pause=pause, detector=detector(),
                              delivery=Delivery(seed=2 + seed, **SERVER, **(system or {}))),
    }


def click_delays(devices) -> dict[str, np.ndarray]:
    """Each lane's click delays (s) through a real Mixer, by true click time."""
    run = drive(Mixer(), devices, SECONDS, seed=7, tick_s=TICK_S, tick_jitter_s=TICK_S / 5)
    return {"mic": pair_offsets(run.clicks_s, CLICKS, 0.45),
            "system": pair_offsets(run.clicks_s, CLICKS + 0.5, 0.45)}


def spread_ms(delays: np.ndarray) -> float:
    return float(np.nanmax(delays) - np.nanmin(delays)) * 1000


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_samples_the_mic_lost_become_silence_and_it_stays_in_step_with_the_system(seed):
    """The mic loses 53 ms at 20 s and 85 ms at 35 s, and PortAudio flags each as an
    input overflow. Without the detector every later click of the mic plays 138 ms
    early; with it, once each loss is found (within 3 s), every click sits where it did
    before, to within 4 ms (the 5 ms poll here quantizes the floor; on PipeWire it held
    within 0.1 ms), and the system lane is not touched."""
    drops = {"drops": ((20.0, 0.053), (35.0, 0.085)), "drops_flagged": True}
    devices = lanes(mic=drops, seed=seed)
    kept = click_delays(devices)
    lost = click_delays(lanes(mic=drops, detect=False, seed=seed))

    settled = (CLICKS < 20.0) | ((CLICKS > 25.0) & (CLICKS < 35.0)) | (CLICKS > 40.0)
    mic, system = devices["mic"].detector, devices["system"].detector
    print(f"\nseed {seed}: mic losses found {mic.losses}, silence written {mic.fills} "
          f"(s, frames at 48 kHz); mic clicks spread {spread_ms(kept['mic'][settled]):.2f} ms "
          f"with the detector, {spread_ms(lost['mic']):.1f} ms without")
    assert spread_ms(lost["mic"]) == pytest.approx(138, abs=2)  # the control: it does move
    assert not np.isnan(kept["mic"][settled][:-1]).any()
    assert spread_ms(kept["mic"][settled]) <= 4.0
    assert [at for at, _ in mic.fills] == pytest.approx([21.0, 36.0], abs=1.5)
    assert mic.silence_frames == pytest.approx(0.138 * 48000, abs=0.004 * 48000)
    assert system.silence_frames == 0 and system.losses == []
    assert spread_ms(kept["system"][:-1]) <= 1000 / RATE


def test_an_unflagged_rise_is_reported_not_filled_unless_asked():
    """The same losses without the overflow flag: the count rises just the same (found
    and reported in ``unfilled``), but by default nothing is written, because on
    PipeWire most such rises were a paused clock with the content intact (see the module
    doc); ``fill_unflagged`` writes them."""
    drops = {"drops": ((20.0, 0.053), (35.0, 0.085))}
    default = lanes(mic=drops)
    click_delays(default)
    asked = lanes(mic=drops, fill_unflagged=True)
    delays = click_delays(asked)
    settled = (CLICKS < 20.0) | ((CLICKS > 25.0) & (CLICKS < 35.0)) | (CLICKS > 40.0)
    found = default["mic"].detector
    print(f"\nunflagged: found {found.losses}, unfilled {found.unfilled}; with "
          f"fill_unflagged written {asked['mic'].detector.fills}")
    assert found.silence_frames == 0
    assert sum(n for _, n in found.unfilled) == pytest.approx(0.138 * 48000, abs=192)
    assert asked["mic"].detector.silence_frames == pytest.approx(0.138 * 48000, abs=192)
    assert spread_ms(delays["mic"][settled]) <= 4.0


def test_a_stall_of_the_whole_server_moves_neither_lane_and_they_stay_in_step():
    """The whole graph pauses 120 ms at 20 s (PipeWire: the players and both captures
    with it, content intact). Both counts fall 120 ms behind the clock; nothing is
    flagged, so nothing is written, the content plays on as delivered and the system's
    clicks stay the same distance after the mic's. (With ``fill_unflagged`` both lanes
    fill alike: still in step, each voice 120 ms later.)"""
    for fill in (False, True):
        devices = lanes(pause=(20.0, 20.12), fill_unflagged=fill)
        delays = click_delays(devices)
        apart = delays["system"] - delays["mic"]
        mic, system = devices["mic"].detector, devices["system"].detector
        print(f"\nfill_unflagged={fill}: rises mic {mic.losses} system {system.losses}; "
              f"silence written {mic.silence_frames}/{system.silence_frames}; "
              f"system-after-mic spread {spread_ms(apart[~np.isnan(apart)]):.2f} ms")
        for found in (mic, system):
            assert sum(n for _, n in found.losses) == pytest.approx(0.12 * 48000, abs=192)
            assert found.silence_frames == (pytest.approx(0.12 * 48000, abs=192) if fill else 0)
        assert spread_ms(apart[~np.isnan(apart)]) <= 4.0


def system_after_mic_moved_ms(devices) -> float:
    """How much the system's clicks moved against the mic's, from before 20 s to after
    26 s (ms; negative: the mic came later)."""
    delays = click_delays(devices)
    apart = delays["system"] - delays["mic"]
    return float(np.nanmedian(apart[CLICKS > 26.0]) - np.nanmedian(apart[CLICKS < 20.0])) * 1000


def test_in_a_stall_of_the_whole_server_a_lane_the_mixer_put_back_is_matched_by_the_other():
    """The graph pauses 120 ms and the mic drops another 60 ms right after (measured here:
    mic 288 ms behind, system 192 ms, in one stall). The mic's 180 ms run its mixer lane
    dry past the 200 ms margin, and its prime puts most of them back (here 139 ms, not
    all: the prime aims at the latency the loop adopted); the system, 120 ms behind and
    not dry, fills its 120 ms (``fill_unflagged``). The truth is the mic 60 ms later
    than before: the lanes
    end 40 ms from it, where without the detector they end 79 ms from it. Not exact: a
    loss beyond the margin is where the mixer's prime and the count disagree (open)."""
    devices = lanes(pause=(20.0, 20.12), mic={"drops": ((20.5, 0.06),)}, fill_unflagged=True)
    moved = system_after_mic_moved_ms(devices)
    unfilled = system_after_mic_moved_ms(
        lanes(pause=(20.0, 20.12), mic={"drops": ((20.5, 0.06),)}, detect=False))
    mic, system = devices["mic"].detector, devices["system"].detector
    print(f"\nlosses mic {mic.losses} (left to the mixer {mic.left_to_mixer}), system "
          f"{system.losses}; silence written mic {mic.fills} system {system.fills}; "
          f"system-after-mic moved {moved:.1f} ms, {unfilled:.1f} ms without the detector "
          f"(truth: -60)")
    assert mic.silence_frames == 0 and mic.left_to_mixer
    assert system.silence_frames == pytest.approx(0.12 * 48000, abs=192)
    assert abs(moved + 60.0) <= 45.0
    assert abs(unfilled + 60.0) >= 70.0  # the control


def test_late_deliveries_stalls_that_catch_up_and_drift_fill_nothing():
    """What must not be taken for a loss: hiccups of 10-50 ms, a 500 ms stall delivered
    all at once afterwards, a clock 200 ppm slow (the floor ramps 0.2 ms a second)."""
    devices = {
        "mic": ClickDevice(48000 * (1 - 200e-6), CLICKS, seed=1, detector=LostSampleDetector(48000),
                           delivery=Delivery(seed=3, burst_blocks=3, hiccups_per_s=2.0,
                                             stall=(15.0, 0.5))),
        "system": ClickDevice(48000, CLICKS + 0.5, seed=2, detector=LostSampleDetector(48000),
                              delivery=Delivery(seed=4, burst_blocks=1, stall=(40.0, 0.5))),
    }
    drive(Mixer(), devices, SECONDS, seed=7, tick_s=TICK_S, tick_jitter_s=TICK_S / 5)
    for device in devices.values():
        assert device.detector.losses == [] and device.detector.silence_frames == 0


def feed(detector: LostSampleDetector, arrivals_s, *, block: int = 960, overflow_at=None):
    """Blocks of ``block`` frames arriving at the given times; the silence written."""
    written = 0
    for t in arrivals_s:
        written += detector.on_block(block, float(t), overflowed=overflow_at is not None
                                     and abs(t - overflow_at) < 1e-9)
    return written


def steady(seconds: float, *, jitter_s: float = 0.0, seed: int = 0) -> np.ndarray:
    """Arrival times of 20 ms blocks, each late by up to ``jitter_s``."""
    times = np.arange(0.02, seconds, 0.02)
    return times + np.random.default_rng(seed).uniform(0, jitter_s, len(times))


def test_pulseaudio_like_wander_and_a_one_second_blip_fill_nothing():
    """PulseAudio's floor, measured here: ramps of 10 ms over 5-10 s, falls of 17 ms at
    once, and one second 21 ms up that fell back. None is a loss."""
    t = steady(60.0, jitter_s=0.01)
    wander = 0.010 * np.sin(2 * np.pi * t / 12.0)
    wander[(t > 30.0) & (t < 31.0)] += 0.021  # the blip: one window
    wander[t > 45.0] -= 0.017  # a fall
    detector = LostSampleDetector(48000)
    assert feed(detector, t + wander) == 0
    assert detector.losses == []


def test_a_loss_flagged_as_an_overflow_counts_from_5_ms_and_one_window():
    """PortAudio's input_overflow says samples were lost: 8 ms (under the unflagged 20 ms
    threshold) is then filled, and found one window sooner."""
    t = steady(10.0)
    late = np.where(t >= 5.0, t + 0.008, t)  # 8 ms of samples never came
    flagged = LostSampleDetector(48000)
    assert feed(flagged, late, overflow_at=late[np.searchsorted(t, 5.0)]) == 384
    unflagged = LostSampleDetector(48000)
    assert feed(unflagged, late) == 0


def test_a_loss_beyond_the_mixers_margin_is_left_to_the_mixer():
    """300 ms behind at once, flagged: the mixer's lane runs dry past its 200 ms margin
    and primes again at its latency; silence here as well would count the gap twice."""
    t = steady(10.0)
    late = np.where(t >= 5.0, t + 0.3, t)
    detector = LostSampleDetector(48000)
    assert feed(detector, late, overflow_at=late[np.searchsorted(t, 5.0)]) == 0
    assert [frames for _, frames in detector.left_to_mixer] == [14400]


def test_the_ring_writes_silence_in_place_and_refuses_what_does_not_fit():
    ring = AudioRing(10, 1)
    ring.write(np.ones((7, 1), np.float32))
    ring.read()
    assert ring.write_silence(5)  # wraps around the end of the ring
    ring.write(np.full((2, 1), 2.0, np.float32))
    np.testing.assert_array_equal(ring.read()[:, 0], [0, 0, 0, 0, 0, 2, 2])
    assert not ring.write_silence(11) and ring.overruns == 1


def test_the_portaudio_callback_writes_the_silence_into_the_ring_before_the_next_block(
        monkeypatch):
    """The wiring: PortAudioCapture's callback asks its detector, on the stream's clock,
    and the ring gets the silence ahead of the block (not opened: no device needed)."""
    from types import SimpleNamespace

    from meetcap.audio import capture as capture_module
    from meetcap.audio.base import AudioDevice

    device = AudioDevice(id="pulse:test", name="test", kind="mic", default=False,
                         host_api="test", portaudio_name="test")
    capture = capture_module.PortAudioCapture(device)
    clock = {"now": 0.0}
    monkeypatch.setattr(capture_module.time, "monotonic", lambda: clock["now"])
    block = np.ones((960, 1), np.float32)
    read = []
    for t in steady(6.0):
        clock["now"] = float(t) + (0.05 if t >= 3.0 else 0.0)  # 50 ms never delivered
        overflow = abs(t - 3.0) < 0.01  # ...and PortAudio says so
        capture._callback(block, 960, None, SimpleNamespace(input_overflow=overflow))
        read.append(capture.read()[:, 0])  # the worker drains the ring
    samples = np.concatenate(read)
    zeros = np.flatnonzero(samples == 0.0)
    print(f"\nsilence written {capture.lost_samples.fills}")
    assert len(zeros) == 2400 and np.all(np.diff(zeros) == 1)  # 50 ms, in one piece
    assert capture.lost_samples.fills[0][0] == pytest.approx(4.0, abs=0.1)
