"""End-to-end capture through real PortAudio from a real PulseAudio server, and from a
real PipeWire server through pipewire-pulse (each test runs on both; tests/support/pulse.py).

Speech (espeak-ng) and tones are played with paplay into the two null sinks; the
AudioManager captures the virtual mic and the speaker monitor through the private ALSA
pulse PCMs, exactly as the app does.
"""

from __future__ import annotations

import os
import secrets
import time
from contextlib import contextmanager

import numpy as np
import pytest
import soundfile as sf

from meetcap.audio import linux_pulse
from meetcap.audio.capture import make_capture
from meetcap.audio.devices import find_device
from meetcap.audio.events import AudioEventKind
from meetcap.audio.lane_alignment import DEADLINE_S
from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.constants import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE_HZ
from meetcap.dsp.mixer import Mixer
from tests.audio.helpers import (
    FrameCollector,
    best_lag,
    fit_outside_moves,
    fixed_delay_fit,
    lanes_in_step,
    local_delays,
    rms_db,
    to_16k,
    voices_start_apart_ms,
    watch_lost_samples,
)
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID
from tests.support.speech import PLAY_RATE_HZ, SpeechFile, make_speech, make_tone

# Every test that uses `pulse` runs against PulseAudio and against PipeWire.
pytestmark = pytest.mark.sound_servers("pulseaudio", "pipewire")

# Both streams deliver within this after opening (PulseAudio's ALSA plugin takes ~1 s;
# PipeWire delivers the first block ~40 ms after the open).
WARM_UP_S = 1.5


@contextmanager
def capturing(settings: CaptureSettings):
    """A manager with one collecting subscriber; stopped (all frames delivered) on exit."""
    manager = AudioManager(settings)
    collector = FrameCollector()
    manager.add_event_listener(collector.on_event)
    subscription = manager.subscribe(collector, name="test")
    try:
        yield manager, collector
    finally:
        manager.unsubscribe(subscription)
        manager.close()


def play_and_wait(pulse, plays, settle_s: float = 0.6) -> float:
    """Play files into sinks at once, wait for the end; returns the wall-clock start."""
    started = time.time()
    procs = [pulse.play(f.path, sink) for f, sink in plays]
    longest_s = max(len(f.samples) / PLAY_RATE_HZ for f, _ in plays)
    for p in procs:
        assert p.wait(timeout=longest_s + 60) == 0
    time.sleep(settle_s)
    return started


def assert_gapless(collector: FrameCollector) -> None:
    frames = collector.frames
    assert frames, "the pipeline produced no frame (did its worker stop? see the log)"
    assert [f.seq for f in frames] == list(range(len(frames))), "frames are gapless from 0"
    assert all(len(f.pcm) == FRAME_BYTES for f in frames)


FIDELITY_S = 60.0  # the proof: 60 s of two voices
HALF_QUANTUM_16K = 512 / 3  # PipeWire's half quantum (512 frames at 48 kHz) at 16 kHz
# Under PipeWire a lane does not always hold time here (4 of 5 logged runs; docs/figures.md,
# "Mix timing"). Logged per lane (device blocks, latency, dry-outs, the loop), the cause is
# the server, not the loop (0 ppm in the first 30 s of every run): PipeWire's graph stalls
# for 100-300 ms (both lanes deliver that much less than the clock, content intact) and a
# lane runs dry past its 200 ms margin, so the gap is silence and everything after it
# plays that much later (the lane's delay jumped by exactly the zero fill: 2,971 and 1,794
# samples); or the virtual mic (a remap-source) drops samples (853 in one run, no dry-out,
# the delay jumped back by as much). Neither happens under PulseAudio, whose null sinks
# catch up after a stall. Dropped samples are now put back (meetcap/audio/lane_losses.py);
# a run whose lanes ran dry (pauses adding up past the margin) is an expected failure with
# its figures in the reason; any other run that misses the targets fails.


def long_voice(directory, name: str, sentences: list[str], *, voice: str, pitch: int,
               seconds: float) -> SpeechFile:
    """``seconds`` of one espeak-ng voice: the sentences in turn, repeated."""
    parts = [make_speech(directory, f"{name}{i}", text, voice=voice, pitch=pitch,
                         lead_s=0.3, tail_s=0.3).samples for i, text in enumerate(sentences)]
    joined = np.concatenate(parts)
    samples = np.resize(joined, int(seconds * PLAY_RATE_HZ)).astype(np.float32)
    path = directory / f"{name}.wav"
    sf.write(path, samples, PLAY_RATE_HZ, subtype="FLOAT")
    return SpeechFile(path, samples, ())


