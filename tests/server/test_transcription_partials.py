"""Partials as an operator's cost dial: ``meetcap-server --transcribe --partials on|off``
and ``--partial-budget PERCENT``, passed through to the transcription worker processes.

Real meetcap-server processes, the packaged Whisper tiny.en, the real client Streamer
over real websockets, espeak-ng sentences (test_transcription.py's corpus and helpers).
"""

from __future__ import annotations

import pytest

from meetcap.errors import ConfigError
from meetcap.server.cli import build_parser, transcription_from_args
from meetcap.transcribe import formats
from tests.server.test_cli import server_cli
from tests.server.test_transcription import (  # noqa: F401 - speech is a fixture
    SERVER,
    Heard,
    same_finals,
    speech,
    stored,
    streamer,
    submit,
)

# Twice real time: fast enough for a lean test, slow enough that a worker keeps up and
# computes partials (partials are dropped while it is more than 1 s behind).
PACE_S = 0.05


def stream_and_listen(server, frames, tmp_path, name: str) -> tuple[Heard, str]:
    """Stream the corpus to ``server`` as a live client would; what it heard, and the
    session id."""
    heard = Heard()
    s = streamer(server.url, tmp_path / name, heard)
    submit(s, frames, pace_s=PACE_S)
    result = s.finish(90)
    assert result.ok, result.message
    return heard, result.session_id


def test_partials_off_gives_the_same_finals_and_no_partial_where_on_gives_partials(
    speech, meetcap_server_factory, tmp_path  # noqa: F811 - the imported fixture
):
    _, frames, want = speech
    # The control, same audio and pace: partials on, with a budget as large as allowed,
    # so partials come wherever one is due (a budget reaches the worker process).
    on = meetcap_server_factory(**SERVER, partial_budget=100)
    heard_on, _ = stream_and_listen(on, frames, tmp_path, "on")
    on.terminate()
    assert "partials on, within 100 % of the audio time" in on.log_text()
    assert any(not x.final for x in heard_on.segments), "the control heard no partial"
    same_finals(heard_on.finals, want)

    off = meetcap_server_factory(**SERVER, partials="off")
    heard_off, session_id = stream_and_listen(off, frames, tmp_path, "off")
    assert "partials off (finals only)" in off.log_text()
    assert [x for x in heard_off.segments if not x.final] == [], "a partial with --partials off"
    same_finals(heard_off.finals, want)  # finals unchanged
    same_finals(formats.from_json(stored(off.data_dir, session_id)[0]), want)


@pytest.mark.parametrize("value", ["0", "-3", "abc", "nan", "inf", "101", ""])
def test_a_partial_budget_that_is_not_a_percentage_is_refused_by_name(value, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--transcribe", "--partial-budget", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --partial-budget: {value!r} is not a share of the audio time" in err
    assert "above 0 and at most 100" in err


@pytest.mark.parametrize("value,fraction", [("3", 0.03), ("0.5", 0.005), ("12%", 0.12),
                                            ("100", 1.0)])
def test_a_partial_budget_in_percent_reaches_the_transcription_settings(value, fraction):
    args = build_parser().parse_args(["--transcribe", "--partial-budget", value])
    config = transcription_from_args(args)
    assert config is not None and config.partials
    assert config.partial_budget == pytest.approx(fraction)


def test_the_help_names_the_transcribers_default_budget():
    """The server's main process does not import the transcriber (numpy): its help says
    the default budget in words, and this keeps the words true."""
    from meetcap.transcribe.stream import DEFAULT_PARTIAL_BUDGET

    text = " ".join(build_parser().format_help().split())
    assert f"(None: the transcriber's {DEFAULT_PARTIAL_BUDGET * 100:g} %)" in text


def test_partials_default_on_with_the_transcribers_budget_and_off_when_asked():
    config = transcription_from_args(build_parser().parse_args(["--transcribe"]))
    assert config is not None and config.partials and config.partial_budget is None
    config = transcription_from_args(
        build_parser().parse_args(["--transcribe", "--partials", "off"]))
    assert config is not None and not config.partials


@pytest.mark.parametrize("argv,words", [
    (["--transcribe", "--partials", "off", "--partial-budget", "5"], "no partials to budget"),
    (["--partial-budget", "5"], "need --transcribe"),
    (["--partials", "off"], "need --transcribe"),
])
def test_partial_options_that_contradict_each_other_are_refused(argv, words):
    with pytest.raises(ConfigError, match=words):
        transcription_from_args(build_parser().parse_args(argv))


def test_the_server_refuses_to_start_with_a_bad_partial_budget(tmp_path):
    result = server_cli("--transcribe", "--port", "0", "--data-dir", str(tmp_path),
                        "--partial-budget", "0",
                        env={"MEETCAP_TOKENS": "alice:alice-token-123"})
    assert result.returncode == 2 and "listening" not in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "meetcap-server: error: argument --partial-budget: '0' is not a share of the audio "
        "time: give a percentage above 0 and at most 100, e.g. 3 (or --partials off for no "
        "partials at all)"
    )
