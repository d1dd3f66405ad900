"""Tracks mode on real PulseAudio: `meetcap record --tracks --out FILE.wav` as a user runs
it; channel 1 must hold the voice played into the microphone, channel 2 the voice played
into the speakers (and each only a trace of the other)."""

from __future__ import annotations

import subprocess
import sys

import soundfile as sf

from tests.audio.helpers import play_voices_once_frames_flow, tracks_voice_figures
from tests.support.pulse import MIC_ID, SYSTEM_ID


def test_record_tracks_puts_each_voice_on_its_own_channel(pulse, speech_files, tmp_path):
    out = tmp_path / "tracks.wav"
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID,
         # Echo cancellation off: this test is about which lane lands on which channel.
         # (With "auto" and no echo path at all, the mic lane came out at 0.70-0.74
         # correlation with the clean voice in 3 of 4 runs here: the canceller's business.)
         "--tracks", "--no-normalize", "--echo-cancel", "off", "--seconds", "9",
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    players = play_voices_once_frames_flow(pulse, speech_files, out, proc)
    stdout, stderr = proc.communicate(timeout=90)
    for player in players:
        player.wait(timeout=30)
    assert proc.returncode == 0, stderr
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames) == (16_000, 2, 90 * 1_600)
    data, _ = sf.read(out, dtype="float32")
    figures = tracks_voice_figures(data, speech_files)
    print("\ncorrelation of channel 1/2 with the mic/system voice:",
          {f"ch{c + 1}-{n}": round(v, 3) for (c, n), v in figures.items()})
    assert figures[(0, "mic")] > 0.95 and figures[(1, "system")] > 0.95
    assert abs(figures[(0, "system")]) < 0.2 and abs(figures[(1, "mic")]) < 0.2
