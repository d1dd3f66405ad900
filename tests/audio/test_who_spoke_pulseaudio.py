"""Who spoke, on real PulseAudio: the person's voice into the microphone sink, the remote
voices into the speakers, with and without an echo path (module-loopback from the
speakers' monitor into the microphone sink, late and quieter: a laptop without
headphones). The AudioManager captures both through PortAudio as the app does; every
frame's label is compared with where each played voice really is."""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import pytest
import soundfile as sf

from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.constants import FRAME_SAMPLES
from meetcap.dsp.vad import VadStream
from meetcap.frames import SPEAKER_BOTH, SPEAKER_NAMES, SPEAKER_OTHERS, SPEAKER_YOU
from tests.audio.helpers import (
    FrameCollector,
    best_lag,
    to_16k,
    voices_start_apart_ms,
    watch_lost_samples,
)
from tests.support.echo_rig import echo_path
from tests.support.pulse import MIC_ID, MIC_SINK, SPEAKER_SINK, SYSTEM_ID
from tests.support.speech import PLAY_RATE_HZ, make_speech

WARM_UP_S = 1.5
# (lane, start s, text, voice): turns with pauses between them, then double talk.
SCRIPT = (
    ("you", 0.3, "Good morning everyone, let us look at the budget.", "en"),
    ("others", 4.3, "Thanks, the remote team finished the release on Friday.", "en-us"),
    ("you", 8.6, "Great, then we can plan the launch for next month.", "en"),
    ("others", 12.6, "We still need the numbers from the sales office first.", "en-us"),
    ("you", 16.6, "I will ask them today and send the report.", "en"),
    ("others", 16.8, "That works for us, thank you very much.", "en-us"),
)
LENGTH_S = 20.5


@pytest.fixture(scope="module")
def lane_files(tmp_path_factory):
    """One file per lane holding its turns at their times, digital silence between."""
    directory = tmp_path_factory.mktemp("who_spoke")
    lanes = {lane: np.zeros(int(LENGTH_S * PLAY_RATE_HZ), np.float32) for lane in ("you", "others")}
    for i, (lane, start_s, text, voice) in enumerate(SCRIPT):
        speech = make_speech(directory, f"turn{i}", text, voice=voice,
                             pitch=40 if lane == "you" else 75, lead_s=0, tail_s=0)
        start = int(start_s * PLAY_RATE_HZ)
        end = min(len(lanes[lane]), start + len(speech.samples))
        lanes[lane][start:end] = speech.samples[: end - start]
    paths = {}
    for lane, samples in lanes.items():
        paths[lane] = directory / f"{lane}.wav"
        sf.write(paths[lane], samples, PLAY_RATE_HZ, subtype="FLOAT")
    return paths, lanes


def voiced_frames(samples_16k: np.ndarray, lag: int, frames: int) -> np.ndarray:
    """Per timeline frame: the played voice is there (a 10 ms block above -40 dBFS)."""
    timeline = np.zeros(frames * FRAME_SAMPLES, np.float32)
    end = min(len(timeline), lag + len(samples_16k))
    timeline[lag:end] = samples_16k[: end - lag]
    blocks = timeline.reshape(-1, 160)
    loud = np.sqrt(np.square(blocks).mean(axis=1)) > 0.01
    return loud.reshape(frames, 10).any(axis=1)


