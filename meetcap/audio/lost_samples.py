"""Samples a sound server never delivered, found by counting them against the clock.

A capture stream promises ``rate`` samples per second. When the server drops some (a
virtual source that overflowed, an ALSA overrun), the frames keep coming without a gap
and the stream has simply fallen behind the clock: everything after plays that much
early against the other lane, for the rest of the session. :class:`LostSampleDetector`
watches, for every delivered block, how late its last sample arrives against what the
count says (``arrival - samples / rate``, on one clock); a loss lifts that for good.
Then the capture writes exactly that much silence into the lane (before the next
block), so what follows is back at its place; only the stretch between the loss and
its detection (1-2 s) plays early. Measured on PipeWire (60 s rig run): the virtual mic
lost 21 ms and 43 ms of content; filled, the mic's voice came back to within 3-6
samples (16 kHz) of its place, where it had stayed 340 and 683 samples early. But see
below: on this server most rises are not losses.

Why the count and not PortAudio's ADC timestamps (measured through the ALSA pulse PCMs
the app opens, 20 s of a tone into two null sinks, tests/audio rig): under PulseAudio
``inputBufferAdcTime`` (= ``currentTime`` - the plugin's reported delay) jumped by
120-560 ms against the count within the first second with nothing lost and then
wandered +-10 ms; under PipeWire it wandered +-20 ms and moved with the count's losses
(it is derived from the same delivery). The lowest ``arrival - count`` over a second
held within 0.1 ms on PipeWire between losses, which showed as clean steps of 43-107 ms
(several in 20 s under load 6-9); on PulseAudio it wandered +-10 ms in slow ramps (a
single second once rose 21 ms and fell back), and no step.

So, per second (``window_s``): the lowest ``arrival - count`` is the delivery's floor
(a late delivery raises the blocks that wait, never the floor of one that catches up).
A floor ``threshold_s`` above the reference in two windows in a row is a rise of the
smaller of the two (one window suffices when PortAudio flagged an input overflow);
anything else (a ramp, a floor that falls) becomes the reference.

**Filled only when PortAudio says so.** A rise of the floor is a loss only if the
samples are gone. Measured on PipeWire (60 s rig runs, load 5-8, each lane's voice
located per 2 s against what its player played): most rises were not: a graph stall
pauses the source's clock (50-100 ms, often both lanes, sometimes the virtual mic alone)
and the content resumes intact, so silence written there moved the voice that much
against its player (9 of 10 rises in one run, whose lane fits fell to 0.09 and 0.08),
while the virtual mic also lost 32 ms of content once with no rise at all. So by
default a rise is written as silence here only when PortAudio flagged an input overflow
(an ALSA overrun: the samples are gone for sure); other rises are counted and reported
(``unfilled``, ``rises``). The other lane tells them apart: the capture worker's
:class:`~meetcap.audio.lane_losses.LaneLossJudge` compares each with the other stream's
delivery (:meth:`history`) and, for a loss, asks for the silence (:meth:`fill_later`),
written before the next block (``late_fills``). ``fill_unflagged=True`` fills every rise
(for a backend whose clock never pauses).

What the count cannot tell: a server that starts delivering each sample later for good
(a latency step) looks exactly like a loss. A loss beyond ``max_fill_s`` is not filled
here: the mixer's lane ran dry past its 200 ms margin, zero-filled the gap and primed
again at its latency (dsp/mixer.py), which put most of it back already.
"""

from __future__ import annotations

import threading
from collections import deque