@pytest.fixture(scope="module")
def long_voices(tmp_path_factory) -> dict[str, SpeechFile]:
    directory = tmp_path_factory.mktemp("long-speech")
    return {
        "mic": long_voice(directory, "mic", [
            "Good morning everyone, let us review the quarterly budget and the hiring plan.",
            "Seven hundred and twelve apples were sold on the fourth of May.",
        ], voice="en", pitch=40, seconds=FIDELITY_S),
        "system": long_voice(directory, "system", [
            "Thanks. The remote team finished the release on Friday and the numbers look fine.",
            "Zebra crossings near the harbour are painted every spring by volunteers.",
        ], voice="en-us", pitch=75, seconds=FIDELITY_S),
    }


def start_time_mono(*, manager_start: float) -> float:
    """The monotonic time of a wall-clock session start (the aligner's clock)."""
    return manager_start - (time.time() - time.monotonic())


def watch_lane_alignment(monkeypatch) -> list:
    """The LaneAligner of every capture worker made from now on."""
    from meetcap.audio import pipeline

    made = []

    class Watched(pipeline.LaneAligner):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(pipeline, "LaneAligner", Watched)
    return made


class LaneRecorder:
    """Watches the real mixer inside the real pipeline: each source's part of every
    render (its lane, before gain) and the correction each lane applied."""

    def __init__(self, monkeypatch) -> None:
        self.parts: dict[str, list[np.ndarray]] = {"mic": [], "system": []}
        self.ppm: dict[str, list[tuple[float, float]]] = {"mic": [], "system": []}
        self.dry_outs: dict[str, int] = {"mic": 0, "system": 0}
        render = Mixer.render
        recorder = self

        def watched(mixer, n, clock_lead=0, **options):
            block = render(mixer, n, clock_lead, **options)
            seconds = mixer.samples_rendered / SAMPLE_RATE_HZ
            for name, part in block.parts.items():
                recorder.parts.setdefault(name, []).append(part.raw.copy())
                if name in mixer.sources:
                    recorder.ppm.setdefault(name, []).append(
                        (seconds, mixer.lane(name).correction_ppm))
                    recorder.dry_outs[name] = mixer.lane(name).underruns
            return block

        monkeypatch.setattr(Mixer, "render", watched)

    def lane(self, name: str) -> np.ndarray:
        return np.concatenate(self.parts[name])

    def worst_ppm_after(self, name: str, seconds: float) -> float:
        return max((abs(ppm) for at, ppm in self.ppm[name] if at >= seconds), default=0.0)


