"""What `meetcap record` prints and returns when it ends (no capture needed)."""

from __future__ import annotations

import argparse

from meetcap.cli.record import EXIT_FAILED, EXIT_FRAMES_LEFT, EXIT_OK, _report
from meetcap.client.status import FinishResult


class _Done:
    """What _report reads of a finished Recorder."""

    def __init__(self, frames: int, failure: str | None = None,
                 corrections: dict[str, tuple[float, float]] | None = None) -> None:
        self.frames_recorded = frames
        self.last_failure = failure
        self.last_corrections_ppm = corrections or {}


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(**{"out": None, "url": None, **kw})


def test_frames_the_server_did_not_confirm_give_exit_3_and_say_where_they_wait(capsys):
    result = FinishResult(ok=False, message="the server did not confirm every frame",
                          frames_left=4, earlier=(FinishResult(ok=False, message="refused",
                                                               frames_left=6),))
    code = _report(_args(url="ws://x/v1/stream"), _Done(40), result)
    out = capsys.readouterr().out
    assert code == EXIT_FRAMES_LEFT
    assert "recorded 40 frames (4.0 s)" in out
    assert "earlier session: refused" in out
    assert "10 frames left in the spool (see `meetcap spool`)" in out


def test_a_recording_that_stopped_early_exits_2_even_when_everything_was_delivered(capsys):
    result = FinishResult(ok=True, message="session s1: 12 frames (1.2 s) stored and verified")
    code = _report(_args(url="ws://x/v1/stream", out="a.wav"), _Done(12, "Recording stopped."),
                   result)
    assert code == EXIT_FAILED
    assert "recorded 12 frames (1.2 s) to a.wav" in capsys.readouterr().out


def test_a_complete_file_only_recording_exits_0(capsys):
    code = _report(_args(out="a.wav"), _Done(30), FinishResult(ok=True, message="recorded"))
    assert code == EXIT_OK


def test_the_drift_correction_each_lane_applied_is_printed_in_ppm(capsys):
    done = _Done(30, corrections={"mic": (0.0, 0.0), "system": (-12.5, 40.25)})
    _report(_args(out="a.wav"), done, FinishResult(ok=True, message="recorded"))
    out = capsys.readouterr().out
    assert "drift correction: mic +0.0 ppm (at most 0.0), system -12.5 ppm (at most 40.2)" in out
