"""The whole pure pipeline, from device blocks to numbered frames, in one object.

::

    push(name, block)                                   render(n)
      raw block --> clip count, Resampler (16 kHz mono) --> Mixer lane (FIFO, drift)
                                                              | gain / mute per source
                                                              v
                                   mic lane echo-cancelled, system lane the reference
                                   (dsp/echo.py; the echo score is measured there too),
                                   [noise-suppressed] (dsp/noise.py); the system lane
                                   delayed as much, so both stay on one timeline
                                                              v
                                        sum --> Normalizer (AGC + limiter) --> VadStream
                                                                           --> Framer --> [Frame]

The capture worker thread owns a :class:`MixChain` and is its only caller (nothing here
is thread-safe, nothing here blocks). It pushes every captured block as it comes, and
renders as the master clock says: ``n = round((time.monotonic() - t0) * 16000) -
samples_rendered``. Levels are snapshots it may publish at any rate.

``push`` only checks and copies; ``render`` advances the clock and runs the stages over
whole 100 ms units once they are due, so the cost does not depend on how often the
worker wakes (bench/pipeline.py measures it).
"""

from __future__ import annotations

import math

import numpy as np

from meetcap.constants import CAPTURE_SOURCES, FRAME_SAMPLES, SOURCE_MIX
from meetcap.dsp.delay import DelayLine
from meetcap.dsp.echo import MicEchoCanceller
from meetcap.dsp.echo_score import EchoScore
from meetcap.dsp.framer import Framer
from meetcap.dsp.health import DEFAULT_SILENT_AFTER_S, HealthTracker
from meetcap.dsp.meter import CLIP_LEVEL, LevelMeter, count_clips
from meetcap.dsp.mixer import DEFAULT_TARGET_LATENCY_MS, MixBlock, Mixer, SourcePart
from meetcap.dsp.normalize import Normalizer
from meetcap.dsp.resample import Resampler, check_block
from meetcap.dsp.speakers import SpeakerDetector
from meetcap.dsp.tracks import TrackMaker
from meetcap.dsp.vad import WINDOW_MS as VAD_WINDOW_MS
from meetcap.dsp.vad import VadStream
from meetcap.errors import ModelError
from meetcap.frames import Frame
from meetcap.levels import LevelExtras, SourceLevels

# The peaks of a device block without ndarray.max/min's Python wrappers (numpy's
# _methods): the same reduction, ~1 us less a call, twice per source per 100 ms unit.
_largest = np.maximum.reduce
_smallest = np.minimum.reduce

# The chain does its work in whole frames: render(n) advances the clock at once, but the
# stages run when a full 100 ms is due (and on everything due). Frames leave every 100 ms
# and the meters use 100 ms windows anyway, so nothing a user sees changes; the cost per
# second no longer depends on how often the worker wakes.
PROCESS_UNIT_SAMPLES = FRAME_SAMPLES
# The VAD runs on batches of 6 windows (192 ms) back to back. Silero's ~2.3 MB of weights
# and the rest of the chain evict each other from the CPU caches when they alternate
# (2 MB L2 per core on the build VM): bench/pipeline.py --vad-batch-ms measured ~140x real
# time with single windows (32 ms), 158-164x with 192 ms batches and ~172x with 288 ms.
# The price is latency: with the VAD on, a frame waits up to ~0.2 s more for its verdict.
# The verdicts themselves do not depend on the batch size.
DEFAULT_VAD_BATCH_MS = 192.0
# Echo cancellation of the mic lane (CaptureSettings.echo_cancel, --echo-cancel).
ECHO_AUTO, ECHO_ON, ECHO_OFF = "auto", "on", "off"
ECHO_MODES = (ECHO_AUTO, ECHO_ON, ECHO_OFF)


