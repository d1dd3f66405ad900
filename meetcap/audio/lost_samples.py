"""Samples a sound server never delivered, found by counting them against the clock.

A capture stream promises ``rate`` samples per second. When the server drops some (a
virtual source that overflowed, an ALSA overrun), the frames keep coming without a gap
and the stream has simply fallen behind the clock: everything after plays that much
early against the other lane, for the rest of the session. :class:`LostSampleDetector`
watches, for every delivered block, how late its last sample arrives against what the
count says (``arrival - samples / rate``, on one clock); a loss lifts that for good.
Then the capture writes exactly that much silence into the lane (before the next
block), so what follows is back at its place; only the stretch between the loss and
its detection (1-2 s) plays early.

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
A floor ``threshold_s`` above the reference in two windows in a row is a loss of the
smaller rise (one window suffices when PortAudio flagged an input overflow); anything
else (a ramp, a floor that falls) becomes the reference.

**Across lanes.** The count cannot tell samples lost from a source whose clock paused:
under PipeWire a graph stall pauses the players and every capture together (the count
falls behind the clock, the content is intact). Filled with silence, both voices moved
190 ms against what was played (measured: 60 s rig run, load 7). What the mix needs is
the lanes in step with each other, so a lane fills only what it lost beyond the lane
that lost least (its peers: the other streams open in this process): a stall of the
whole graph fills nothing, the virtual mic dropping 53 ms alone fills 53 ms (measured
here: 288 ms lost by the mic while the monitor lost 192 ms in one stall).
A loss waits ``hold_s`` for the peers' count to show theirs (their windows run on
their own phase). A lane with no peer fills all it lost.

What the count cannot tell either: a server that starts delivering each sample later for
good (a latency step) looks exactly like a loss. A loss beyond ``max_fill_s`` is not
filled here: the mixer's lane ran dry past its 200 ms margin, zero-filled the gap and
primed again at its latency (dsp/mixer.py), which put it back already; a peer that lost
less in the same stall then fills the difference, so the lanes stay in step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

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
# A peer finds the same stall up to two windows later (its windows have their own phase).
DEFAULT_HOLD_S = 2.0


class LostSampleDetector:
    """One capture stream's delivered samples against the clock (see the module doc).

    :meth:`on_block` runs in the audio callback: arithmetic on floats, no lock (a peer's
    ``lost_s`` is one float, read whole under the GIL).
    """

    def __init__(self, rate_hz: int, *, window_s: float = DEFAULT_WINDOW_S,
                 threshold_s: float = DEFAULT_THRESHOLD_S,
                 max_fill_s: float = DEFAULT_MAX_FILL_S,
                 settle_s: float = DEFAULT_SETTLE_S, hold_s: float = DEFAULT_HOLD_S,
                 peers: Callable[[], Iterable[LostSampleDetector]] = lambda: ()) -> None:
        self.rate_hz = rate_hz
        self._window_s = window_s
        self._threshold_s = threshold_s
        self._max_fill_s = max_fill_s
        self._settle_s = settle_s
        self._hold_s = hold_s
        self._peers = peers
        self._counted = 0  # frames delivered + silence written, since the first block
        self._origin: float | None = None  # arrival time of the first block
        self._window_start = 0.0
        self._floor = float("inf")  # lowest arrival - count in the open window
        self._overflowed = False  # PortAudio flagged an overflow in the open window
        self._base: float | None = None  # the delivery's floor (s) had nothing been lost
        self._pending: float | None = None  # a rise waiting for a second window
        self._held: list[tuple[float, float]] = []  # (found at, seconds) not yet settled
        self._settled_s = 0.0  # lost seconds older than hold_s
        self._excused_s = 0.0  # lost seconds the mixer's prime put back (see _close_window)
        self._overflow_carry = False  # an overflow whose window did not show the rise
        # What happened (read by the worker, logs and tests).
        self.lost_s = 0.0  # everything this stream's count fell behind, in seconds
        self.silence_frames = 0  # silence written in place of lost samples
        self.losses: list[tuple[float, int]] = []  # (seconds into the stream, frames) found
        self.fills: list[tuple[float, int]] = []  # (seconds into the stream, frames) written
        self.left_to_mixer: list[tuple[float, int]] = []  # rises beyond max_fill_s

    def on_block(self, frames: int, now: float, overflowed: bool = False) -> int:
        """A block of ``frames`` arrived at ``now`` (seconds, a steady clock shared with
        the peers): how many frames of silence to write before it."""
        if self._origin is None:
            self._origin = self._window_start = now
        self._counted += frames
        self._floor = min(self._floor, now - self._origin - self._counted / self.rate_hz)
        self._overflowed = self._overflowed or overflowed
        if now - self._window_start >= self._window_s:
            self._close_window(now)
        while self._held and now - self._held[0][0] >= self._hold_s:
            self._settled_s += self._held.pop(0)[1]
        fill = self._fill_now()
        if fill:
            self._counted += fill
            self.silence_frames += fill
            self.fills.append((now - self._origin, fill))
        return fill

    @property
    def unplaced_s(self) -> float:
        """Lost seconds not (yet) put back by silence here or by the mixer's prime."""
        return self.lost_s - self.silence_frames / self.rate_hz - self._excused_s

    def _fill_now(self) -> int:
        """Frames of silence owed: what this lane lost (settled) and nothing put back,
        beyond the least of that among its peers (a stall they all had moves nothing
        between them)."""
        mine = self._settled_s - self.silence_frames / self.rate_hz  # (excused never settles)
        if mine <= 0:
            return 0
        common = min((peer.unplaced_s for peer in self._peers() if peer is not self),
                     default=0.0)
        return max(0, round((mine - max(0.0, min(common, mine))) * self.rate_hz))

    def _close_window(self, now: float) -> None:
        # An overflow late in a window shows in the next window's floor: it counts there.
        floor, overflowed = self._floor, self._overflowed or self._overflow_carry
        self._overflow_carry = self._overflowed
        self._floor, self._overflowed, self._window_start = float("inf"), False, now
        if now - self._origin < self._settle_s:
            return
        # Where the floor belongs: the delivery's own floor, plus what was lost and is not
        # (yet) written as silence (held for the peers, or shared with them).
        owed = self.lost_s - self.silence_frames / self.rate_hz
        if self._base is None:
            self._base = floor - owed
            return
        rise = floor - (self._base + owed)
        threshold = OVERFLOW_THRESHOLD_S if overflowed else self._threshold_s
        if rise <= threshold:
            self._base, self._pending = floor - owed, None  # ramps and falls are followed
            return
        self._overflow_carry = False
        if self._pending is None and not overflowed:
            self._pending = rise  # one raised window may be a blip: wait for the next
            return
        lost = min(rise, self._pending) if self._pending is not None else rise
        self._pending = None
        self.lost_s += lost
        self.losses.append((now - self._origin, round(lost * self.rate_hz)))
        if lost > self._max_fill_s:
            # Beyond the mixer's margin: its lane ran dry, zero-filled the gap and primed
            # again at its latency, which put this much back already.
            self._excused_s += lost
            self.left_to_mixer.append((now - self._origin, round(lost * self.rate_hz)))
        else:
            self._held.append((now, lost))
