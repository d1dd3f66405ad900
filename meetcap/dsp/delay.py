"""A fixed delay for a lane (the other lanes keep step with the mic lane's processing)."""

from __future__ import annotations

import numpy as np


class DelayLine:
    """Delays a stream by a fixed number of samples (the other lanes keep step with the
    mic lane's processing delay, so the lanes stay aligned in the mix and in tracks)."""

    def __init__(self, samples: int) -> None:
        self._held = np.zeros(samples, np.float32)

    def process(self, samples: np.ndarray) -> np.ndarray:
        joined = np.concatenate((self._held, samples))
        self._held = joined[len(samples):]
        return joined[: len(samples)]
