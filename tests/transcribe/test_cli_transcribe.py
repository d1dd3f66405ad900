"""`meetcap transcribe` end to end: real files (WAV at 48 kHz stereo, FLAC at 16 kHz),
the real VAD and the real packaged model, every output format parsed back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from meetcap.cli.main import main
from meetcap.transcribe.formats import FORMATS
from tests.support.transcript_corpus import RATE_HZ, make_corpus, normalise, wer
from tests.transcribe.test_formats import parse_cues

SENTENCES = (
    ("Please send the meeting notes to the whole group before lunch.", "en-gb", 170, 45),
    ("The customer asked for a simpler way to export their reports.", "en-us", 190, 60),
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from tests.support.transcript_corpus import have_espeak

    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    corpus = make_corpus(SENTENCES)
    directory = tmp_path_factory.mktemp("cli")
    wav, flac = directory / "meeting.wav", directory / "meeting.flac"
    at_48k = soxr.resample(corpus.samples, RATE_HZ, 48_000)
    sf.write(wav, np.stack([at_48k, at_48k], axis=1), 48_000, subtype="PCM_16")
    sf.write(flac, corpus.samples, RATE_HZ, subtype="PCM_16")
    return corpus, {"wav": wav, "flac": flac}


def _check(fmt: str, out: str, corpus) -> None:
    said = corpus.utterances
    if fmt == "json":
        segs = json.loads(out)["segments"]
        spans = [(s["start_s"], s["end_s"]) for s in segs]
        text = " ".join(s["text"] for s in segs)
    elif fmt in ("srt", "vtt"):
        cues = parse_cues(out, "," if fmt == "srt" else r"\.")
        spans = [(a, b) for a, b, _ in cues]
        text = " ".join(c for _, _, c in cues)
    elif fmt == "txt":
        lines = out.splitlines()
        spans = None
        text = " ".join(line.split("] ", 1)[1] for line in lines)
    else:  # md
        lines = [line for line in out.splitlines() if line.startswith("**[")]
        # Whole seconds of each segment's start (the VAD dates it back up to 0.35 s).
        starts = [int(line[6:8]) for line in lines]
        assert len(starts) == len(said)
        for start, u in zip(starts, said, strict=True):
            assert int(u.start_s - 0.35) <= start <= int(u.start_s + 0.25), lines
        spans = None
        text = " ".join(line.split("** ", 1)[1] for line in lines)
    assert wer(corpus.text, text) <= 0.15, text
    if spans is not None:
        assert len(spans) == len(said)
        for (start, end), u in zip(spans, said, strict=True):
            assert u.start_s - 0.35 <= start <= u.start_s + 0.25
            assert u.end_s <= end <= u.end_s + 0.65


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", ["wav", "flac"])
def test_transcribe_file_in_each_format(files, kind, fmt, capsys):
    corpus, paths = files
    assert main(["transcribe", str(paths[kind]), "--format", fmt]) == 0
    _check(fmt, capsys.readouterr().out, corpus)


def test_out_option_writes_the_file(files, tmp_path, capsys):
    corpus, paths = files
    target = tmp_path / "t.srt"
    assert main(["transcribe", str(paths["flac"]), "--format", "srt", "--out", str(target)]) == 0
    assert capsys.readouterr().out == ""
    _check("srt", target.read_text(encoding="utf-8"), corpus)


def test_missing_model_and_bad_file_are_clear_errors_with_exit_code_2(files, tmp_path):
    _, paths = files
    cli = [sys.executable, "-m", "meetcap", "transcribe"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    r = subprocess.run(cli + [str(paths["wav"]), "--model", str(tmp_path / "gone")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and "does not exist" in r.stderr and r.stdout == ""
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("not audio")
    r = subprocess.run(cli + [str(not_audio)], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 2 and "not an audio file" in r.stderr and r.stdout == ""
    assert normalise(r.stderr)  # a sentence, not a traceback
    assert "Traceback" not in r.stderr


def test_model_given_as_a_directory(files, capsys):
    from meetcap.transcribe.engine import packaged_model_dir

    corpus, paths = files
    args = ["transcribe", str(paths["flac"]), "--model", packaged_model_dir(), "--language", "en"]
    assert main(args + ["--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["model"] == packaged_model_dir() and doc["language"] == "en"
    assert wer(corpus.text, " ".join(s["text"] for s in doc["segments"])) <= 0.15