# (id, echo path (delay ms, loss dB) or None, echo cancellation setting). The loudest,
# earliest echo of the 60-150 ms, 10-20 dB range is the hard one for the label: with the
# canceller (auto: on once the echo score says the speakers reach the mic) and without.
CASES = [
    ("headset", None, "auto"),
    ("echo-60ms-10dB-canceller-auto", (60, 10.0), "auto"),
    ("echo-60ms-10dB-canceller-off", (60, 10.0), "off"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_frames_where_one_side_speaks_carry_the_right_label(pulse, lane_files, case, monkeypatch):
    name, echo, cancel = case
    paths, lanes = lane_files
    raw: dict[str, list[np.ndarray]] = {}
    detectors = watch_lost_samples(monkeypatch, raw)
    settings = CaptureSettings(
        mic_device_id=MIC_ID, system_device_id=SYSTEM_ID, normalize=False, vad=True,
        who_spoke=True, echo_cancel=cancel,
    )
    manager = AudioManager(settings)
    collector = FrameCollector()
    path = echo_path(pulse, delay_ms=echo[0], loss_db=echo[1]) if echo else nullcontext()
    with path:
        subscription = manager.subscribe(collector, name="test")
        try:
            time.sleep(WARM_UP_S)
            players = [pulse.play(paths["you"], MIC_SINK),
                       pulse.play(paths["others"], SPEAKER_SINK)]
            for player in players:
                assert player.wait(timeout=60) == 0
            time.sleep(1.0)
            session_start = manager.session_start_time
        finally:
            manager.unsubscribe(subscription)
            manager.close()
    frames = collector.frames
    mix = collector.samples()
    you_16k, others_16k = to_16k(lanes["you"], PLAY_RATE_HZ), to_16k(lanes["others"], PLAY_RATE_HZ)
    you_lag, others_lag = best_lag(mix, you_16k), best_lag(mix, others_16k)
    you = voiced_frames(you_16k, you_lag, len(frames))
    others = voiced_frames(others_16k, others_lag, len(frames))
    labels = np.array([-1 if f.speaker is None else f.speaker for f in frames])
    # Exactly one side speaks: its voice is in the frame and the other side's is nowhere
    # within 300 ms of it (a pause between two words of the other side is still its turn).
    near = np.ones(7)
    you_near = np.convolve(you, near, "same") > 0
    others_near = np.convolve(others, near, "same") > 0
    only_you, only_others = you & ~others_near, others & ~you_near
    right_you = labels[only_you] == SPEAKER_YOU
    right_others = labels[only_others] == SPEAKER_OTHERS
    right = np.concatenate((right_you, right_others))
    both = labels[you & others]
    mislabelled = np.concatenate((labels[only_you][~right_you], labels[only_others][~right_others]))
    values, counts = np.unique(mislabelled, return_counts=True)
    wrong = {SPEAKER_NAMES.get(int(v), "none"): int(c) for v, c in zip(values, counts, strict=True)}
    print(f"\n{name}: lanes found at {you_lag / 16:.0f} / {others_lag / 16:.0f} ms; exactly one "
          f"side speaks in {len(right)} frames ({only_you.sum()} you, {only_others.sum()} "
          f"others): label right on {right.mean():.1%} (you {right_you.mean():.1%}, others "
          f"{right_others.mean():.1%}; wrong ones: {wrong}); double talk labelled both on "
          f"{np.mean(both == SPEAKER_BOTH):.0%} of {len(both)} frames")
    rig_ms, lanes_ms, found = voices_start_apart_ms(
        raw, detectors, {"mic": you_16k, "system": others_16k}, session_start,
        {"mic": you_lag, "system": others_lag})
    print(f"{name}: the two voices' lags apart {(you_lag - others_lag) / 16:+.1f} ms = handed "
          f"over by the server {rig_ms:+.1f} ms apart (the rig) + placed in the timeline "
          f"{lanes_ms:+.1f} ms apart (the lanes' start); found at (s in the stream, in the "
          f"timeline) {found}")
    # Each voice is found in the mix. Their lags are not held to each other here: the two
    # voices come from two paplay processes started one after the other, and where each
    # lane starts depends on when its first device block arrives; on a fresh sound server
    # the lags differed by up to 161 ms (printed above, split into the two causes). The
    # labels are judged per voice at its own lag, so that offset does not flatter or
    # hurt them.
    assert 0 <= you_lag / 16 < 1500 and 0 <= others_lag / 16 < 1500
    assert only_you.sum() > 40 and only_others.sum() > 40
    assert right.mean() >= 0.95
    # The VAD gate on this recorded speech: skipping the model changes no verdict.
    gated, reference = VadStream(gate=True), VadStream(gate=True, skip=False)
    verdicts = [np.concatenate((vad.process(mix), vad.flush())) for vad in (gated, reference)]
    assert np.array_equal(*verdicts) and gated.windows_skipped > 0


def test_meetcap_record_streams_who_spoke_into_the_servers_speaker_turns(
    pulse, speech_files, meetcap_server, tmp_path
):
    """The whole path: capture, lane VADs, spool, the speakers extension on the wire, the
    server's flags file and the sidecar's speaker turns."""
    import json
    import subprocess
    import sys

    from tests.support.server_proc import TOKEN

    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID,
         "--vad", "--seconds", "11", "--url", meetcap_server.url, "--token", TOKEN,
         "--data-dir", str(tmp_path / "client")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(2.0)
    you = pulse.play(speech_files["mic"].path, MIC_SINK)
    assert you.wait(timeout=30) == 0
    time.sleep(0.8)
    others = pulse.play(speech_files["system"].path, SPEAKER_SINK)
    stdout, stderr = proc.communicate(timeout=90)
    others.wait(timeout=30)
    assert proc.returncode == 0, stderr
    (sidecar,) = meetcap_server.data_dir.glob("*.json")
    turns = json.loads(sidecar.read_text())["speaker_turns"]
    print("\nspeaker turns stored:", turns)
    time_of = {name: sum(t["end_ms"] - t["start_ms"] for t in turns if t["speaker"] == name)
               for name in ("you", "others", "both")}
    first = {name: min((t["start_ms"] for t in turns if t["speaker"] == name), default=None)
             for name in ("you", "others")}
    assert time_of["you"] >= 2000 and time_of["others"] >= 2000
    assert time_of["both"] <= 500
    assert first["you"] < first["others"]  # the person spoke first, then the others
