"""The two lanes kept on the same footing: their starts, and again after a dry-out.

Each lane starts to play when its FIFO first holds the mixer's margin (the prime,
dsp/mixer.py): its first sample plays ``margin`` after the lane's latest delivery at that
moment. Where that delivery sat in its burst differs from lane to lane (PipeWire hands
blocks over every 21 ms, PulseAudio in 20-60 ms bursts), so the lanes started up to
~20-30 ms apart against the moment their servers handed the sound over (docs/figures.md:
-19 to +26 ms over 18 PipeWire runs), and nothing aligned them afterwards. A lane that
runs dry (PipeWire's clock pauses add up past the margin) is zero-filled and primes
again at its own reference: the two lanes came out of it up to 16 ms apart.

PortAudio's own timing cannot fix that here: its ADC timestamps through the ALSA pulse
PCMs jump by 120-560 ms (PulseAudio) or wander +-20 ms (PipeWire) (audio/lost_samples.py).
What is steady is each stream's delivery floor, ``arrival - count`` at its lowest: when
frame k is handed over at the earliest. At the start it is read from the stream's own
blocks as soon as it held still for a second (about 1.2 s in on PipeWire, before a
recording's first words as a rule: a later move of a lane in speech costs a whole-
recording fit, 1.0000 -> 0.986 for 6.6 ms at 2.2 s in one run); after that it is the
detector's (:meth:`LostSampleDetector.delivered_at`), which a rise does not move. A
lane's *wait* is where the frame it plays now sits on the timeline minus when it was
handed over. Lost samples the judge put back and pauses of
the server's clock (both lanes late alike) leave the two waits equal; a lane's start and
its dry-outs do not. So when both lanes play and both floors are known, and again once
a lane has run dry and primed again, the lane that waits less is delayed by the
difference: silence through its resampler (:meth:`MixChain.delay_source`). From then on
a sound handed over by both servers at the same instant sits at the same timeline sample
in both lanes; the stretch before (the first ~2 s, the second after a dry-out) keeps the
old offset. What the servers add before the handover (a virtual source's extra quantum,
say) cannot be seen from here and stays.

A difference beyond ``max_s`` (the start: one delivery burst) or ``max_after_s`` (after a
dry-out: the margin) is not what these cause: it is left alone and reported in
``skipped``. And the floor is a clock only where it holds still: on PipeWire it holds
within 0.1 ms between events; on PulseAudio (20 s of a keep_time run, both lanes) it
ramps up 15 ms over 3-5 s and drops back, each lane at its own phase, so the two floors
are up to ~15 ms apart at any moment. Nothing is aligned until both lanes' floors held
within ``STEADY_S`` over the last ``STEADY_WINDOWS`` half-seconds, and not at all if they have
not by ``DEADLINE_S`` after both lanes play (or after the dry-out): a jump later in the
session would land in speech. PulseAudio's floors held still ~2 s in, for a moment, in
the one run looked at; its lanes are then aligned there, to those floors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meetcap.audio.lost_samples import LostSampleDetector
from meetcap.constants import SAMPLE_RATE_HZ

# The lanes' starts differ by up to one delivery burst (PulseAudio's reach 60 ms).
MAX_ALIGN_S = 0.06
# After dry-outs, by up to the difference of their zero fills (a real run: 257 ms after
# 3 and 2 dry-outs).
MAX_AFTER_DRY_OUT_S = 1.0
# A difference below this is left (the floors are known to about a tenth of it).
MIN_ALIGN_S = 0.001
# After a dry-out, both lanes must have played this long without one before aligning
# (a pause of the server's clock runs both dry, one after the other).
SETTLE_S = 1.0
# A lane's delivery floor (its lowest arrival - count per half-second) must have held
# within STEADY_S over this many half-seconds (PipeWire's: 0.1 ms; PulseAudio's ramps
# 3-5 ms a second).
STEADY_WINDOWS = 2
STEADY_WINDOW_S = 0.5
STEADY_S = 0.001
# Not steady by then (after both lanes play, or after a dry-out): not aligned this time.
DEADLINE_S = 5.0


def steady_floor(history: list[tuple[float, float]], now: float, *,
                 windows: int = STEADY_WINDOWS, window_s: float = STEADY_WINDOW_S,
                 steady_s: float = STEADY_S) -> float | None:
    """The lowest ``arrival - count`` (s, on the history's scale) of the last ``windows``
    windows of ``window_s``, if each window's lowest held within ``steady_s``; else None
    (rows of a LostSampleDetector's history)."""
    rows = np.asarray(history, dtype=np.float64).reshape(-1, 2)
    window = np.floor((now - rows[:, 0]) / window_s).astype(np.int64)  # 0: the latest
    floors = []
    for k in range(windows):
        inside = rows[window == k, 1]
        if len(inside) == 0:
            return None
        floors.append(float(inside.min()))
    return min(floors) if max(floors) - min(floors) <= steady_s else None


def floor_is_steady(history: list[tuple[float, float]], now: float) -> bool:
    return steady_floor(history, now) is not None


@dataclass
class LaneAligner:
    """Measures both lanes' waits and delays the earlier (see the module doc)."""

    max_s: float = MAX_ALIGN_S
    max_after_s: float = MAX_AFTER_DRY_OUT_S
    waits: dict[str, float] = field(default_factory=dict)  # s, per lane, at the last check
    delays: dict[str, float] = field(default_factory=dict)  # s of silence put in, per lane
    aligned: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    skipped: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _dry_outs: dict[str, int] | None = None  # each lane's count at the last alignment
    _last_counts: dict[str, int] = field(default_factory=dict)
    _quiet_since: float | None = None  # the counts last changed then
    _playing_since: float | None = None  # both lanes primed since then

    @property
    def done(self) -> bool:
        """The lanes' starts have been measured (aligned or skipped)."""
        return self._dry_outs is not None

    def check(self, chain, detectors: dict[str, LostSampleDetector], t0: float,
              now: float) -> None:
        """``chain``: the session's MixChain; ``detectors``: each open lane's; ``t0``: the
        time of timeline sample 0 and ``now``, on the detectors' clock. Every tick."""
        if len(detectors) != 2:
            return
        mixer = chain.mixer
        if any(name not in mixer.sources or not mixer.lane(name).primed for name in detectors):
            self._quiet_since = None
            return
        if self._playing_since is None:
            self._playing_since = now
        since = self._playing_since
        dry_outs = {name: mixer.lane(name).underruns for name in detectors}
        if self._dry_outs is not None:
            if dry_outs == self._dry_outs:
                return
            if self._quiet_since is None or self._last_counts != dry_outs:
                self._quiet_since, self._last_counts = now, dry_outs
            if now - self._quiet_since < SETTLE_S:
                return
            since = self._quiet_since
        floors = {name: steady_floor(d.history(), now) for name, d in detectors.items()}
        if any(floor is None for floor in floors.values()):
            if now - since > DEADLINE_S:  # not a clock to align to: leave it
                self._dry_outs = dry_outs
                self.skipped.append((now, {}))
            return
        waits = {}
        placed = t0 + mixer.samples_rendered / SAMPLE_RATE_HZ  # the next timeline sample
        for name, detector in detectors.items():
            frame = (mixer.lane(name).consumed * detector.rate_hz / SAMPLE_RATE_HZ
                     - self.delays.get(name, 0.0) * detector.rate_hz)
            if self._dry_outs is None:  # the start: the floor the stream shows now
                floor = floors[name]
                assert floor is not None and detector.origin is not None
                handed = (detector.origin + floor - detector.late_frames / detector.rate_hz
                          + frame / detector.rate_hz)
            else:  # later: the detector's, which no rise (pause, step) has moved
                handed = detector.delivered_at(frame)
                if handed is None:
                    return
            waits[name] = placed - handed
        limit = self.max_s if self._dry_outs is None else self.max_after_s
        self._dry_outs = dry_outs
        self.waits = waits
        longest = max(waits.values())
        if longest - min(waits.values()) > limit:
            self.skipped.append((now, waits))
            return
        shifts = {name: longest - wait for name, wait in waits.items()
                  if longest - wait >= MIN_ALIGN_S}
        for name, shift in shifts.items():
            chain.delay_source(name, shift)
            self.delays[name] = self.delays.get(name, 0.0) + shift
        self.aligned.append((now, shifts))
