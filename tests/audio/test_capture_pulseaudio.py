"""End-to-end capture through real PortAudio from a real PulseAudio server."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.constants import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE_HZ
from tests.audio.helpers import FrameCollector, best_lag, ncc, place, rms_db, to_16k
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID
from tests.support.speech import PLAY_RATE_HZ, make_tone


def capture(settings: CaptureSettings, *, vad: bool = False):
    manager = AudioManager(settings)
    collector = FrameCollector()
    manager.add_event_listener(collector.on_event)
    subscription = manager.subscribe(collector, vad=vad, name="test")
    return manager, collector, subscription


def play_and_wait(pulse, plays, settle_s: float = 0.6) -> None:
    procs = [pulse.play(f.path, sink) for f, sink in plays]
    for p in procs:
        assert p.wait(timeout=60) == 0
    time.sleep(settle_s)


def test_devices_json_lists_virtual_mic_and_speaker_monitor(pulse):
    out = subprocess.run(
        [sys.executable, "-m", "meetcap", "devices", "--json"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout
    devices = {d["id"]: d for d in json.loads(out)}
    assert devices[MIC_ID]["kind"] == "mic"
    assert devices[SYSTEM_ID]["kind"] == "loopback"
    assert devices[SYSTEM_ID]["default"] is True
    assert all({"id", "name", "kind", "default"} <= d.keys() for d in devices.values())


def test_two_voices_are_captured_at_once_and_the_mix_matches(pulse, speech_files):
    settings = CaptureSettings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False)
    manager, collector, sub = capture(settings)
    try:
        time.sleep(1.5)  # both streams deliver (PulseAudio's ALSA plugin takes ~1 s to start)
        play_and_wait(pulse, [(speech_files["mic"], MIC_SINK), (speech_files["system"], SPEAKER_SINK)])
    finally:
        manager.unsubscribe(sub)
    frames = collector.frames
    assert [f.seq for f in frames] == list(range(len(frames))), "frames must be gapless from 0"
    assert all(len(f.pcm) == FRAME_BYTES for f in frames)
    recorded = collector.samples()
    mic = to_16k(speech_files["mic"].samples, PLAY_RATE_HZ)
    system = to_16k(speech_files["system"].samples, PLAY_RATE_HZ)
    # Each device has its own latency, so each voice is found on its own, then the two
    # placed voices are summed: that is the mix the recording must hold.
    expected = place(mic, best_lag(recorded, mic), len(recorded)) + place(
        system, best_lag(recorded, system), len(recorded)
    )
    assert ncc(recorded, expected) >= 0.9
    assert rms_db(recorded) > -40, "the voices must be audible in the mix"


def test_minus_6_db_gain_halves_the_amplitude(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=6.0, amplitude=0.3)
    settings = CaptureSettings(mic_device_id=MIC_ID, normalize=False)
    manager, collector, sub = capture(settings)
    try:
        time.sleep(1.5)
        player = pulse.play(tone.path, MIC_SINK)
        assert collector.wait_for(lambda: manager.levels()["mic"].rms_dbfs > -30, 5)
        time.sleep(1.0)
        full_until = len(collector.frames)
        manager.set_gain_db("mic", -6.0)
        time.sleep(2.0)
        quiet_until = len(collector.frames)
        player.wait(timeout=30)  # a finished player is reaped here, even if the asserts fail
    finally:
        manager.unsubscribe(sub)
    samples = collector.samples()
    full = samples[(full_until - 8) * FRAME_SAMPLES : (full_until - 1) * FRAME_SAMPLES]
    quiet = samples[(quiet_until - 8) * FRAME_SAMPLES : (quiet_until - 1) * FRAME_SAMPLES]
    assert rms_db(full) > -30
    assert rms_db(quiet) - rms_db(full) == pytest.approx(-6.0, abs=0.5)


def test_a_source_of_digital_zeros_is_reported_muted_within_2_s(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=2.0, amplitude=0.3)
    settings = CaptureSettings(system_device_id=SYSTEM_ID, normalize=False)
    manager, collector, sub = capture(settings)
    try:
        time.sleep(1.5)
        play_and_wait(pulse, [(tone, SPEAKER_SINK)], settle_s=0.0)
        assert collector.wait_for(lambda: manager.levels()["system"].health.value == "muted", 4)
    finally:
        manager.unsubscribe(sub)
    samples = collector.samples()
    loud = np.flatnonzero(np.abs(samples) > 1e-3)
    zeros_from = (loud[-1] + 1) / SAMPLE_RATE_HZ + collector.frames[0].capture_time
    muted_at = [at for at, e in collector.events if e.source == "system"
                and e.health is not None and e.health.value == "muted" and at > zeros_from]
    assert muted_at, "the muted warning must come after the zeros start"
    assert muted_at[0] - zeros_from <= 2.0


def test_unplugging_one_device_reports_it_lost_and_the_other_keeps_flowing(pulse, tmp_path):
    tone = make_tone(tmp_path, "tone", seconds=14.0, amplitude=0.3)
    settings = CaptureSettings(mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False)
    manager, collector, sub = capture(settings)
    players = []
    try:
        time.sleep(1.5)
        players = [pulse.play(tone.path, MIC_SINK), pulse.play(tone.path, SPEAKER_SINK)]
        assert collector.wait_for(lambda: manager.levels()["system"].rms_dbfs > -30, 5)
        pulse.unload_sink(SPEAKER_SINK)
        assert collector.wait_for(lambda: collector.first_event("device_lost", "system"), 5)
        assert manager.levels()["system"].health.value == "device_lost"
        frames_at_loss = len(collector.frames)
        time.sleep(1.5)
        assert manager.levels()["mic"].rms_dbfs > -30, "the microphone keeps flowing"
        after = collector.samples()[frames_at_loss * FRAME_SAMPLES :]
        assert len(after) >= 10 * FRAME_SAMPLES and rms_db(after) > -30
        # The device comes back: capture of it resumes without stopping the session.
        pulse.load_sink(SPEAKER_SINK)
        assert collector.wait_for(lambda: collector.first_event("device_restored", "system"), 8)
    finally:
        for p in players:
            p.kill()
            p.wait()
        manager.unsubscribe(sub)
    seqs = [f.seq for f in collector.frames]
    assert seqs == list(range(len(seqs))), "the timeline never stalls or jumps"


def test_vad_agrees_with_where_the_speech_is(pulse, speech_files):
    speech = speech_files["mic"]
    settings = CaptureSettings(mic_device_id=MIC_ID)
    manager, collector, sub = capture(settings, vad=True)
    try:
        time.sleep(1.5)
        play_and_wait(pulse, [(speech, MIC_SINK)], settle_s=1.0)
    finally:
        manager.unsubscribe(sub)
    recorded = collector.samples()
    lag = best_lag(recorded, to_16k(speech.samples, PLAY_RATE_HZ))
    start_s, end_s = speech.speech_spans_s[0]
    played = range(lag // FRAME_SAMPLES, (lag + len(speech.samples) * SAMPLE_RATE_HZ // PLAY_RATE_HZ)
                   // FRAME_SAMPLES)
    agree = 0
    for index in played:
        t = (index * FRAME_SAMPLES - lag) / SAMPLE_RATE_HZ + 0.05  # the frame's middle
        agree += collector.frames[index].speech == (start_s <= t <= end_s)
    assert agree / len(played) >= 0.9