def test_two_voices_keep_time_in_the_mix_one_fixed_delay_explains_a_minute(
        pulse, long_voices, monkeypatch):
    """Mix fidelity (issue 10): 60 s of two voices into two sinks of one clock, no echo
    path, normalisation off. Each lane is its played voice at ONE fixed delay (R^2 >=
    0.98), the whole mix is both (R^2 >= 0.95), and the correction each lane applies
    settles within 10 s inside +-20 ppm (one clock: there is nothing to correct)."""
    lanes = LaneRecorder(monkeypatch)
    raw: dict[str, list[np.ndarray]] = {}
    detectors = watch_lost_samples(monkeypatch, raw)
    aligners = watch_lane_alignment(monkeypatch)
    settings = CaptureSettings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False)
    with capturing(settings) as (manager, collector):
        # The lanes' start is aligned once, by a few ms, when both floors have held still
        # (up to lane_alignment.DEADLINE_S after both play; ~2 s in on PulseAudio): by
        # design that moves a lane once, early. This test is about keeping time for a
        # minute after that, so the voices start once the start alignment is done (the
        # alignment itself: tests/dsp/test_lane_alignment.py, tests/audio/test_lane_losses.py).
        time.sleep(DEADLINE_S + 1.0)
        played_at = play_and_wait(
            pulse, [(long_voices["mic"], MIC_SINK), (long_voices["system"], SPEAKER_SINK)]
        )
        start_time = manager.session_start_time
    assert_gapless(collector)
    recorded = collector.samples()
    mic = to_16k(long_voices["mic"].samples, PLAY_RATE_HZ)
    system = to_16k(long_voices["system"].samples, PLAY_RATE_HZ)
    mic_r2, _ = fixed_delay_fit(lanes.lane("mic"), [mic])
    system_r2, _ = fixed_delay_fit(lanes.lane("system"), [system])
    mix_r2, (mic_lag, system_lag) = fixed_delay_fit(recorded, [mic, system])
    alone = [fixed_delay_fit(recorded, [voice])[0] for voice in (mic, system)]
    # paplay start to the voice's place in the timeline: paplay + the server + capture.
    offsets = [start_time + lag / SAMPLE_RATE_HZ - played_at for lag in (mic_lag, system_lag)]
    worst = {name: lanes.worst_ppm_after(name, 10.0) for name in ("mic", "system")}
    print(f"\n[{pulse.kind}] {FIDELITY_S:.0f} s: lane R^2 mic {mic_r2:.4f} system "
          f"{system_r2:.4f}; mix R^2 {mix_r2:.4f} (one voice alone {alone[0]:.2f}/"
          f"{alone[1]:.2f}); correction after 10 s at most mic {worst['mic']:.1f} ppm, "
          f"system {worst['system']:.1f} ppm; play-to-timeline mic {offsets[0] * 1000:.0f} ms, "
          f"system {offsets[1] * 1000:.0f} ms; dry-outs mic {lanes.dry_outs['mic']}, "
          f"system {lanes.dry_outs['system']}")
    # Judged where the lanes did not move (the server lost samples: the stretch until
    # they are found and filled), and whether the lanes stayed in step.
    delays = {name: local_delays(lanes.lane(name), voice, fixed_delay_fit(lanes.lane(name),
                                                                         [voice])[1][0])
              for name, voice in (("mic", mic), ("system", system))}
    outside = {name: fit_outside_moves(lanes.lane(name), voice,
                                       fixed_delay_fit(lanes.lane(name), [voice])[1][0],
                                       delays[name])
               for name, voice in (("mic", mic), ("system", system))}
    in_step, out_longest_s = lanes_in_step(delays["mic"], delays["system"])
    print(f"[{pulse.kind}] load {os.getloadavg()[0]:.1f}; outside the lost stretches lane "
          f"R^2 mic {outside['mic'][0]:.4f} ({outside['mic'][1]:.0%} of 2 s windows), system "
          f"{outside['system'][0]:.4f} ({outside['system'][1]:.0%}); lanes in step in "
          f"{in_step:.0%} of windows (longest out {out_longest_s:.0f} s)")
    heads = {"mic": mic[: 3 * SAMPLE_RATE_HZ], "system": system[: 3 * SAMPLE_RATE_HZ]}
    rig_ms, lanes_ms, found = voices_start_apart_ms(
        raw, detectors, heads, start_time,
        {name: best_lag(lanes.lane(name)[: 8 * SAMPLE_RATE_HZ], heads[name]) for name in heads},
        search_s=8.0)  # the voices repeat every ~10 s: search before the first repeat
    aligner = aligners[-1]
    put_in = [(round(t - start_time_mono(manager_start=start_time), 1),
               {n: round(d * 1000, 1) for n, d in shifts.items()})
              for t, shifts in aligner.aligned]
    skipped = [{n: round(w * 1000) for n, w in waits.items()} for _, waits in aligner.skipped]
    print(f"[{pulse.kind}] lanes aligned (s into the timeline, ms of silence put in) "
          f"{put_in}; skipped (waits ms) {skipped}")
    print(f"[{pulse.kind}] voices start apart (mic - system): handed over by the server "
          f"{rig_ms:+.1f} ms (the rig: two paplay processes), placed in the timeline "
          f"{lanes_ms:+.1f} ms later than that (the lanes' start); found at (s in the stream, "
          f"in the timeline) {found}")
    for name in ("mic", "system"):
        found = detectors[name]
        print(f"  {name}: count rose (s into the stream, frames at {found.rate_hz} Hz) "
              f"{[(round(t, 1), n) for t, n in found.losses]}; silence written "
              f"{[(round(t, 1), n) for t, n in found.fills]}, on the other lane's word "
              f"{[(round(t, 1), n) for t, n in found.late_fills]}; voice moved (s, samples) "
              f"{[(round(t), round(d)) for t, d in delays[name] if abs(d) > 1]}")
    mixer_kept_still = worst["mic"] <= 20.0 and worst["system"] <= 20.0
    ran_dry = lanes.dry_outs["mic"] + lanes.dry_outs["system"] > 0
    if pulse.kind == "pipewire" and min(mic_r2, system_r2) < 0.98 and mixer_kept_still \
            and ran_dry:
        # Lost samples are put back (lane_losses.py) and a paused clock is no loss, but
        # PipeWire's pauses (85-96 ms each under load) add up: each leaves the lane that
        # much less margin, and past 200 ms in all it runs dry. The timeline cannot wait,
        # so that gap is silence and the voice resumes later against its player, which
        # the server paused too. Only a bigger margin (latency) or a warp could avoid it.
        # The lanes are realigned after a dry-out (lane_alignment.py): how far they
        # kept step with each other is in the reason (not asserted: a loss inside a pause
        # of both lanes is read as the pause alone; docs/figures.md).
        pytest.xfail(f"PipeWire's clock paused longer in all than the mixer's margin: "
                     f"dry-outs mic {lanes.dry_outs['mic']}, system "
                     f"{lanes.dry_outs['system']} (lane R^2 mic {mic_r2:.3f}, system "
                     f"{system_r2:.3f}; the mixer applied at most "
                     f"{max(worst.values()):.1f} ppm; lanes in step in {in_step:.0%} of "
                     f"windows, longest out {out_longest_s:.0f} s)")
    # PipeWire's virtual mic also steps by half its quantum (512 frames at 48 kHz, 171
    # samples at 16 kHz) with nothing in the other lane: once the content stayed (a
    # latency step), once it was gone (its voice moved 171 earlier). The counts are the
    # same, so nothing may be filled (lane_losses.py): such a run is an expected failure.
    half_quantum = [name for name in ("mic", "system")
                    if any(abs(abs(d) - HALF_QUANTUM_16K) <= 3 for _, d in delays[name])
                    and all(abs(d) <= 3 or abs(abs(d) - HALF_QUANTUM_16K) <= 3
                            for _, d in delays[name])]
    if pulse.kind == "pipewire" and min(mic_r2, system_r2) < 0.98 and mixer_kept_still \
            and half_quantum:
        pytest.xfail(f"PipeWire's {half_quantum[0]} lane moved by half a quantum (171 "
                     f"samples) with nothing in the other lane: lost or a latency step, the "
                     f"counts cannot tell (lane R^2 mic {mic_r2:.3f}, system {system_r2:.3f})")
    # PipeWire's virtual mic lost samples and lane_losses.py put that much silence back,
    # but only once the other lane's catch-up showed the loss (~0.4 s, up to 3 s later):
    # until then the lane plays early, which alone can cost a loud stretch ~2 % of the
    # whole-minute fit. What the mixer controls is the rest: judged outside the stretches
    # where the voice moved, both lanes must still fit, and the lanes must have kept step.
    filled = [name for name in ("mic", "system")
              if detectors[name].fills or detectors[name].late_fills]
    if pulse.kind == "pipewire" and min(mic_r2, system_r2) < 0.98 and mixer_kept_still \
            and filled:
        assert min(outside["mic"][0], outside["system"][0]) >= 0.98, (
            f"outside the lost stretches the lanes must still fit: mic "
            f"{outside['mic'][0]:.4f}, system {outside['system'][0]:.4f}")
        pytest.xfail(f"PipeWire's {filled[0]} lane lost samples, put back once found "
                     f"(lane R^2 mic {mic_r2:.3f}, system {system_r2:.3f}; outside the lost "
                     f"stretches {outside['mic'][0]:.4f} / {outside['system'][0]:.4f}; lanes "
                     f"in step in {in_step:.0%} of windows)")
    assert mic_r2 >= 0.98 and system_r2 >= 0.98
    assert mix_r2 >= 0.95
    assert max(alone) < 0.8, "both voices are in the mix: one alone explains much less"
    assert worst["mic"] <= 20.0 and worst["system"] <= 20.0
    assert rms_db(recorded) > -40, "the voices must be audible in the mix"
    assert collector.frames[0].capture_time == pytest.approx(start_time)


