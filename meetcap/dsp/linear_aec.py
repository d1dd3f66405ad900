"""A linear echo canceller: a partitioned-block frequency-domain adaptive filter.

It learns the echo path (the speakers reaching the microphone: a delay, a level, the
room) as an FIR filter on the far-end reference and subtracts the filtered reference
from the microphone. It never suppresses anything: whatever the filter cannot explain
(the person's own voice) passes unchanged, which is what keeps a voice intact during
double talk (WebRTC's AEC3 suppressor cut it by 4 dB and more, docs/figures.md).

- Blocks of ``BLOCK`` = 160 samples (10 ms at 16 kHz), FFTs of 2 x BLOCK, overlap-save;
  ``partitions`` blocks of filter (default 40: 400 ms of echo delay and tail).
- Normalised step per frequency bin (the far-end power in that bin), gradient
  constrained to the first half of each partition (the MDF algorithm, Soo & Pang 1990;
  the Speex canceller is built the same way).
- Adaptation stops while the person talks (Geigel double-talk detector: a microphone
  block louder than half the loudest far-end sample in the filter's span cannot be
  echo when the path loses at least 6 dB, as speakers reaching a microphone do), and
  for ``HANGOVER_BLOCKS`` after, so the filter does not learn the voice as echo.
"""

from __future__ import annotations

import numpy as np

BLOCK = 160
DEFAULT_PARTITIONS = 40
STEP = 0.5  # normalised step size: converges in ~1 s of far-end speech
GEIGEL_THRESHOLD = 0.5  # the echo path is assumed to lose at least 6 dB
# Far-end peaks below this (-80 dBFS) in the filter's whole span: nothing to cancel.
SILENT_FAR = 1e-4
HANGOVER_BLOCKS = 8  # 80 ms of no adaptation after the last double-talk block
_FLOOR = 0.1  # of the mean far-end power, added to every bin's
_REGULARISATION = 1e-6  # keeps the step finite in silent bins (float32 audio, +-1 full scale)


