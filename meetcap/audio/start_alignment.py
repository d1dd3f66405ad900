"""The two lanes' starts, put on the same footing once both streams run.

Each lane starts to play when its FIFO first holds the mixer's margin (the prime,
dsp/mixer.py): its first sample plays ``margin`` after the lane's latest delivery at that
moment. Where that delivery sat in its burst differs from lane to lane (PipeWire hands
blocks over every 21 ms, PulseAudio in 20-60 ms bursts), so the lanes started up to
~20-30 ms apart against the moment their servers handed the sound over (docs/figures.md:
-19 to +26 ms over 18 PipeWire runs), and nothing aligned them afterwards.

PortAudio's own timing cannot fix that here: its ADC timestamps through the ALSA pulse
PCMs jump by 120-560 ms (PulseAudio) or wander +-20 ms (PipeWire) (audio/lost_samples.py).
What is steady is each stream's delivery floor, ``arrival - count`` at its lowest: when
frame k is handed over at the earliest (:meth:`LostSampleDetector.delivered_at`), known
about 2 s into the stream. So once both floors and both lanes' first samples on the
timeline are known, each lane's *wait* (timeline place of its frame 0 minus its handover)
is measured, and the lane that waits less is delayed by the difference: silence through
its resampler (:meth:`MixChain.delay_source`). From then on a sound handed over by both
servers at the same instant sits at the same timeline sample in both lanes; the first
~2 s keep the old offset. What the servers themselves add before the handover (a virtual
source's extra quantum, say) cannot be seen from here and stays.

A difference beyond ``max_s`` is not a burst phase (a floor taken in PulseAudio's first
burst, a loss before the floor was known): it is left alone and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from meetcap.audio.lost_samples import LostSampleDetector
from meetcap.constants import SAMPLE_RATE_HZ

# The lanes' starts differ by up to one delivery burst (PulseAudio's reach 60 ms).
MAX_ALIGN_S = 0.06


@dataclass
class StartAligner:
    """Measures both lanes' waits once and delays the earlier (see the module doc)."""

    max_s: float = MAX_ALIGN_S
    done: bool = False
    waits: dict[str, float] = field(default_factory=dict)  # s, per lane
    delays: dict[str, float] = field(default_factory=dict)  # s of silence put in, per lane

    def check(self, chain, detectors: dict[str, LostSampleDetector], t0: float) -> None:
        """``chain``: the session's MixChain; ``detectors``: each open lane's; ``t0``:
        the time of timeline sample 0 on the detectors' clock. Acts once, when it can."""
        if self.done or len(detectors) != 2:
            return
        waits = {}
        for name, detector in detectors.items():
            handed = detector.delivered_at(0)
            started = chain.mixer.lane(name).started_at if name in chain.mixer.sources else None
            if handed is None or started is None:
                return
            waits[name] = t0 + started / SAMPLE_RATE_HZ - handed
        self.done = True
        self.waits = waits
        longest = max(waits.values())
        if longest - min(waits.values()) > self.max_s:
            return
        for name, wait in waits.items():
            if longest - wait > 0:
                chain.delay_source(name, longest - wait)
                self.delays[name] = longest - wait
