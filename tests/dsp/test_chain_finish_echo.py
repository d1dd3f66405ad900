"""finish() with the echo canceller on and resting (the system lane silent) right after a
whole unit: the chain used to fail on its empty last stretch (the rest test took the
peak of no samples) and lose the session's last frames."""

from __future__ import annotations

import numpy as np

from meetcap.dsp.chain import MixChain


def test_finish_with_the_canceller_resting_after_a_whole_unit_keeps_every_frame() -> None:
    chain = MixChain(start_time=1000.0, echo_cancel="on")
    chain.add_source("mic", 16000, 1)
    chain.add_source("system", 16000, 1)
    rng = np.random.default_rng(3)
    frames = []
    for _ in range(30):  # 3 s: the system lane silent, so AEC3 rests after 0.6 s
        chain.push("mic", (0.05 * rng.standard_normal((1600, 1))).astype(np.float32))
        chain.push("system", np.zeros((1600, 1), np.float32))
        frames += chain.render(1600)  # whole units: nothing left due at finish()
    frames += chain.finish()
    assert [f.seq for f in frames] == list(range(len(frames)))
    # 3 s pushed, plus the mixer's margin and the stages' delays played out at the end.
    assert len(frames) >= 30
