"""Tracks mode to a server on real PulseAudio: `meetcap record --tracks --url ... --out`
as a user runs it. The server stores a two-channel file next to the mono mix whose
channel 1 holds the voice played into the microphone and channel 2 the voice played into
the speakers, byte for byte the local --out copy; a server without the extension gets
the mono mix whole and the user is told once."""

from __future__ import annotations

import json
import subprocess
import sys

import soundfile as sf

from tests.audio.helpers import play_voices_once_frames_flow, tracks_voice_figures
from tests.support.pulse import MIC_ID, SYSTEM_ID
from tests.support.server_proc import TOKEN


def _record(server_url: str, tmp_path, seconds: float, out=None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "meetcap", "record", "--mic", MIC_ID, "--system", SYSTEM_ID,
         "--tracks", "--no-normalize", "--echo-cancel", "off", "--seconds", str(seconds),
         "--url", server_url, "--token", TOKEN, "--data-dir", str(tmp_path / "client"),
         *(["--out", str(out)] if out else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_record_tracks_to_a_server_stores_each_voice_on_its_own_channel(
    pulse, speech_files, meetcap_server_factory, tmp_path
):
    server = meetcap_server_factory()
    out = tmp_path / "local.wav"
    proc = _record(server.url, tmp_path, 9, out)
    players = play_voices_once_frames_flow(pulse, speech_files, out, proc)
    stdout, stderr = proc.communicate(timeout=90)
    for player in players:
        player.wait(timeout=30)
    assert proc.returncode == 0, stderr
    assert "does not store two tracks" not in stderr
    (sidecar_path,) = server.data_dir.glob("*.json")
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["finished"] and sidecar["frames"] == 90 and sidecar["tracks"] is True
    stored = server.data_dir / sidecar["tracks_audio"]
    info = sf.info(stored)
    assert (info.samplerate, info.channels, info.frames) == (16_000, 2, 90 * 1_600)
    # The server's two lanes are exactly what the client captured (its local copy).
    assert stored.read_bytes()[44:] == out.read_bytes()[44:]
    data, _ = sf.read(stored, dtype="float32")
    figures = tracks_voice_figures(data, speech_files)
    print("\nserver's tracks file, correlation of channel 1/2 with the mic/system voice:",
          {f"ch{c + 1}-{n}": round(v, 3) for (c, n), v in figures.items()})
    assert figures[(0, "mic")] > 0.95 and figures[(1, "system")] > 0.95
    assert abs(figures[(0, "system")]) < 0.2 and abs(figures[(1, "mic")]) < 0.2


def test_record_tracks_to_a_server_without_the_extension_says_so_once(
    pulse, meetcap_server_factory, tmp_path
):
    server = meetcap_server_factory(no_tracks=True)
    proc = _record(server.url, tmp_path, 2)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    # Said once, in words, as a warning line of its own (not per frame or connection).
    assert stderr.count("warning: this server does not store two tracks") == 1, stderr
    (sidecar_path,) = server.data_dir.glob("*.json")
    sidecar = json.loads(sidecar_path.read_text())
    assert sidecar["finished"] and sidecar["frames"] == 20 and sidecar["tracks"] is False
    assert not list(server.data_dir.glob("*.tracks.wav"))