def test_minus_6_db_gain_halves_the_amplitude(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=5.0, amplitude=0.3)
    settings = CaptureSettings(mic_device_id=MIC_ID, normalize=False)
    with capturing(settings) as (manager, collector):
        time.sleep(WARM_UP_S)
        pulse.play(tone.path, MIC_SINK)
        assert collector.wait_for(lambda: manager.levels()["mic"].rms_dbfs > -30, 5)
        time.sleep(1.0)
        full_until = len(collector.frames)
        manager.set_gain_db("mic", -6.0)
        time.sleep(1.5)
        quiet_until = len(collector.frames)
    samples = collector.samples()
    full = samples[(full_until - 8) * FRAME_SAMPLES : (full_until - 1) * FRAME_SAMPLES]
    quiet = samples[(quiet_until - 8) * FRAME_SAMPLES : (quiet_until - 1) * FRAME_SAMPLES]
    print(f"gain -6 dB measured {rms_db(quiet) - rms_db(full):+.2f} dB")
    assert rms_db(full) > -30
    assert rms_db(quiet) - rms_db(full) == pytest.approx(-6.0, abs=0.5)


def test_a_source_of_digital_zeros_is_reported_muted_within_2_s(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=2.0, amplitude=0.3)
    settings = CaptureSettings(system_device_id=SYSTEM_ID, normalize=False)
    with capturing(settings) as (manager, collector):
        time.sleep(WARM_UP_S)
        play_and_wait(pulse, [(tone, SPEAKER_SINK)], settle_s=0.0)
        assert collector.wait_for(lambda: manager.levels()["system"].health.value == "muted", 4)
    samples = collector.samples()
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    zeros_from = (loud[-1] + 1) / SAMPLE_RATE_HZ + collector.frames[0].capture_time
    muted_at = [at for at, e in collector.events if e.source == "system"
                and e.health is not None and e.health.value == "muted" and at > zeros_from]
    assert muted_at, "the muted warning must come after the zeros start"
    print(f"muted reported {muted_at[0] - zeros_from:.2f} s after the zeros started")
    assert muted_at[0] - zeros_from <= 2.0