class LinearEchoCanceller:
    """Mic block in, echo-free mic block out, ``block`` samples at a time."""

    def __init__(self, partitions: int = DEFAULT_PARTITIONS, block: int = BLOCK) -> None:
        if partitions < 1 or block < 16:
            raise ValueError(f"the filter needs at least one partition of at least 16 "
                             f"samples, got {partitions} of {block}")
        self.partitions = partitions
        self.block = block
        self._hangover_blocks = -(-HANGOVER_BLOCKS * BLOCK // block)  # the same 80 ms
        bins = block + 1
        self._weights = np.zeros((partitions, bins), np.complex128)
        self._far_spectra = np.zeros((partitions, bins), np.complex128)
        self._far_power = np.zeros(bins)  # sum of |far spectrum|^2 over the partitions
        self._far_tail = np.zeros(block, np.float64)  # the previous far block
        self._far_peaks = np.zeros(partitions, np.float64)  # per block, newest first
        self._hangover = 0
        self.double_talk = False  # the last block's verdict (for tests and the combiner)
        self.echo_estimate = np.zeros(block, np.float32)  # the last block's echo estimate

    def reset(self) -> None:
        self.__init__(self.partitions, self.block)  # type: ignore[misc]  # same settings, fresh state

    def process(self, near: np.ndarray, far: np.ndarray, *, adapt: bool = True) -> np.ndarray:
        """Cancel one block: ``near`` (microphone) and ``far`` (reference), BLOCK samples.
        ``adapt=False``: a caller that knows the person talks holds the filter still."""
        block = self.block
        if len(near) != block or len(far) != block:
            raise ValueError(f"blocks of {block} samples, got {len(near)} and {len(far)}")
        far64 = far.astype(np.float64)
        peak = float(np.abs(far64).max())
        # Shifted in place (np.roll allocates and costs more in overhead than the copy).
        peaks = self._far_peaks
        peaks[1:] = peaks[:-1]
        peaks[0] = peak
        quiet = float(peaks.max())
        if len(peaks) == 1:  # else peaks[1] is already the previous block's (the tail's) peak
            quiet = max(quiet, float(np.abs(self._far_tail).max()))
        if quiet < SILENT_FAR:
            # Nothing played in the filter's whole span: no echo to remove, nothing to
            # learn. Skip the FFTs (half of a meeting, often), keep the history exact.
            self._far_tail = far64
            self._far_spectra[1:] = self._far_spectra[:-1]
            self._far_spectra[0] = 0.0
            self.double_talk = False
            self._hangover = 0
            self.echo_estimate = np.zeros(block, np.float32)
            return np.asarray(near, np.float32)
        spectrum = np.fft.rfft(np.concatenate((self._far_tail, far64)))
        self._far_tail = far64
        self._far_spectra[1:] = self._far_spectra[:-1]
        self._far_spectra[0] = spectrum
        # Far-end power per bin over the filter's whole span (every partition adapts
        # on its own block's spectrum, so a loud block 300 ms ago counts as much as now).
        self._far_power = np.einsum("pk,pk->k", self._far_spectra,
                                    np.conj(self._far_spectra)).real

        echo_spectrum = np.einsum("pk,pk->k", self._weights, self._far_spectra)
        echo = np.fft.irfft(echo_spectrum)[block:]
        error = near.astype(np.float64) - echo
        self.echo_estimate = echo.astype(np.float32)

        # Geigel: the microphone is louder than any echo of the far end could be.
        if float(np.max(np.abs(near))) > GEIGEL_THRESHOLD * float(np.max(self._far_peaks)):
            self._hangover = self._hangover_blocks
        elif self._hangover > 0:
            self._hangover -= 1
        self.double_talk = self._hangover > 0
        if adapt and not self.double_talk and self._far_peaks[0] > 0.0:
            self._adapt(error)
        return error.astype(np.float32)

    @property
    def echo_arriving(self) -> bool:
        """The far end's sound entered the filter's span after silence (its oldest block
        is silent, a newer one is not): an echo is starting now, at the span's delay."""
        peaks = self._far_peaks
        return bool(peaks[-1] < SILENT_FAR <= peaks.max())

    def pass_silence(self, near: np.ndarray, far: np.ndarray) -> np.ndarray:
        """Whole blocks at once (any number) while nothing plays: when ``far`` and the
        filter's span before it are all below SILENT_FAR, every block would take the
        skip path of :meth:`process`; this is the same output and state in a few array
        operations (tests/dsp/test_fast_paths.py compares them). Otherwise it is
        :meth:`process` block by block."""
        block = self.block
        count = len(far) // block
        if len(near) != len(far) or len(far) != count * block or count == 0:
            raise ValueError(f"whole blocks of {block} samples, got {len(near)} and {len(far)}")
        blocks = far.reshape(count, block).astype(np.float64)
        peaks = np.abs(blocks).max(axis=1)
        if max(float(peaks.max()), float(self._far_peaks.max()),
               float(np.abs(self._far_tail).max())) >= SILENT_FAR:
            return np.concatenate([self.process(near[i : i + block], far[i : i + block])
                                   for i in range(0, len(far), block)])
        # The per-block shifts, done at once (newest first).
        shift = min(count, self.partitions)
        self._far_peaks[shift:] = self._far_peaks[: self.partitions - shift].copy()
        self._far_peaks[:shift] = peaks[::-1][:shift]
        self._far_spectra[shift:] = self._far_spectra[: self.partitions - shift].copy()
        self._far_spectra[:shift] = 0.0
        self._far_tail = blocks[-1].copy()
        self.double_talk = False
        self._hangover = 0
        self.echo_estimate = np.zeros(block, np.float32)
        return np.asarray(near, np.float32)

    def _adapt(self, error: np.ndarray) -> None:
        error_spectrum = np.fft.rfft(np.concatenate((np.zeros(self.block), error)))
        # The far-end power summed over the filter's span normalises the step per bin.
        # Bins the far end barely reached get a step bounded by the spectrum's mean power:
        # dividing by their own tiny power made the filter blow up on speech.
        norm = self._far_power + _FLOOR * float(np.mean(self._far_power)) + _REGULARISATION
        gradient = np.conj(self._far_spectra) * (error_spectrum / norm)
        # Constrain: keep only the causal half of each partition's impulse response.
        taps = np.fft.irfft(gradient, axis=1)
        taps[:, self.block :] = 0.0
        self._weights += STEP * np.fft.rfft(taps, axis=1)