DEFAULT_WINDOW_S = 1.0
# PulseAudio's floor wanders up to ~10 ms over seconds (one second rose 21 ms once, then
# fell back): a loss must be bigger than that and last two windows.
DEFAULT_THRESHOLD_S = 0.020
# With PortAudio's overflow flag there is no doubt something was lost: a smaller rise
# counts, and one window is enough.
OVERFLOW_THRESHOLD_S = 0.005
# Below the mixer's 200 ms margin with room for a 50 ms late block: a bigger loss runs
# the lane dry there, and its prime puts the lane back (dsp/mixer.py).
DEFAULT_MAX_FILL_S = 0.150
# The first blocks of a new stream arrive in a burst (PulseAudio's plugin hands over its
# first ~0.5 s at once): the floor is taken once the stream runs.
DEFAULT_SETTLE_S = 1.0
# Every block's (arrival, arrival - count) over this long is kept for the other lane to
# compare with (meetcap/audio/lane_losses.py): a rise is reported 1-3 s after it began,
# and its judge looks 1 s either side of it.
HISTORY_S = 8.0


class LostSampleDetector:
    """One capture stream's delivered samples against the clock (see the module doc).

    :meth:`on_block` runs in the audio callback: arithmetic on floats, no lock.
    """

    def __init__(self, rate_hz: int, *, window_s: float = DEFAULT_WINDOW_S,
                 threshold_s: float = DEFAULT_THRESHOLD_S,
                 max_fill_s: float = DEFAULT_MAX_FILL_S,
                 settle_s: float = DEFAULT_SETTLE_S, fill_unflagged: bool = False) -> None:
        self.rate_hz = rate_hz
        self._fill_unflagged = fill_unflagged
        self._window_s = window_s
        self._threshold_s = threshold_s
        self._max_fill_s = max_fill_s
        self._settle_s = settle_s
        self._counted = 0  # frames delivered + silence written, since the first block
        self._origin: float | None = None  # arrival time of the first block
        self._window_start = 0.0
        self._floor = float("inf")  # lowest arrival - count in the open window
        self._overflowed = False  # PortAudio flagged an overflow in the open window
        self._overflow_carry = False  # an overflow whose window did not show the rise
        self._base: float | None = None  # the delivery's floor (s) had nothing been lost
        self._pending: float | None = None  # a rise waiting for a second window
        self._owed_s = 0.0  # the floor's rise not written as silence (left to the mixer)
        # What happened (read by logs and tests).
        self.silence_frames = 0  # silence written in place of lost samples
        self.losses: list[tuple[float, int]] = []  # (seconds into the stream, frames) found
        self.fills: list[tuple[float, int]] = []  # (seconds into the stream, frames) written
        self.left_to_mixer: list[tuple[float, int]] = []  # losses beyond max_fill_s
        self.unfilled: list[tuple[float, int]] = []  # rises no overflow flag confirmed
        # The same, with the floor before each (s, on history()'s scale)
        self.rises: list[tuple[float, int, float]] = []
        # (arrival, arrival - count) of the last HISTORY_S of blocks, both in seconds;
        # read by another thread (lane_losses.py) under the lock.
        self._history: deque[tuple[float, float]] = deque()
        self._history_lock = threading.Lock()
        # Frames of silence another lane's evidence says this stream lost (fill_later),
        # written before the next block; appended and popped from two threads (atomic).
        self._fill_requests: deque[tuple[int, bool]] = deque()
        self.late_fills: list[tuple[float, int]] = []  # (s into the stream, frames) written
        self._late_total = 0

    def on_block(self, frames: int, now: float, overflowed: bool = False) -> int:
        """A block of ``frames`` arrived at ``now`` (seconds, a steady clock): how many
        frames of silence to write before it."""
        origin = self._origin
        if origin is None:
            origin = self._origin = self._window_start = now
        late = 0
        while self._fill_requests:  # judged lost with the other lane's evidence
            frames, owed = self._fill_requests.popleft()
            late += frames
            if owed:  # a rise this detector confirmed (and owes): it is paid now
                self._owed_s = max(0.0, self._owed_s - frames / self.rate_hz)
        if late:
            self._counted += late
            self._late_total += late
            self.silence_frames += late
            self.late_fills.append((now - origin, late))
        self._counted += frames
        behind = now - origin - self._counted / self.rate_hz
        self._floor = min(self._floor, behind)
        with self._history_lock:
            # As delivered: the silence written here on the other lane's word is left
            # out, so a later rise is judged against the delivery itself.
            self._history.append((now, behind + self._late_total / self.rate_hz))
            while now - self._history[0][0] > HISTORY_S:
                self._history.popleft()
        self._overflowed = self._overflowed or overflowed
        if now - self._window_start < self._window_s:
            return late
        fill = self._close_window(now, now - origin)
        if fill:
            self._counted += fill
            self.silence_frames += fill
            self.fills.append((now - origin, fill))
        return late + fill

    @property
    def late_frames(self) -> int:
        """Frames of silence written on the other lane's word so far (:meth:`fill_later`)."""
        return self._late_total

    @property
    def origin(self) -> float | None:
        """Arrival time of the stream's first block (the clock of :meth:`on_block`)."""
        return self._origin

    def history(self) -> list[tuple[float, float]]:
        """(arrival, arrival - count) of every block of the last HISTORY_S seconds, in
        seconds on the clock of :meth:`on_block`; a copy, safe from any thread."""
        with self._history_lock:
            return list(self._history)

    def fill_later(self, frames: int, *, owed: bool = True) -> None:
        """Write ``frames`` of silence before the next block: samples this stream lost,
        told by the other lane (meetcap/audio/lane_losses.py). ``owed``: a rise this
        detector reported (:attr:`rises`); False for one it has not confirmed yet (then
        the silence simply keeps its floor where it was). Any thread."""
        if frames > 0:
            self._fill_requests.append((int(frames), owed))

    def delivered_at(self, frame: int) -> float | None:
        """When the stream's ``frame`` (counted from its first, before any loss) is
        handed over at the floor of the delivery, on the clock of :meth:`on_block`; None
        until the floor is known. Where two lanes' streams start against each other."""
        if self._origin is None or self._base is None:
            return None
        return self._origin + self._base + frame / self.rate_hz

    def _close_window(self, now: float, since_start: float) -> int:
        """Close the window that ends at ``now``, ``since_start`` seconds after the first
        block: the frames of silence a loss needs."""
        # An overflow late in a window shows in the next window's floor: it counts there.
        floor, overflowed = self._floor, self._overflowed or self._overflow_carry
        self._overflow_carry = self._overflowed
        self._floor, self._overflowed, self._window_start = float("inf"), False, now
        if since_start < self._settle_s:
            return 0
        if self._base is None:
            self._base = floor
            return 0
        # Where the floor belongs: the delivery's own, plus the rises not written.
        rise = floor - (self._base + self._owed_s)
        threshold = OVERFLOW_THRESHOLD_S if overflowed else self._threshold_s
        if rise <= threshold:
            self._base, self._pending = floor - self._owed_s, None  # ramps, falls: followed
            return 0
        self._overflow_carry = False
        if self._pending is None and not overflowed:
            self._pending = rise  # one raised window may be a blip: wait for the next
            return 0
        lost = min(rise, self._pending) if self._pending is not None else rise
        self._pending = None
        at, frames = since_start, round(lost * self.rate_hz)
        self.losses.append((at, frames))
        if not (overflowed or self._fill_unflagged):
            # Where the delivery's floor sat before it (as history() counts), so the
            # other lane's judge finds when it began (meetcap/audio/lane_losses.py).
            self.rises.append((at, frames, self._base + self._owed_s
                               + self._late_total / self.rate_hz))
            self._owed_s += lost  # most likely a paused clock, the content intact
            self.unfilled.append((at, frames))
            return 0
        if lost > self._max_fill_s:
            # Beyond the mixer's margin: its lane ran dry, zero-filled the gap and primed
            # again at its latency, which put it back already.
            self._owed_s += lost
            self.left_to_mixer.append((at, frames))
            return 0
        return frames  # the floor comes back to the base: the next windows read no rise
