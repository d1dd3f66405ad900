"""The PyInstaller spec builds a one-folder app that starts, shows its window and finds
the (virtual) sound devices: what a person gets when they unpack the folder and run it.

One build for the module (about 15-25 s on the 2-core CI machine); skipped with a reason
when PyInstaller is not installed (``pip install -e '.[test]'`` installs it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pulse import MIC_ID, SYSTEM_ID

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "packaging" / "meetcap.spec"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    pytest.importorskip("PyInstaller", reason="PyInstaller is not installed")
    work = tmp_path_factory.mktemp("pyinstaller")
    built = subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--distpath",
         str(work / "dist"), "--workpath", str(work / "build"), str(SPEC)],
        cwd=work, capture_output=True, text=True, timeout=540,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    executable = work / "dist" / "meetcap" / "meetcap"
    assert executable.is_file() and os.access(executable, os.X_OK)
    return executable


def test_the_bundled_app_starts_and_shows_its_window(bundle, tmp_path):
    run = subprocess.run(
        [str(bundle), "--smoke-test", "--settings", str(tmp_path / "settings.ini"),
         "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "meetcap smoke test: window 'meetcap' shown at" in run.stdout


def test_the_bundle_carries_the_audio_stack_and_the_vad_model(bundle, pulse, tmp_path):
    listed = subprocess.run([str(bundle), "devices", "--json"], capture_output=True,
                            text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    ids = {device["id"] for device in json.loads(listed.stdout)}
    assert {MIC_ID, SYSTEM_ID} <= ids
    # A short recording with the VAD on: PortAudio, soxr and the Silero model all load
    # from the bundle, and the file holds exactly the frames asked for.
    out = tmp_path / "bundle.wav"
    recorded = subprocess.run(
        [str(bundle), "record", "--mic", MIC_ID, "--system", SYSTEM_ID, "--vad",
         "--seconds", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert recorded.returncode == 0, recorded.stderr[-3000:]
    assert out.stat().st_size == 44 + 10 * 3200


def test_the_bundle_transcribes_with_the_packaged_whisper_model(bundle, tmp_path):
    # The built-in server transcribes by default: faster-whisper, CTranslate2 and the
    # Whisper model package must all load from the bundle (espeak-ng makes the speech).
    from tests.support.transcript_corpus import have_espeak, make_corpus

    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    import soundfile as sf

    corpus = make_corpus((("Please send the meeting notes to the whole group.", "en-us",
                           170, 50),))
    audio = tmp_path / "speech.flac"
    sf.write(audio, corpus.samples, 16_000, subtype="PCM_16")
    run = subprocess.run([str(bundle), "transcribe", str(audio), "--format", "json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    texts = [s["text"].lower() for s in json.loads(run.stdout)["segments"]]
    assert len(texts) == 1 and "meeting" in texts[0] and "group" in texts[0], texts