def test_unplugging_one_device_reports_it_lost_the_other_keeps_flowing_and_it_comes_back(
    pulse, tmp_path
):
    tone = make_tone(tmp_path, "tone", seconds=12.0, amplitude=0.3)
    settings = CaptureSettings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False)
    with capturing(settings) as (manager, collector):
        time.sleep(WARM_UP_S)
        mic_player = pulse.play(tone.path, MIC_SINK)
        speaker_player = pulse.play(tone.path, SPEAKER_SINK)
        assert collector.wait_for(lambda: manager.levels()["system"].rms_dbfs > -30, 5), \
            manager.levels()
        # When a sink goes, PulseAudio moves its players to the default sink, here the
        # mic's null sink: a second 440 Hz tone there can cancel the first (it did, to
        # -45 dB, now and then). A real microphone never plays what the speakers did.
        speaker_player.kill()
        speaker_player.wait()
        unplugged_at = time.time()
        pulse.unload_sink(SPEAKER_SINK)
        assert collector.wait_for(
            lambda: collector.first_event(AudioEventKind.DEVICE_LOST, "system"), 5
        ), collector.events
        lost_at = collector.first_event(AudioEventKind.DEVICE_LOST, "system")[0]
        print(f"device loss reported {lost_at - unplugged_at:.2f} s after the unplug")
        # PulseAudio moves a removed source's stream to the default source ~1.5 s later:
        # by then the stream must be closed, or the mic would leak into "system".
        assert lost_at - unplugged_at < 1.2
        assert manager.levels()["system"].health.value == "device_lost", manager.levels()
        frames_at_loss = len(collector.frames)
        time.sleep(1.5)
        levels = manager.levels()
        assert levels["system"].health.value == "device_lost", ("not reopened elsewhere", levels)
        assert levels["mic"].rms_dbfs > -30, ("the microphone keeps flowing", levels)
        after = collector.samples()[frames_at_loss * FRAME_SAMPLES :]
        assert len(after) >= 10 * FRAME_SAMPLES and rms_db(after) > -30
        # The device comes back: its capture resumes without stopping the session. The
        # returning sink is the default again, and both servers then move the mic's
        # player onto it (every time, measured here): its tone could cancel the speaker's
        # below (it did, to -42 dB, now and then). Stop it first.
        mic_player.kill()
        mic_player.wait()
        pulse.reload_sink(SPEAKER_SINK)
        assert collector.wait_for(
            lambda: collector.first_event(AudioEventKind.DEVICE_RESTORED, "system"), 8
        ), collector.events
        pulse.play(tone.path, SPEAKER_SINK)
        assert collector.wait_for(lambda: manager.levels()["system"].rms_dbfs > -30, 5), \
            ("audio flows from the restored device", manager.levels(), collector.events)
        assert collector.wait_for(lambda: manager.levels()["system"].health.value == "ok", 2), \
            manager.levels()
    assert_gapless(collector)


