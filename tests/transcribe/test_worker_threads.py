"""The server's transcription workers run numpy with one OpenBLAS thread: with one per
core, OpenBLAS's threads spin-wait after every small matrix product of the feature
extractor, which nearly doubled the CPU a partial took and used up the partials' budget
(meetcap/transcribe/stream.py), so live partials came every few seconds."""

from __future__ import annotations

import importlib
import multiprocessing
import os

import numpy as np
import pytest


def _threads_after_a_matrix_product() -> int:
    """In a spawned process: its threads once numpy has multiplied two matrices."""
    a = np.ones((256, 256), np.float32)
    for _ in range(5):
        a = (a @ a) / 256
    return len(os.listdir("/proc/self/task"))


def _spawned_threads() -> int:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_threads_after_a_matrix_product)


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux's /proc")
def test_a_spawned_transcription_worker_runs_numpy_with_one_openblas_thread(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    if (os.cpu_count() or 1) > 1:
        # Without the setting, a spawned process here has more than one thread.
        assert _spawned_threads() > 1
    import meetcap.server.transcription.worker as worker

    importlib.reload(worker)  # what importing it does, in an environment without it
    assert _spawned_threads() == 1
