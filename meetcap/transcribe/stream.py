"""Streaming segmentation: 100 ms frames with speech flags in, transcript segments out.

The live server and the offline ``meetcap transcribe`` both run this one class, so a
file transcribed later agrees with the live transcript of the same audio.

- **Utterances** start at the first speech frame and end after ``min_pause_s`` of frames
  without speech (the VAD's flags already bridge pauses under its 300 ms hangover). An
  utterance that reaches ``max_utterance_s`` is cut after its quietest frame of the last
  ``cap_search_s`` seconds; the next one starts at the first speech frame after the cut.
- Each utterance is **transcribed once when it ends**: one final segment, timed by its
  frames (seq * 0.1 s, so exact across reconnects), with ``pre_roll_s`` of audio before
  its first speech frame so Whisper hears the onset. Utterances with less than
  ``min_speech_s`` of speech frames are not sent to the engine (noise, clicks).
- While an utterance is open, it is re-transcribed about every ``partial_interval_s``
  of audio as a **partial**. Partials follow LocalAgreement-2: a word is shown only once
  two consecutive hypotheses agree on it and on everything before it, and a shown word
  is never taken back, so each partial's text extends the previous one's (no flicker).
  A long utterance is re-transcribed only in its newest ``partial_window_s`` (4 s):
  older windows are closed and their words frozen, so a partial's cost stays bounded.
  At most one partial per :meth:`feed` call (the newest), so a worker catching up on a
  backlog does not re-transcribe every second of it; the server switches partials off
  (``partials_enabled = False``) first when it falls behind. No partial either when the
  newest frame fed is not speech: the voice paused, the utterance is probably about to
  end, and its final will replace anything a partial would show.
- Partials have a **compute budget**: the time they take (measured around each
  partial's drafts) may be at most ``partial_budget`` of the audio time fed (8 % by
  default: enough for one partial about every second of speech with tiny.en here; the
  budget protects a machine or model on which a draft costs more). Each 100 ms frame
  earns ``partial_budget`` x 0.1 s of credit (at most
  :data:`BUDGET_BURST_S` of audio's worth is kept: the pause before a sentence pays for
  the two hypotheses its first partial needs, a long silence does not save up a
  burst), a partial spends what it measured, and none is computed while the credit is
  negative - except an utterance's first two hypotheses (after 0.8 s of its speech and
  an interval later, the cheapest), which always run so that each sentence shows words
  soon; their cost
  is charged all the same, so the partials after them wait longer. So a machine
  (or model) on which a partial costs more gets rarer partials, one where it is cheap
  gets one every ``partial_interval_s``; finals never wait for the budget and never
  change with it (they do not depend on partials at all).
  ``partial_budget=None`` turns the budget off (every interval, whatever it costs).
- Segments of fewer than ``min_words`` words or only filler are marked ``minor`` (kept).
- A final is **decoded after the previous final**: the engine hears the previous final
  segment's audio (its frames, start to end) then the utterance, and continues from the
  previous final's text (:class:`~meetcap.transcribe.engine.SpokenBefore`), as
  faster-whisper decodes neighbouring sentences of a file in one window. Only when the
  previous final is at most ``context_max_s`` long and ended at most ``context_gap_s``
  before the utterance's first speech. A final so depends only on its audio and the
  previous final (deterministic itself), so offline and live agree, and a restarted
  worker rebuilds the context from the stored transcript (:meth:`resume_from`).
- **The session's language.** With a multilingual model loaded without a language, the
  engine detects it per utterance (on Whisper's full 30 s window, its only way to) and
  nothing carried it from one utterance to the next. The transcriber keeps the language
  of its finals once it is sure (:data:`LANGUAGE_SURE` for one final, or the same
  language for two finals in a row at :data:`LANGUAGE_LIKELY`) and passes it with every
  later call (``language=``), so later utterances and their partials are decoded in the
  fitted window and after the previous final, as with ``--language``. Kept per
  transcriber, i.e. per session: one engine may serve sessions in several languages.
- :attr:`resume_seq` / :attr:`next_id` say where a restarted worker carries on:
  ``resume_from(resume_seq, next_id)`` then feeding the stored frames from
  ``resume_seq`` gives the same finals as an uninterrupted run, none lost or doubled.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from meetcap.constants import FRAME_BYTES, FRAME_MS, FRAME_SAMPLES
from meetcap.errors import UsageError
from meetcap.transcribe.engine import Engine, EngineSegment, SpokenBefore
from meetcap.transcribe.segments import DEFAULT_MIN_WORDS, TranscriptSegment, is_minor, words

FRAME_S = FRAME_MS / 1000

DEFAULT_PARTIAL_INTERVAL_S = 1.0
DEFAULT_MAX_UTTERANCE_S = 20.0  # under Whisper's 30 s window, with room for the pre-roll
DEFAULT_MIN_PAUSE_S = 0.3  # pause frames (after the VAD's own 300 ms hangover) ending one
DEFAULT_MIN_SPEECH_S = 0.5  # the VAD flags >= ~0.4 s for any detected sound; a word is more
DEFAULT_PRE_ROLL_S = 0.2
DEFAULT_CAP_SEARCH_S = 2.0
# Partials re-transcribe at most this much of an utterance (see _close_partial_window).
DEFAULT_PARTIAL_WINDOW_S = 4.0
PROMPT_WORDS = 40  # context for a partial window's drafts
# A final is decoded after the previous final (module doc) when that one is at most this
# long (its audio is encoded again with the utterance's: the cost stays bounded) and
# ended at most this long before the utterance's first speech (after a long silence the
# talk has likely moved on; faster-whisper would not have it in the same window either).
# Measured (docs/figures.md): 5 s of context gained nothing on the test corpora (their
# sentences are 4-7 s), 7-10 s closed the gap. The cost: the window is about twice as
# long and the previous text is the prompt, so finals take ~1.3x the CPU
# (bench/transcribe.py). ``context_max_s=0`` decodes every utterance alone, as before.
DEFAULT_CONTEXT_MAX_S = 10.0
DEFAULT_CONTEXT_GAP_S = 10.0
# Partials may take this fraction of the audio time (module doc): the lowest budget that
# keeps issue 9's cadence, new text at least about once a second while someone speaks,
# with the packaged tiny.en on this 2-core machine. bench/transcript_latency.py at the
# server's pace (a partial due every 0.8 s of audio), the longest wait for new text
# during a sentence, p95: 8 % 0.89 s (as with no budget, 0.88 s), 7 % 1.37 s, 6 % 1.52 s,
# 5 % 1.84 s, 2 % 2.9 s (one partial per sentence). A draft takes ~66-83 ms of CPU here
# (tiny.en, int8, one thread; most of it ~10 decoder steps of ~5 ms: LocalAgreement
# generates each token twice), ~1.25 of them per second of speech. The price, beside
# issue 9's "+30 % over faster-whisper alone", which is read as the cost of the
# streaming SEGMENTATION (cut at pauses, each utterance once as a final: -35 to -43 %,
# met): the partials are a separate live view, dropped first when the server is behind,
# and cost what bench/transcribe.py prints beside it (docs/figures.md, "Partials: the
# default and the dial"): at 8 % +102 to +113 % over faster-whisper alone in all (the
# partials take 6.8-8.0 % of the audio time: with tiny.en here the budget barely binds;
# it does where a draft costs more). An operator who wants the cost cap gives
# ``--partial-budget 2`` (+14 to +16 %, about one partial per sentence). Finals are never
# affected.
DEFAULT_PARTIAL_BUDGET = 0.08
# The most credit kept, in seconds of audio: 5 s (0.4 s of CPU at 8 %), so the pause before a
# sentence pays for the first two hypotheses (a partial shows once two agree), without
# a burst worth mentioning after a long silence.
BUDGET_BURST_S = 5.0
# An utterance's first hypotheses run whatever the credit (module doc): two, because a
# partial shows words once two hypotheses agree.
FREE_HYPOTHESES = 2
# The first hypothesis waits for this much speech (and the utterance's min_speech_s).
# After 0.5 s (~0.7 s of audio) it was often one or two garbled words ("We shot you"
# for "We should move"), the second did not agree with it, and within the budget no
# third came: 7 of 20 sentences showed no partial at all (bench/transcript_latency.py's
# corpus at the server's pace). After 0.8 s: 2 of 20, for the same CPU; after 1.0 s: 5
# (the first partial comes after a short sentence's voice ended).
FIRST_DRAFT_SPEECH_S = 0.8
# When a detected language is kept for the session (module doc). Whisper base on
# espeak-ng: whole German sentences 0.95-0.99, English 0.76-0.94; cut to 1-2 s a German
# sentence came out Thai at 0.81, so one final must be very sure, or two agree.
LANGUAGE_SURE = 0.9
LANGUAGE_LIKELY = 0.5


def _frames(seconds: float) -> int:
    return max(0, round(seconds / FRAME_S))


class _Utterance:
    """The frames of the utterance being collected (pre-roll included)."""

    def __init__(self, first_seq: int, pre_roll: list[bytes]) -> None:
        self.audio_seq = first_seq - len(pre_roll)  # seq of the first frame in ``pcm``
        self.pcm: list[bytes] = list(pre_roll)
        self.speech_flags: list[bool] = [False] * len(pre_roll)
        self.first_speech_seq = first_seq
        self.last_speech_seq = first_seq
        self.pause_frames = 0
        self.partial_at_frames = 0  # len(pcm) when the last partial was computed
        self.hypothesis_count = 0
        self.hypothesis: list[str] = []  # the previous partial hypothesis (its words)
        # Words shown in partials so far (never retracted): ``frozen`` for the closed
        # partial windows, ``committed`` for the open one, which starts at ``window_start``.
        self.frozen: list[str] = []
        self.committed: list[str] = []
        self.window_start = 0  # index in ``pcm``

    def add(self, seq: int, pcm: bytes, speech: bool) -> None:
        self.pcm.append(pcm)
        self.speech_flags.append(speech)
        if speech:
            self.last_speech_seq = seq
            self.pause_frames = 0
        else:
            self.pause_frames += 1

    @property
    def speech_frames(self) -> int:
        return sum(self.speech_flags)

    @property
    def end_seq(self) -> int:
        """One past the last frame held."""
        return self.audio_seq + len(self.pcm)

    def samples(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        data = b"".join(self.pcm[start:stop])
        return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(32768)


@dataclass(frozen=True, slots=True)
class PreviousFinal:
    """The last final segment as the next final is decoded after it: its frames
    ``first_seq`` .. ``end_seq - 1`` (the segment's own span) and its text."""

    first_seq: int
    end_seq: int
    text: str
    pcm: bytes

    @staticmethod
    def frames_of(segment: TranscriptSegment) -> tuple[int, int]:
        """(first seq, frame count) of a stored final's audio, to read it back."""
        first = round(segment.start_s / FRAME_S)
        return first, max(0, round(segment.end_s / FRAME_S) - first)

    @classmethod
    def of(cls, segment: TranscriptSegment, pcm: bytes) -> PreviousFinal:
        """From a stored final and its frames' audio (read at :meth:`frames_of`)."""
        first, count = cls.frames_of(segment)
        if len(pcm) != count * FRAME_BYTES:
            raise UsageError(
                f"segment {segment.id} spans {count} frames; got {len(pcm)} bytes of audio"
            )
        return cls(first, first + count, segment.text, pcm)

    def samples(self) -> np.ndarray:
        return np.frombuffer(self.pcm, dtype="<i2").astype(np.float32) / np.float32(32768)


class StreamingTranscriber:
    """Cuts a session's frames into utterances and transcribes them (module doc)."""

    def __init__(
        self,
        engine: Engine,
        *,
        min_words: int = DEFAULT_MIN_WORDS,
        partial_interval_s: float = DEFAULT_PARTIAL_INTERVAL_S,
        max_utterance_s: float = DEFAULT_MAX_UTTERANCE_S,
        min_pause_s: float = DEFAULT_MIN_PAUSE_S,
        min_speech_s: float = DEFAULT_MIN_SPEECH_S,
        pre_roll_s: float = DEFAULT_PRE_ROLL_S,
        cap_search_s: float = DEFAULT_CAP_SEARCH_S,
        partial_window_s: float = DEFAULT_PARTIAL_WINDOW_S,
        partials: bool = True,
        context_max_s: float = DEFAULT_CONTEXT_MAX_S,
        context_gap_s: float = DEFAULT_CONTEXT_GAP_S,
        partial_budget: float | None = DEFAULT_PARTIAL_BUDGET,
        cost_clock: Callable[[], float] = time.process_time,
        language: str | None = None,
    ) -> None:
        if max_utterance_s <= pre_roll_s + cap_search_s:
            raise ValueError(
                f"max_utterance_s ({max_utterance_s}) must exceed pre_roll_s + cap_search_s"
            )
        if partial_interval_s <= 0:
            raise ValueError(f"partial_interval_s must be positive, got {partial_interval_s}")
        if partial_budget is not None and partial_budget <= 0:
            raise ValueError(f"partial_budget must be positive or None, got {partial_budget}")
        self.engine = engine
        # The session's language (module doc): given, or kept once detected for sure.
        self.language = language
        self._detected: str | None = None  # the previous final's, while not sure
        self.min_words = min_words
        self.partials_enabled = partials
        self._context_max = _frames(context_max_s)  # 0 turns the context off
        self._context_gap = _frames(context_gap_s)
        self._partial_frames = max(1, _frames(partial_interval_s))
        self._max_frames = _frames(max_utterance_s)
        self._min_pause = max(1, _frames(min_pause_s))
        self._min_speech = _frames(min_speech_s)
        self._cap_search = max(1, _frames(cap_search_s))
        self._partial_window = max(self._cap_search + 1, _frames(partial_window_s))
        self._pre_roll: deque[bytes] = deque(maxlen=_frames(pre_roll_s))
        # The partials' compute budget (module doc), in seconds of CPU: the process's,
        # because CTranslate2 decodes in a thread of its own. Not wall-clock time, which
        # on a busy machine is several times the work (0.3-0.5 s for a 0.1 s partial at
        # load 7 on 2 cores) and would starve partials for the machine's other work.
        self._budget_per_frame = (partial_budget or 0.0) * FRAME_S
        self._budget_cap = (partial_budget or 0.0) * BUDGET_BURST_S
        self._budgeted = partial_budget is not None
        self._credit = self._budget_cap
        self._cost_clock = cost_clock
        self.partial_cpu_s = 0.0  # CPU the partials took (measured by ``cost_clock``)
        self.partials_over_budget = 0  # partials due but not computed for the budget
        self._last_speech = False  # the newest frame fed was speech
        self._utterance: _Utterance | None = None
        self._expected_seq: int | None = None
        self._previous: PreviousFinal | None = None
        self.next_id = 0
        self.engine_calls = 0  # how many times the engine ran (finals + partials)
        self.partial_calls = 0
        self.skipped_short = 0  # utterances too short to be sent to the engine

    # -- where a restarted worker carries on -------------------------------------------

    @property
    def resume_seq(self) -> int | None:
        """The first frame a restarted worker must be fed again (None before any frame).

        Everything before it is finished: its finals were returned already."""
        if self._utterance is not None:
            return self._utterance.audio_seq
        if self._expected_seq is None:
            return None
        return self._expected_seq - len(self._pre_roll)

    def resume_from(
        self, seq: int, next_id: int, previous: PreviousFinal | None = None,
        language: str | None = None,
    ) -> None:
        """Carry on from frame ``seq`` with final ids from ``next_id`` (after a restart),
        ``previous`` being the last stored final (:meth:`PreviousFinal.of`), so the next
        final is decoded after it as in an uninterrupted run; ``language`` the session's
        language if it was kept (:attr:`language`), else it is found again.

        Frames before ``seq`` that are fed again are ignored."""
        if seq < 0 or next_id < 0:
            raise UsageError(f"cannot resume from frame {seq} with segment id {next_id}")
        self._utterance = None
        self._pre_roll.clear()
        self._expected_seq = seq
        self.next_id = next_id
        self._previous = previous
        self._last_speech = False
        if language is not None:
            self.language = language

    # -- feeding -------------------------------------------------------------------

    def feed(
        self, first_seq: int, pcm: bytes, speech: Sequence[bool]
    ) -> list[TranscriptSegment]:
        """Frames ``first_seq``.. (3,200 bytes each, int16 LE) and their speech flags.

        Returns the finals of utterances that ended, then at most one partial if due."""
        if len(pcm) != len(speech) * FRAME_BYTES:
            raise UsageError(
                f"{len(speech)} speech flags need {len(speech) * FRAME_BYTES} bytes of "
                f"audio, got {len(pcm)}"
            )
        out: list[TranscriptSegment] = []
        for i, flag in enumerate(speech):
            seq = first_seq + i
            if self._expected_seq is not None:
                if seq < self._expected_seq:
                    continue  # fed again after a resume or a repeated batch
                if seq > self._expected_seq:
                    # A gap in the stored audio: nothing joins across it.
                    out.extend(self._finish_utterance())
                    self._pre_roll.clear()
            self._expected_seq = seq + 1
            self._last_speech = bool(flag)
            if self._budgeted:
                self._credit = min(self._budget_cap, self._credit + self._budget_per_frame)
            out.extend(self._step(seq, pcm[i * FRAME_BYTES:(i + 1) * FRAME_BYTES], bool(flag)))
        if self.partials_enabled and self._last_speech:
            partial = self._partial_if_due()
            if partial is not None:
                out.append(partial)
        return out

    def flush(self) -> list[TranscriptSegment]:
        """The session ended: finish the current utterance."""
        out = self._finish_utterance()
        self._pre_roll.clear()
        return out

    def _step(self, seq: int, frame: bytes, speech: bool) -> list[TranscriptSegment]:
        utt = self._utterance
        if utt is None:
            if not speech:
                self._pre_roll.append(frame)
                return []
            utt = self._utterance = _Utterance(seq, list(self._pre_roll))
            self._pre_roll.clear()
        utt.add(seq, frame, speech)
        if utt.pause_frames >= self._min_pause:
            return self._finish_utterance()
        if len(utt.pcm) >= self._max_frames:
            return self._cut_at_cap()
        return []

    def _cut_at_cap(self) -> list[TranscriptSegment]:
        """The utterance hit the length cap: end it at its quietest recent frame and go
        on with the frames after that as a new utterance."""
        utt = self._utterance
        assert utt is not None
        n = len(utt.pcm)
        window = range(max(1, n - self._cap_search), n)
        energies = [_frame_energy(utt.pcm[i]) for i in window]
        cut = window[int(np.argmin(energies))] + 1  # keep the quiet frame in the first part
        rest_pcm, rest_flags = utt.pcm[cut:], utt.speech_flags[cut:]
        rest_seq = utt.audio_seq + cut
        utt.pcm, utt.speech_flags = utt.pcm[:cut], utt.speech_flags[:cut]
        out = self._finish_utterance(cut_seq=rest_seq)
        # The frames after the cut take the usual steps, exactly as a restarted worker
        # resuming at rest_seq would feed them, so a restart there gives the same finals:
        # the next utterance starts at their first speech frame. (No pause of min_pause
        # frames can be among them: it would have ended the utterance before the cap.)
        for k, (frame, flag) in enumerate(zip(rest_pcm, rest_flags, strict=True)):
            out.extend(self._step(rest_seq + k, frame, flag))
        return out

    # -- transcription -------------------------------------------------------------

    def _finish_utterance(self, cut_seq: int | None = None) -> list[TranscriptSegment]:
        utt, self._utterance = self._utterance, None
        if utt is None:
            return []
        # What follows the utterance's end is the pre-roll of the next one.
        tail = utt.pcm[-self._pre_roll.maxlen:] if self._pre_roll.maxlen else []
        self._pre_roll.clear()
        if cut_seq is None:
            self._pre_roll.extend(tail)
        if utt.speech_frames < self._min_speech:
            self.skipped_short += 1
            return []
        text = self._transcribe(utt.samples(), None, before=self._before(utt))
        if not text:
            return []
        end_seq = cut_seq if cut_seq is not None else utt.last_speech_seq + 1
        start = utt.first_speech_seq * FRAME_S
        end = end_seq * FRAME_S
        seg = TranscriptSegment(
            id=self.next_id, start_s=start, end_s=end, text=text, final=True,
            minor=is_minor(text, min_words=self.min_words),
        )
        self.next_id += 1
        lo = utt.first_speech_seq - utt.audio_seq
        self._previous = PreviousFinal(utt.first_speech_seq, end_seq, text,
                                       b"".join(utt.pcm[lo:end_seq - utt.audio_seq]))
        return [seg]

    def _before(self, utt: _Utterance) -> SpokenBefore | None:
        """What the utterance's final is decoded after (module doc), if anything."""
        prev = self._previous
        if (prev is None or prev.end_seq - prev.first_seq > self._context_max
                or utt.first_speech_seq - prev.end_seq > self._context_gap
                or utt.first_speech_seq < prev.end_seq):
            return None
        return SpokenBefore(prev.samples(), prev.text)

    def _partial_if_due(self) -> TranscriptSegment | None:
        utt = self._utterance
        if utt is None or utt.speech_frames < max(self._min_speech,
                                                  _frames(FIRST_DRAFT_SPEECH_S)):
            return None
        # The first hypothesis as soon as there is enough speech, so that two can agree
        # (and a partial show) about a second later; then one every interval.
        if utt.hypothesis_count and len(utt.pcm) - utt.partial_at_frames < self._partial_frames:
            return None
        if self._budgeted and self._credit < 0 and utt.hypothesis_count >= FREE_HYPOTHESES:
            self.partials_over_budget += 1  # the last partials cost more than earned yet
            return None
        spent_from = self._cost_clock()
        utt.partial_at_frames = len(utt.pcm)
        utt.hypothesis_count += 1
        if len(utt.pcm) - utt.window_start > self._partial_window:
            self._close_partial_window(utt)
        self.partial_calls += 1
        # Continue from the words shown already (they are never taken back anyway), with
        # the closed windows' words as context.
        hypothesis = self._transcribe(
            utt.samples(utt.window_start), _context(utt.frozen), draft=True,
            prefix=" ".join(utt.committed) or None,
        ).split()
        spent = max(0.0, self._cost_clock() - spent_from)
        self.partial_cpu_s += spent
        self._credit -= spent
        _agree(utt, hypothesis)
        shown = utt.frozen + utt.committed
        if not shown:
            return None
        text = " ".join(shown)
        return TranscriptSegment(
            id=self.next_id, start_s=utt.first_speech_seq * FRAME_S,
            end_s=utt.end_seq * FRAME_S, text=text, final=False,
            minor=is_minor(text, min_words=self.min_words),
        )

    def _close_partial_window(self, utt: _Utterance) -> None:
        """Partials re-transcribe only the newest ``partial_window_s`` of a long
        utterance: each second of a 20 s monologue re-transcribed whole cost ~7x what
        one pass of faster-whisper costs. The open window is closed after its quietest
        frame of the last two seconds; its audio is transcribed once more (continuing
        the words it showed), those words are frozen, and a new window starts. The final
        still transcribes the whole utterance at once."""
        n = len(utt.pcm)
        search = range(max(utt.window_start + 1, n - self._cap_search), n)
        cut = search[int(np.argmin([_frame_energy(utt.pcm[i]) for i in search]))] + 1
        self.partial_calls += 1
        closing = self._transcribe(
            utt.samples(utt.window_start, cut), _context(utt.frozen), draft=True,
            prefix=" ".join(utt.committed) or None,
        ).split()
        done = len(utt.committed)
        if _norm(closing[:done]) == _norm(utt.committed):
            utt.committed += closing[done:]
        utt.frozen += utt.committed
        utt.committed, utt.hypothesis = [], []
        utt.window_start = cut

    def _transcribe(
        self, samples: np.ndarray, prompt: str | None, draft: bool = False,
        prefix: str | None = None, before: SpokenBefore | None = None,
    ) -> str:
        self.engine_calls += 1
        # The session's language only once known: an engine that takes none still works.
        extra: dict[str, Any] = {"language": self.language} if self.language else {}
        if draft:
            segments = self.engine.transcribe(samples, prompt=prompt, draft=True,
                                              prefix=prefix, **extra)
        elif before is not None:
            segments = self.engine.transcribe(samples, prompt=prompt, before=before, **extra)
        else:
            segments = self.engine.transcribe(samples, prompt=prompt, **extra)
        if not draft and self.language is None:
            self._keep_language(segments)
        return " ".join(s.text.strip() for s in segments if s.text.strip())

    def _keep_language(self, segments: Sequence[EngineSegment]) -> None:
        """Keep the language a final was detected in once sure (module doc)."""
        found = [(s.language, s.language_probability or 0.0) for s in segments
                 if s.language is not None]
        if not found:
            return
        language, probability = max(found, key=lambda f: f[1])
        if probability >= LANGUAGE_SURE or (
                probability >= LANGUAGE_LIKELY and language == self._detected):
            self.language = language
        self._detected = language if probability >= LANGUAGE_LIKELY else None


def _agree(utt: _Utterance, hypothesis: list[str]) -> None:
    """LocalAgreement-2: extend the committed words by those on which this hypothesis and
    the previous one agree, following what is committed already; never retract."""
    previous, utt.hypothesis = utt.hypothesis, hypothesis
    done = len(utt.committed)
    if len(hypothesis) <= done or _norm(hypothesis[:done]) != _norm(utt.committed):
        return  # the new hypothesis contradicts what is shown; wait for it to settle
    agreed = done
    limit = min(len(previous), len(hypothesis))
    while agreed < limit and _norm([previous[agreed]]) == _norm([hypothesis[agreed]]):
        agreed += 1
    utt.committed.extend(hypothesis[done:agreed])


def _context(frozen: list[str]) -> str | None:
    """The last words shown, as the prompt of the next window's draft."""
    return " ".join(frozen[-PROMPT_WORDS:]) or None


def _norm(ws: list[str]) -> list[str]:
    return words(" ".join(ws))


def _frame_energy(frame: bytes) -> float:
    x = np.frombuffer(frame, dtype="<i2").astype(np.float32)
    return float(np.dot(x, x)) if len(x) == FRAME_SAMPLES else 0.0