@pytest.mark.sound_servers("pipewire")  # PulseAudio: see below
def test_pipewire_ends_the_stream_of_an_unplugged_source_instead_of_moving_it(pulse, tmp_path):
    # PipeWire (WirePlumber) moves the stream of a source that went away to another
    # source at once, with no gap in the blocks: "system audio" would record another
    # device (here the mic's tone) until the device watcher closes it. meetcap's streams
    # ask it not to (linux_pulse.NO_MOVE_PROPERTY): the stream ends, the capture is lost
    # at once, with no watcher. (PulseAudio moves such a stream to the default source
    # 0.6-1.4 s later whatever the client asks; the watcher closes it before: see the
    # unplugging test above.)
    tone = make_tone(tmp_path, "tone", seconds=8.0, amplitude=0.3)
    pulse.play(tone.path, MIC_SINK)
    capture = make_capture(find_device(SYSTEM_ID))
    capture.open()
    heard = []
    try:
        time.sleep(WARM_UP_S)
        assert capture.read().size, "the monitor delivers before the unplug"
        unplugged_at = time.monotonic()
        pulse.unload_sink(SPEAKER_SINK)
        while not capture.is_lost(time.monotonic()):
            assert time.monotonic() - unplugged_at < 3, "the capture never noticed the unplug"
            heard.append(capture.read())
            time.sleep(0.02)
        lost_after = time.monotonic() - unplugged_at
    finally:
        capture.close()
    heard.append(capture.read())
    peak = max((float(np.abs(block).max()) for block in heard if block.size), default=0.0)
    print(f"capture lost {lost_after:.2f} s after the unplug; peak heard after it {peak:.4f}")
    assert peak < 1e-3, "another device's audio came out of the unplugged source's capture"
    assert lost_after < 0.5


def test_switching_to_a_device_plugged_in_mid_session_captures_it(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=6.0, amplitude=0.3)
    settings = CaptureSettings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False)
    with capturing(settings) as (manager, collector):
        time.sleep(WARM_UP_S)
        # A headset appears while both streams are open: PortAudio cannot re-scan now,
        # so it is opened through the dynamic PCM. Its name is new to this process
        # (a source seen before keeps its own PCM, and earlier tests plug headsets too).
        headset = f"meetcap_usb_headset_{secrets.token_hex(4)}"
        pulse.load_sink(headset)
        manager.set_device("system", f"pulse:{headset}.monitor")
        assert collector.wait_for(
            lambda: collector.first_event(AudioEventKind.DEVICE_SWITCHED, "system"), 5
        ), collector.events
        assert os.environ[linux_pulse.DYNAMIC_ENV] == f"{headset}.monitor"
        pulse.play(tone.path, headset)
        assert collector.wait_for(lambda: manager.levels()["system"].rms_dbfs > -30, 5)
        assert manager.levels()["mic"].health.value != "device_lost"
    assert_gapless(collector)


def test_vad_agrees_with_where_the_speech_is(pulse, speech_files):
    speech = speech_files["mic"]
    settings = CaptureSettings(mic_device_id=MIC_ID, vad=True)
    with capturing(settings) as (manager, collector):
        time.sleep(WARM_UP_S)
        played_at = play_and_wait(pulse, [(speech, MIC_SINK)], settle_s=1.0)
        start_time = manager.session_start_time
    recorded = collector.samples()
    # The capture latency offset, measured: where the played file starts in the timeline.
    lag = best_lag(recorded, to_16k(speech.samples, PLAY_RATE_HZ))
    print(f"speech file found at {lag / SAMPLE_RATE_HZ:.3f} s into the timeline, "
          f"{(start_time + lag / SAMPLE_RATE_HZ - played_at) * 1000:.0f} ms after paplay started")
    start_s, end_s = speech.speech_spans_s[0]
    played_samples = len(speech.samples) * SAMPLE_RATE_HZ // PLAY_RATE_HZ
    played = range(lag // FRAME_SAMPLES, (lag + played_samples) // FRAME_SAMPLES)
    agree = 0
    marks = ""
    for index in played:
        t = (index * FRAME_SAMPLES - lag) / SAMPLE_RATE_HZ + 0.05  # the frame's middle
        truth = start_s <= t <= end_s
        agree += collector.frames[index].speech == truth
        # "=" agrees, "+" speech the VAD missed, "-" speech the VAD saw where there is none
        marks += "=" if collector.frames[index].speech == truth else ("+" if truth else "-")
    print(f"VAD agrees on {agree / len(played):.1%} of {len(played)} frames")
    assert agree / len(played) >= 0.9, marks
    assert any(f.speech for f in collector.frames)