class MixChain:
    """Device blocks of any number of sources in, 100 ms speech-ready frames out.

    ``start_time`` is the wall-clock time (``time.time()``) of timeline sample 0; frame
    ``seq`` then starts at ``start_time + seq * 0.1``. Frames come out 219-319 ms after
    their audio was captured (200 ms mixer margin, 14 ms of the mic lane's echo and noise
    stages that both lanes wait, 5 ms limiter look-ahead, and up to 100 ms until the
    100 ms unit that holds it is due), plus up to
    ~0.3 s more while the VAD is on: a frame waits for the VAD batch (``vad_batch_ms``,
    192 ms) that covers its end, and up to 96 ms for a speech start to be confirmed
    (which is then dated back to its first window).
    """

    def __init__(
        self,
        *,
        start_time: float,
        normalize: bool = True,
        vad_model_path: str | None = None,
        silent_after_s: float = DEFAULT_SILENT_AFTER_S,
        target_latency_ms: float = DEFAULT_TARGET_LATENCY_MS,
        vad_batch_ms: float = DEFAULT_VAD_BATCH_MS,
        who_spoke: bool = False,
        tracks: bool = False,
        echo_cancel: str = ECHO_OFF,
        noise_suppress: bool = False,
    ) -> None:
        if not math.isfinite(start_time):
            raise ValueError(f"start_time must be a wall-clock epoch time, got {start_time!r}")
        self._silent_after_s = silent_after_s
        self._mixer = Mixer(target_latency_ms=target_latency_ms)
        self._resamplers: dict[str, Resampler] = {}
        self._trackers: dict[str, HealthTracker] = {}
        self._meters: dict[str, LevelMeter] = {}
        for name in CAPTURE_SOURCES:
            self._source_state(name)
        self._normalizer = Normalizer(enabled=normalize)
        batch_windows = max(1, round(vad_batch_ms / VAD_WINDOW_MS))
        # The gate skips the model on silence and low room noise, same verdicts (vad_gate).
        self._vad = VadStream(vad_model_path, batch_windows=batch_windows, gate=True)
        # who_spoke: a VAD per lane instead of the mix's, and who spoke on every frame.
        self._speakers = (
            SpeakerDetector(
                vad_model_path, batch_windows=batch_windows,
                delay_samples=self._normalizer.latency_samples,
            )
            if who_spoke else None
        )
        # tracks: the two lanes as two channels of every frame too (dsp/tracks.py).
        self._tracks = TrackMaker(normalize=normalize) if tracks else None
        self._vad_enabled = False
        self._framer = Framer(start_time)
        self._mix_tracker = HealthTracker(SOURCE_MIX, silent_after_s=silent_after_s)
        self._mix_meter = LevelMeter()
        self._mix_clips_seen = 0
        self._raw: dict[str, list[np.ndarray]] = {}  # device blocks not yet resampled
        self._clock = 0  # timeline samples the caller has rendered
        self._due = 0  # of which not yet processed (less than one unit)
        self._levels: dict[str, SourceLevels] | None = None  # cached until something changes
        # The mic lane's echo canceller, the system lane its reference (dsp/echo.py),
        # and the noise suppressor after it. Their delays (AEC3's 8 ms, the suppressor's
        # 6 ms) hold whether each is on or off, and the system lane waits as long, so the
        # lanes stay aligned in the mix, the tracks and who-spoke, and a switch never
        # moves either (dsp/noise.py: why not move the system lane at a switch instead).
        self._echo = MicEchoCanceller(noise_suppression=noise_suppress)
        self._system_delay = DelayLine(self._echo.latency_samples)
        # The latest rendered block as it enters the sum (the mic part echo-cancelled):
        # for taps on the worker thread (tests/audio/test_echo_pulseaudio.py, tracks).
        self.last_block: MixBlock | None = None
        self._echo_mode = ECHO_AUTO
        self.set_echo_cancel(echo_cancel)

    # --- sources --------------------------------------------------------------------

    def _source_state(self, name: str) -> tuple[HealthTracker, LevelMeter]:
        tracker = self._trackers.get(name)
        if tracker is None:
            if name == SOURCE_MIX:
                raise ValueError(f"{SOURCE_MIX!r} names the mix; pick another source name")
            tracker = self._trackers[name] = HealthTracker(
                name, silent_after_s=self._silent_after_s
            )
            self._meters[name] = LevelMeter()
        return tracker, self._meters[name]

    def add_source(self, name: str, rate_hz: int, channels: int) -> None:
        """(Re)open source ``name`` delivering ``channels`` at ``rate_hz``.

        The timeline continues; a reopened source starts a fresh resampler (whatever the
        old one still held is played out first) and primes its FIFO again.
        """
        resampler = Resampler(rate_hz, channels)  # validates before anything changes
        self._close_resampler(name)
        self._resamplers[name] = resampler
        self._raw[name] = []
        self._mixer.add_source(name)
        tracker, meter = self._source_state(name)
        tracker.start()
        meter.reset()
        self._update_mix_activity()

    def remove_source(self, name: str) -> None:
        """Close source ``name``: its queued audio still plays out, then it contributes
        silence. Its levels read STOPPED, or LOST after :meth:`mark_lost`."""
        self._close_resampler(name)
        self._mixer.remove_source(name)
        if name in self._trackers:
            self._trackers[name].stop()
            self._meters[name].reset()
        self._update_mix_activity()

    def _close_resampler(self, name: str) -> None:
        self._levels = None
        if name in self._resamplers:
            self._resample_pending(name)
            self._mixer.push(name, self._resamplers.pop(name).flush())

    def _resample_pending(self, name: str) -> None:
        blocks = self._raw[name]
        if not blocks:
            return
        joined = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
        blocks.clear()
        if joined.size:
            top = float(_largest(joined, axis=None))
            bottom = float(_smallest(joined, axis=None))
            if not (math.isfinite(top) and math.isfinite(bottom)):
                # A broken driver's NaN or inf would poison every filter after it: zero
                # those samples and count them as clipped, so the user sees bad input.
                self._trackers[name].note_clips(int(np.count_nonzero(~np.isfinite(joined))))
                joined = np.nan_to_num(joined, nan=0.0, posinf=0.0, neginf=0.0)
                top, bottom = float(joined.max()), float(joined.min())
            if top >= CLIP_LEVEL or bottom <= -CLIP_LEVEL:
                self._trackers[name].note_clips(count_clips(joined))
        resampler = self._resamplers[name]
        self._mixer.push(name, resampler.process_valid(joined), resampler.pending_samples)

    def _update_mix_activity(self) -> None:
        active = any(t.active for t in self._trackers.values())
        if active and not self._mix_tracker.active:
            self._mix_tracker.start()
        elif not active:
            self._mix_tracker.stop()

    def mark_lost(self, name: str) -> None:
        """The capture layer lost ``name``'s device: health LOST until it is re-added."""
        self._source_state(name)[0].mark_lost()
        self._levels = None

    def set_overruns(self, name: str, count: int) -> None:
        """The capture layer's overrun total for the current opening of ``name``."""
        self._source_state(name)[0].set_overruns(count)
        self._levels = None

    def push(self, name: str, block: np.ndarray) -> None:
        """Queue one device block of ``name``: float32 ``(frames, channels)``, any size.

        Cheap: the block is checked and copied; clip counting and resampling happen with
        the next 100 ms unit.
        """
        resampler = self._resamplers.get(name)
        if resampler is None:
            raise ValueError(
                f"source {name!r} is not open: call add_source({name!r}, rate_hz, channels) first"
            )
        checked = check_block(block, resampler.channels)
        # The caller's buffer is reused: keep our own copy until the next unit runs.
        self._raw[name].append(checked.copy() if checked is block else checked)

    def delay_source(self, name: str, seconds: float) -> None:
        """Delay ``name`` by ``seconds`` from here on: that much silence after the blocks
        pushed so far, through its resampler like them (so nothing is reordered). The
        capture worker aligns the lanes with it (audio/lane_alignment.py)."""
        resampler = self._resamplers.get(name)
        if resampler is None:
            raise ValueError(f"source {name!r} is not open: nothing to delay")
        frames = round(seconds * resampler.rate_hz)
        if frames > 0:
            self._raw[name].append(np.zeros((frames, resampler.channels), np.float32))

    # --- settings -------------------------------------------------------------------

    def set_gain_db(self, name: str, gain_db: float) -> None:
        """Gain of ``name`` before the mix: -inf (off) .. +12 dB; ConfigError otherwise."""
        self._mixer.gain(name).set_gain_db(gain_db)

    def set_muted(self, name: str, muted: bool) -> None:
        """Mute ``name`` in the mix (exact zeros); its device health is still watched."""
        self._mixer.gain(name).set_muted(muted)

    def set_normalize(self, enabled: bool) -> None:
        """AGC on or off (it glides to/from unity gain); the limiter always stays on."""
        self._normalizer.enabled = enabled
        if self._tracks is not None:
            self._tracks.set_normalize(enabled)

    @property
    def normalize_enabled(self) -> bool:
        return self._normalizer.enabled

    def set_vad(self, enabled: bool) -> None:
        """Run the VAD from now on, or stop it (frames then carry speech=False).

        Turning it on loads the shared model if needed and raises :class:`ModelError` at
        once if it cannot; the chain then stays without VAD.
        """
        self._levels = None
        vad = self._speakers or self._vad
        if enabled and not self._vad_enabled:
            vad.load()
            vad.reset()
            self._vad_enabled = True
        elif not enabled and self._vad_enabled:
            self._framer.push_speech(vad.flush())
            self._vad_enabled = False

    @property
    def vad_enabled(self) -> bool:
        return self._vad_enabled

    def set_echo_cancel(self, mode: str) -> None:
        """Echo cancellation of the mic lane: "on", "off", or "auto" (on while the echo
        score says the speakers reach the mic). ValueError for anything else."""
        if mode not in ECHO_MODES:
            raise ValueError(f"echo cancellation is one of {', '.join(ECHO_MODES)}, not {mode!r}")
        if mode == ECHO_ON and not self._echo.available:
            self._echo.set_enabled(True)  # raises ConfigError: what to install
        self._echo_mode = mode
        self._levels = None
        self._update_echo()

    def set_noise_suppress(self, enabled: bool) -> None:
        """WebRTC noise suppression of the mic lane (after the echo canceller), from the
        next unit; crossfaded over 10 ms at the same delay, so the lane never moves and
        no sample is lost (dsp/noise.py)."""
        self._echo.set_noise_suppression(enabled)

    @property
    def echo_cancelling(self) -> bool:
        """The canceller runs now (its mode, and in "auto" the echo score, say so)."""
        return self._echo.enabled

    @property
    def echo_score(self) -> EchoScore:
        return self._echo.score

    def _update_echo(self) -> None:
        want = self._echo_mode == ECHO_ON or (
            self._echo_mode == ECHO_AUTO and self._echo.score.reaches_mic
            and self._echo.available)  # without pywebrtc-audio "auto" stays off
        if want != self._echo.enabled:
            self._echo.set_enabled(want)

    def _cancel_echo(self, block: MixBlock, n: int) -> MixBlock:
        """The mic lane echo-cancelled with the system lane as reference, in the mix and
        in the mic's part (``gained``: what the mix holds of it; tracks take it there)."""
        parts = block.parts
        mic = parts.get("mic")
        system = parts.get("system")
        self._update_echo()
        # The echo stage delays the lane by its latency (AEC3's and the noise
        # suppressor's, also when off): after the mic is gone it still plays out what it
        # holds, so no captured sample is lost.
        far = system.raw if system is not None else np.zeros(n, np.float32)
        out = self._echo.process(
            mic.gained if mic is not None else np.zeros(n, np.float32), far,
            observed=mic.raw if mic is not None else None, score=mic is not None,
        )
        # The system lane waits as long, so the lanes stay aligned (zeros: no system).
        system_out = self._system_delay.process(system.gained if system is not None else far)
        mix = out + system_out
        if len(parts) > (mic is not None) + (system is not None):
            for name, part in parts.items():
                if name not in ("mic", "system"):
                    mix += part.gained
        # The mixer's parts are this render's own (a fresh dict): changed in place.
        # Built directly: dataclasses.replace walks the fields on every call (~3 per unit).
        if mic is not None:
            parts["mic"] = SourcePart(mic.raw, out, mic.delivered)
        if system is not None:
            parts["system"] = SourcePart(system.raw, system_out, system.delivered)
        return MixBlock(mix, parts)

    # --- the clock ------------------------------------------------------------------

    @property
    def samples_rendered(self) -> int:
        """Length of the timeline so far, in 16 kHz samples (what render() was asked for)."""
        return self._clock

    @property
    def mixer(self) -> Mixer:
        """The mixer, for its per-source lane statistics (underruns, splices)."""
        return self._mixer

    def render(self, n_samples: int) -> list[Frame]:
        """Advance the timeline by ``n_samples`` and return the frames now complete.

        If the VAD model fails mid-stream this raises :class:`ModelError` after turning the
        VAD off; no audio is lost: the affected frames come out of the next call with
        speech=False.
        """
        n = int(n_samples)
        if n < 0:
            raise ValueError(f"the timeline only moves forward: render({n_samples})")
        self._clock += n
        self._due += n
        if self._due < PROCESS_UNIT_SAMPLES:
            return []
        ready = self._due - self._due % PROCESS_UNIT_SAMPLES
        self._due -= ready
        return self._process(ready)

    def _process(self, n: int) -> list[Frame]:
        """Run every stage over the next ``n`` timeline samples."""
        self._levels = None
        for name in self._resamplers:
            self._resample_pending(name)
        # Unsummed: the echo stage sums the lanes after cancelling (the mixer's sum
        # would be thrown away; Mixer.render's ``summed``).
        block = self._mixer.render(n, self._due, summed=False)
        parts, meters = block.parts, self._meters
        for name, tracker in self._trackers.items():
            part = parts.get(name)
            if part is not None and tracker.active:
                tracker.observe(part.raw, part.delivered)
                meters[name].process(part.gained)
            else:
                tracker.idle(n)
        # After the meters: the mic meter shows what the microphone hears (the echo
        # score beside it says how much of that is the speakers).
        block = self._cancel_echo(block, n)
        self.last_block = block
        assert block.mix is not None  # rendered unsummed; the echo stage sums the parts
        out = self._normalizer.process(block.mix)
        mean_squares = self._mix_meter.process(out)
        if self._mix_tracker.active:
            self._mix_tracker.observe(out, window_mean_squares=mean_squares)
        else:
            self._mix_tracker.idle(n)
        self._framer.push_audio(out)
        if self._tracks is not None:
            self._tracks.process(*self._lanes(block, n))
        if self._vad_enabled:
            try:
                if self._speakers is not None:
                    verdicts = self._speakers.process(*self._lanes(block, n))
                else:
                    verdicts = self._vad.process(out)
            except ModelError:
                self._vad_failed()
                raise
            self._framer.push_speech(verdicts)
        else:
            self._framer.push_no_speech(n)
        frames = self._framer.pop_frames()
        if self._speakers is not None:
            frames = self._speakers.label(frames)
        if self._tracks is not None:
            frames = self._tracks.attach(frames)
        if self._framer.clip_count > self._mix_clips_seen:
            self._mix_tracker.note_clips(self._framer.clip_count - self._mix_clips_seen)
            self._mix_clips_seen = self._framer.clip_count
        return frames

    @staticmethod
    def _lanes(block, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The mic and system lanes as they enter the sum (zeros for one not there)."""
        lanes = []
        for name in CAPTURE_SOURCES:
            part = block.parts.get(name)
            lanes.append(part.gained if part is not None else np.zeros(n, np.float32))
        return lanes[0], lanes[1]

    def _vad_failed(self) -> None:
        self._vad_enabled = False
        (self._speakers or self._vad).reset()
        # Every sample pushed to the framer gets a verdict, so its frames can still go out.
        self._framer.push_no_speech(self._framer.samples_awaiting_speech)

    def finish(self) -> list[Frame]:
        """End of capture: close every source, play out what is queued, pad the last frame.

        Renders a little past the clock (the FIFO margin, the limiter look-ahead and up to
        one frame of zeros) so that every captured sample leaves in a frame.
        """
        frames = self._process(self._due)
        self._due = 0
        for name in list(self._resamplers):
            self.remove_source(name)
        queued = max((self._mixer.lane(s).level for s in self._mixer.sources), default=0)
        frames += self._process(
            queued + self._echo.latency_samples + self._normalizer.latency_samples)
        frames += self._process(-self._mixer.samples_rendered % FRAME_SAMPLES)
        self._clock = self._mixer.samples_rendered
        self.set_vad(False)
        last = self._framer.pop_frames()
        if self._speakers is not None:
            last = self._speakers.label(last)
        frames += self._tracks.attach(last) if self._tracks is not None else last
        return frames

    # --- levels ---------------------------------------------------------------------

    def levels(self) -> dict[str, SourceLevels]:
        """Latest levels of "mic", "system", every other source ever added, and "mix".

        Cheap: the snapshot is rebuilt only after the chain processed audio (every 100 ms)
        or a capture event; otherwise the same values come back.
        """
        if self._levels is not None:
            return dict(self._levels)
        echo, mixing = self._echo, self._mixer.sources
        result = {}
        for name, tracker in self._trackers.items():
            meter = self._meters[name]
            extra: LevelExtras = {}
            if name in mixing:
                lane = self._mixer.lane(name)
                extra["correction_ppm"] = lane.correction_ppm
                extra["correction_peak_ppm"] = lane.peak_correction_ppm
            if name == "mic":
                score = echo.score
                extra["echo"] = score.verdict
                extra["echo_db"] = score.level_db
                extra["echo_cancel"] = echo.enabled
            result[name] = tracker.snapshot(meter.peak_dbfs, meter.rms_dbfs, **extra)
        result[SOURCE_MIX] = self._mix_tracker.snapshot(
            self._mix_meter.peak_dbfs,
            self._mix_meter.rms_dbfs,
            speech=self._vad_enabled and self._framer.last_speech,
        )
        self._levels = result
        return dict(result)
