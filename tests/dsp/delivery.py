"""Synthetic devices and sound servers for the mixer's timing tests.

A :class:`ClickDevice` runs its own sample clock (``true_rate_hz``) and carries low
seeded noise with one-sample clicks at known true times, so where each click lands on
the mix's timeline says where that source sits. A :class:`Delivery` decides when its
samples reach the client, the way PulseAudio and PipeWire hand them over (measured
here, docs/figures.md "Mix timing"): in blocks of 20 ms grouped into bursts, late by
scheduling hiccups of 10-50 ms, held back by a 500 ms stall and then all at once, or
with a latency that changes after the start. :func:`drive` is the capture worker and
the chain in small: it ticks every ``tick_s`` (with jitter), pushes what was delivered,
and renders the timeline in whole 100 ms units, telling the mixer how far the clock is
ahead of what it renders (``clock_lead``), exactly as :class:`meetcap.dsp.chain.MixChain`
does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from meetcap.dsp.mixer import Mixer
from meetcap.dsp.resample import Resampler

RATE = 16000
CLICK = 0.5  # amplitude of a one-sample marker click
DETECT = 0.05  # clicks come out at >= 0.15; the noise stays < 0.02
UNIT = 1600  # the chain renders in whole 100 ms frames


@dataclass
class Delivery:
    """When a device's samples reach the client. Times in seconds of the master clock."""

    latency_s: float = 0.010
    block_s: float = 0.020
    burst_blocks: int = 1  # blocks handed over together
    hiccups_per_s: float = 0.0  # late deliveries, each 10-50 ms
    stall: tuple[float, float] | None = None  # (start, length): nothing, then everything
    shift: tuple[float, float] | None = None  # (at, extra latency) from then on
    # (device time, length): samples the server drops, never delivered and never flagged
    # (PipeWire's virtual mic dropped 53 ms at a time: lost_samples.py)
    drops: tuple[tuple[float, float], ...] = ()
    drops_flagged: bool = False  # the block after a drop says so (PortAudio's input_overflow)
    seed: int = 0
    _hiccups: list[tuple[float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        if self.hiccups_per_s:
            t = 0.0
            while t < 4 * 3600:
                t += rng.exponential(1 / self.hiccups_per_s)
                self._hiccups.append((t, rng.uniform(0.010, 0.050)))
        self._hiccup_times = np.array([h[0] for h in self._hiccups])

    def available_until(self, t: float) -> float:
        """Device time (s, of its own clock at nominal rate) delivered by master time t."""
        delay = self.latency_s
        if self.shift is not None and t >= self.shift[0]:
            delay += self.shift[1]
        if len(self._hiccup_times):
            i = np.searchsorted(self._hiccup_times, t) - 1
            if i >= 0:
                start, length = self._hiccups[i]
                if t < start + length:
                    t = start  # held back until the hiccup ends
        if self.stall is not None and self.stall[0] <= t < self.stall[0] + self.stall[1]:
            t = self.stall[0]
        burst = self.block_s * self.burst_blocks
        return max(0.0, np.floor((t - delay) / burst) * burst)


class ClickDevice:
    """A device whose clock runs at ``true_rate_hz`` (nominally ``nominal_rate_hz``),
    delivering noise at -50 dBFS with one-sample clicks at chosen true times.

    ``pause=(start, stop)``: its clock stops in that span (a WASAPI loopback in silence):
    no samples, and the clicks of the span never exist.
    """

    def __init__(self, true_rate_hz: float, clicks_s, *, nominal_rate_hz: int = 48000,
                 seed: int = 0, pause=None, delivery: Delivery | None = None,
                 signal: np.ndarray | None = None, detector=None) -> None:
        self.rate = true_rate_hz
        self.nominal = nominal_rate_hz
        self.resampler = Resampler(nominal_rate_hz, 1) if nominal_rate_hz != RATE else None
        self.pause = pause
        self.delivery = delivery or Delivery()
        # A LostSampleDetector the delivered blocks pass through, as in PortAudioCapture:
        # its silence goes before the block.
        self.detector = detector
        self.silence_written = 0
        self.dropped = False  # the last delivery had samples dropped
        self._ring: list[np.ndarray] = []  # captured, not yet pushed (capture_until)
        if signal is None:
            rng = np.random.default_rng(seed)
            signal = (rng.standard_normal(2 * nominal_rate_hz) * 10 ** (-50 / 20)).astype(
                np.float32)
        self._table = np.concatenate([signal, signal]).astype(np.float32)
        self._period = len(signal)
        self._produced = 0
        clicks_s = np.asarray(clicks_s, dtype=float)
        if pause is not None:
            start, stop = pause
            clicks_s = clicks_s[(clicks_s < start) | (clicks_s >= stop)]
        self.clicks_s = clicks_s
        self._click_at = np.round(self._device_index(clicks_s)).astype(np.int64)

    def _device_index(self, t_s):
        """Device sample index of true time ``t_s``."""
        t_s = np.asarray(t_s, dtype=float)
        if self.pause is not None:
            start, stop = self.pause
            t_s = np.where(t_s < start, t_s, np.where(t_s < stop, start, t_s - (stop - start)))
        return t_s * self.rate

    def delivered_by(self, t_s: float) -> np.ndarray:
        """The samples that reach the client by master time ``t_s`` (not given before)."""
        end = max(self._produced, int(self._device_index(self.delivery.available_until(t_s))))
        n = end - self._produced
        offset = self._produced % self._period
        block = np.resize(self._table[offset:], n) if n > len(self._table) - offset else \
            self._table[offset : offset + n].copy()
        inside = self._click_at[(self._click_at >= self._produced) & (self._click_at < end)]
        block[inside - self._produced] = CLICK
        kept = np.ones(n, dtype=bool)
        for at, length in self.delivery.drops:
            first, last = self._device_index([at, at + length])
            kept[max(0, int(first) - self._produced) : max(0, int(last) - self._produced)] = False
        self.dropped = not kept.all()
        self._produced = end
        return block[kept]

    def capture_until(self, t_s: float) -> None:
        """The capture callback at master time ``t_s``: what was delivered by then goes
        through the detector (its silence before the block) into the ring."""
        samples = self.delivered_by(t_s)
        if self.detector is not None and len(samples):
            flagged = self.dropped and self.delivery.drops_flagged
            silence = self.detector.on_block(len(samples), t_s, flagged)
            if silence:
                samples = np.concatenate((np.zeros(silence, np.float32), samples))
                self.silence_written += silence
        self._ring.append(samples)

    def push_until(self, mixer: Mixer, name: str, t_s: float, *, capture: bool = True) -> None:
        """Push what was captured (by the callbacks, and with ``capture`` now)."""
        if capture:
            self.capture_until(t_s)
        samples = np.concatenate(self._ring) if self._ring else np.zeros(0, np.float32)
        self._ring.clear()
        if self.resampler is None:
            mixer.push(name, samples)
        else:
            mixer.push(name, self.resampler.process(samples), self.resampler.pending_samples)


@dataclass
class Run:
    clicks_s: np.ndarray  # timeline times of the clicks found in the mix
    ppm: dict[str, np.ndarray]  # each lane's applied correction after each render
    times_s: np.ndarray  # timeline time of each of those renders
    parts: dict[str, list]


def drive(mixer: Mixer, devices: dict[str, ClickDevice], seconds: float, *,
          tick_s: float = 0.05, tick_jitter_s: float = 0.01, unit: int = UNIT, seed: int = 0,
          keep_parts: bool = False, callback_s: float | None = None, judge=None,
          every_tick=None) -> Run:
    """The worker: tick, push what each device delivered by now, render whole units.

    ``callback_s``: the capture callbacks run this often between ticks (each device's
    detector sees every delivery when it comes, as in PortAudioCapture); otherwise once
    per tick. ``judge``: a LaneLossJudge the worker asks every tick, after the pushes
    (meetcap/audio/pipeline.py); ``every_tick(now)`` runs there too."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    found = []
    ppm: dict[str, list[float]] = {name: [] for name in devices}
    times: list[float] = []
    parts: dict[str, list] = {name: [] for name in devices}
    for name in devices:
        mixer.add_source(name)
    now = 0.0
    callback_at = 0.0
    while mixer.samples_rendered < total:
        now += tick_s + rng.uniform(-tick_jitter_s, tick_jitter_s)
        while callback_s is not None and callback_at + callback_s < now:
            callback_at += callback_s
            for device in devices.values():
                device.capture_until(callback_at)
        for name, device in devices.items():
            device.push_until(mixer, name, now, capture=callback_s is None)
        if judge is not None:
            judge.check({name: device.detector for name, device in devices.items()}, now)
        if every_tick is not None:
            every_tick(now)
        due = min(int(now * RATE), total) - mixer.samples_rendered
        if due < unit and int(now * RATE) < total:
            continue
        n = due - due % unit if int(now * RATE) < total else due
        start = mixer.samples_rendered
        block = mixer.render(n, due - n)
        assert len(block.mix) == n  # the timeline advances by exactly what the clock says
        hits = np.flatnonzero(np.abs(block.mix) > DETECT)
        if len(hits):
            found.append((start + hits, np.abs(block.mix[hits])))
        times.append(mixer.samples_rendered / RATE)
        for name in devices:
            if name in mixer.sources:
                ppm[name].append(mixer.lane(name).correction_ppm)
            if keep_parts:
                parts[name].append(block.parts[name])
    return Run(click_positions(found), {k: np.array(v) for k, v in ppm.items()},
               np.array(times), parts)


def click_positions(found) -> np.ndarray:
    """Collapse runs of above-threshold samples into one position each (the peak)."""
    if not found:
        return np.zeros(0)
    pos = np.concatenate([p for p, _ in found])
    mag = np.concatenate([m for _, m in found])
    starts = np.flatnonzero(np.diff(pos, prepend=-(10**9)) > 40)
    peaks = [
        pos[a:b][np.argmax(mag[a:b])] for a, b in zip(starts, [*starts[1:], len(pos)], strict=True)
    ]
    return np.asarray(peaks) / RATE


def pair_offsets(found_s: np.ndarray, expected_s: np.ndarray, window_s: float = 0.5) -> np.ndarray:
    """For each expected true time, how late its click came out (s); NaN if missing."""
    late = np.full(len(expected_s), np.nan)
    for i, t in enumerate(expected_s):
        near = found_s[(found_s >= t) & (found_s < t + window_s)]
        if len(near) == 1:
            late[i] = near[0] - t
    return late
