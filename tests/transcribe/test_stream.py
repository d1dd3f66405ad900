"""StreamingTranscriber behaviour with the real engine: partial stability and cadence,
the filters, the length cap, and resuming after a restart."""

from __future__ import annotations

import numpy as np
import pytest

from meetcap.constants import FRAME_BYTES
from meetcap.transcribe.offline import frames_with_speech, transcribe_frames
from meetcap.transcribe.segments import is_minor
from meetcap.transcribe.stream import (
    BUDGET_BURST_S,
    FREE_HYPOTHESES,
    PreviousFinal,
    StreamingTranscriber,
)
from tests.support.transcript_corpus import RATE_HZ, say, wer


class CountingEngine:
    """The real engine, counting what it is asked to transcribe."""

    def __init__(self, engine):
        self.engine = engine
        self.calls: list[float] = []  # seconds of audio per call
        self.draft_calls: list[float] = []

    def transcribe(self, samples, **kwargs):
        self.calls.append(len(samples) / RATE_HZ)
        if kwargs.get("draft"):
            self.draft_calls.append(len(samples) / RATE_HZ)
        return self.engine.transcribe(samples, **kwargs)


def _words(text: str) -> list[str]:
    return text.split()


def test_partials_never_take_back_a_word_and_come_about_once_a_second(corpus, live_run):
    _, seen = live_run
    partials_by_id: dict[int, list] = {}
    for seg in seen:
        if not seg.final:
            partials_by_id.setdefault(seg.id, []).append(seg)
    assert set(partials_by_id) == {s.id for s in seen if s.final}, "no partials for some utterance"
    for seg_id, partials in partials_by_id.items():
        for earlier, later in zip(partials, partials[1:], strict=False):
            # Each partial extends the previous one's words: nothing flickers.
            assert _words(later.text)[: len(_words(earlier.text))] == _words(earlier.text)
            # One second of audio between partials (one per second of speech, live).
            assert abs((later.end_s - earlier.end_s) - 1.0) < 1e-6, (earlier, later)
        said = corpus.utterances[seg_id]
        # The first partial within 3.5 s of the voice starting: after 0.8 s of speech a
        # first hypothesis, then one a second; a word shows once two agree (usually the
        # 2nd, here at worst the 3rd; one-second batches add up to 0.9 s). Then partials
        # come every second until the utterance ends.
        assert partials[0].end_s - said.start_s <= 3.5, (partials[0], said)
        assert said.end_s - partials[-1].end_s <= 1.0, (partials[-1], said)


def test_a_long_utterance_has_stable_partials_from_a_bounded_window(engine):
    from tests.support.transcript_corpus import SENTENCES, make_corpus

    # Three sentences with 0.25 s gaps: the VAD bridges them, one ~13 s utterance.
    monologue = make_corpus(SENTENCES[:3], pause_s=0.25)
    counting = CountingEngine(engine)
    seen: list = []
    # The budget off: this checks the cadence and the window, whatever the machine.
    finals = transcribe_frames(StreamingTranscriber(counting, partial_budget=None),
                               frames_with_speech(monologue.samples), on_segment=seen.append)
    assert len(finals) == 1 and finals[0].end_s - finals[0].start_s > 10.0
    partials = [s for s in seen if not s.final]
    assert len(partials) >= 8
    for earlier, later in zip(partials, partials[1:], strict=False):
        assert _words(later.text)[: len(_words(earlier.text))] == _words(earlier.text)
        assert abs((later.end_s - earlier.end_s) - 1.0) < 1e-6
    # Drafts re-transcribe at most the 4 s window (+ up to a second of new audio).
    assert max(counting.draft_calls) <= 5.0 + 1e-6, counting.draft_calls
    # The last partial shows most of what the final says.
    final_words = _words(finals[0].text.lower())
    shown = _words(partials[-1].text.lower())
    assert len(shown) >= 0.6 * len(final_words), (partials[-1].text, finals[0].text)
    assert wer(finals[0].text, partials[-1].text) <= 0.5


def test_partial_words_agree_with_the_final(live_run):
    finals, seen = live_run
    by_id = {s.id: s for s in finals}
    for seg in seen:
        if not seg.final:
            final_words = _words(by_id[seg.id].text.lower())
            partial_words = _words(seg.text.lower())
            shared = sum(a == b for a, b in zip(partial_words, final_words, strict=False))
            assert shared >= 0.6 * len(partial_words), (seg.text, by_id[seg.id].text)


def test_minor_rule_fewer_than_four_words_or_filler_only():
    assert is_minor("Okay, thanks.")
    assert is_minor("Yes.")
    assert is_minor("um, uh, you know, yeah")
    assert is_minor("[BLANK_AUDIO]")
    assert not is_minor("We ship on Friday.")
    assert not is_minor("Let us start now.")
    assert is_minor("We ship Friday.", min_words=4)
    assert not is_minor("Ship it.", min_words=2)


def test_a_short_reply_is_transcribed_and_marked_minor(engine):
    voiced = say("Okay, thanks.", "en-us", 160, 50)
    gap = np.zeros(RATE_HZ, np.float32)
    frames = frames_with_speech(np.concatenate([gap, voiced, gap]))
    finals = transcribe_frames(StreamingTranscriber(engine, partials=False), frames)
    assert len(finals) == 1 and finals[0].minor, finals
    assert "thank" in finals[0].text.lower()


def test_a_click_too_short_for_speech_never_reaches_the_engine(engine):
    counting = CountingEngine(engine)
    transcriber = StreamingTranscriber(counting)
    click = np.zeros(1600 * 30, np.int16)
    click[1600 * 10:1600 * 10 + 400] = 20000  # 25 ms of loud click at frame 10
    flags = [False] * 30
    flags[10:14] = [True] * 4  # the VAD flagged 0.4 s around it: under 0.5 s of speech
    out = transcriber.feed(0, click.tobytes(), flags) + transcriber.flush()
    assert out == [] and counting.calls == [] and transcriber.skipped_short == 1


def _continuous_speech(corpus) -> tuple[bytes, int, list[bool]]:
    """About 28 s of the corpus's speech, its pauses included, flagged as speech except
    quiet frames in runs of at most two (too short to end an utterance): the length cap,
    not a pause, must cut it, and the quietest frames it cuts after are not speech."""
    voiced = corpus.samples[int(corpus.utterances[0].start_s * RATE_HZ):
                            int(corpus.utterances[-1].end_s * RATE_HZ)]
    pcm = (np.clip(voiced, -1, 1) * 32767).astype("<i2")
    frames = len(pcm) // 1600
    rms = np.sqrt(np.mean(pcm[: frames * 1600].astype(np.float64).reshape(frames, 1600) ** 2,
                          axis=1))
    flags, quiet_run = [], 0
    for level in rms:
        quiet_run = quiet_run + 1 if level < 300 else 0
        flags.append(not 1 <= quiet_run <= 2)
    assert flags.count(False) >= 10
    return pcm[: frames * 1600].tobytes(), frames, flags


def _feed_all(transcriber, speech, start: int = 0, stop_after_finals=None):
    pcm, frames, flags = speech
    out, resume = [], None
    for first in range(start, frames, 10):
        n = min(10, frames - first)
        got = transcriber.feed(first, pcm[first * FRAME_BYTES:(first + n) * FRAME_BYTES],
                               flags[first:first + n])
        out += got
        if got:
            resume = (transcriber.resume_seq, transcriber.next_id)
        if stop_after_finals is not None and len(out) >= stop_after_finals:
            return out, resume
    return out + transcriber.flush(), resume


def test_continuous_speech_is_cut_at_the_cap_with_nothing_lost(engine, corpus):
    counting = CountingEngine(engine)
    speech = _continuous_speech(corpus)
    frames = speech[1]
    transcriber = StreamingTranscriber(counting, partials=False, max_utterance_s=12.0)
    out, _ = _feed_all(transcriber, speech)
    assert max(counting.calls) <= 12.0 + 1e-6
    assert len(out) >= 3
    # The pieces tile the timeline: each starts at most two quiet frames after the
    # previous one's cut, and the last runs to the end of the speech.
    for a, b in zip(out, out[1:], strict=False):
        assert 0 <= b.start_s - a.end_s <= 0.2 + 1e-6, (a, b)
    assert out[0].start_s <= 0.2 and abs(out[-1].end_s - frames * 0.1) < 0.3
    assert [s.id for s in out] == list(range(len(out)))


def _stored_previous(final, pcm: bytes) -> PreviousFinal:
    """The last stored final and its audio, as a restarted server worker reads them back
    from the transcript JSON and the session's WAV."""
    first, count = PreviousFinal.frames_of(final)
    return PreviousFinal.of(final, pcm[first * FRAME_BYTES:(first + count) * FRAME_BYTES])


def test_a_restart_after_a_cut_at_the_cap_gives_the_same_finals(engine, corpus):
    speech = _continuous_speech(corpus)
    whole, _ = _feed_all(StreamingTranscriber(engine, partials=False, max_utterance_s=8.0),
                         speech)
    assert len(whole) >= 3
    first, (resume_seq, next_id) = _feed_all(
        StreamingTranscriber(engine, partials=False, max_utterance_s=8.0), speech,
        stop_after_finals=1,
    )
    restarted = StreamingTranscriber(engine, partials=False, max_utterance_s=8.0)
    restarted.resume_from(resume_seq, next_id, _stored_previous(first[-1], speech[0]))
    rest, _ = _feed_all(restarted, speech, start=resume_seq)
    assert first + rest == whole
    # The previous final matters: the piece after a cut heard alone lost the words
    # around the cut ("team finished the release on Friday and the numbers look fine").
    forgetful = StreamingTranscriber(engine, partials=False, max_utterance_s=8.0)
    forgetful.resume_from(resume_seq, next_id)
    alone, _ = _feed_all(forgetful, speech, start=resume_seq)
    assert len(alone[0].text.split()) < len(whole[1].text.split()), (alone[0], whole[1])


def test_a_restarted_worker_resumes_with_no_segment_lost_or_doubled(engine, corpus_frames):
    whole = transcribe_frames(StreamingTranscriber(engine, partials=False), corpus_frames)
    # A worker that stops after the third final (killed) ...
    first = StreamingTranscriber(engine, partials=False)
    got, stored_resume = [], None
    for i in range(0, len(corpus_frames), 10):
        batch = corpus_frames[i:i + 10]
        finals = [s for s in first.feed(batch[0].seq, b"".join(f.pcm for f in batch),
                                        [f.speech for f in batch]) if s.final]
        got += finals
        if finals:  # what a server stores beside each final
            stored_resume = (first.resume_seq, first.next_id)
        if len(got) >= 3:
            break
    # ... and a new one fed again from the stored resume point (frames before it too).
    second = StreamingTranscriber(engine, partials=False)
    assert corpus_frames[0].seq == 0
    second.resume_from(*stored_resume, _stored_previous(
        got[-1], b"".join(f.pcm for f in corpus_frames)))
    rest = transcribe_frames(second, corpus_frames[max(0, stored_resume[0] - 25):])
    assert got + rest == whole


def test_feed_refuses_audio_that_does_not_match_the_flags(engine):
    import pytest

    from meetcap.errors import UsageError

    with pytest.raises(UsageError, match="speech flags"):
        StreamingTranscriber(engine).feed(0, b"\0" * (FRAME_BYTES - 2), [False])


class CostClock:
    """A synthetic CPU clock for the partials' budget: each draft the engine runs "costs"
    what ``cost_of`` says for that draft (a slow machine, or a stall), whatever the real
    engine took. The real engine still transcribes."""

    def __init__(self, engine, cost_of):
        self.engine, self.cost_of, self.now, self.drafts = engine, cost_of, 0.0, 0

    def transcribe(self, samples, **kwargs):
        if kwargs.get("draft"):
            self.drafts += 1
            self.now += self.cost_of(self.drafts)
        return self.engine.transcribe(samples, **kwargs)

    def clock(self) -> float:
        return self.now


def _run_in_batches(transcriber, frames, size: int = 10):
    """Feed ``frames`` as the server's worker does; every segment with the index of the
    batch it came out of (a final coming out later means the user sees it later), and
    (batch index, utterance id) of each batch in which a partial's drafts ran."""
    out, drafted = [], []
    for k in range(0, len(frames), size):
        batch = frames[k:k + size]
        calls = transcriber.partial_calls
        got = transcriber.feed(batch[0].seq, b"".join(f.pcm for f in batch),
                               [f.speech for f in batch])
        out += [(k // size, s) for s in got]
        if transcriber.partial_calls > calls:
            drafted.append((k // size, transcriber.next_id))
    return out + [(len(frames), s) for s in transcriber.flush()], drafted


def _per_utterance(drafted) -> dict[int, list[int]]:
    by_id: dict[int, list[int]] = {}
    for batch, utterance in drafted:
        by_id.setdefault(utterance, []).append(batch)
    return by_id


def test_the_partial_budget_makes_partials_rarer_on_a_slow_engine_never_finals_later(
    engine, corpus_frames
):
    frames = corpus_frames[:170]  # the first three sentences
    budget = 0.10  # a tenth of the audio time
    runs = {}
    for name, cost in (("fast", 0.05), ("slow", 0.40)):  # CPU seconds per draft
        timed = CostClock(engine, lambda _n, c=cost: c)
        transcriber = StreamingTranscriber(timed, partial_budget=budget, cost_clock=timed.clock)
        out, drafted = _run_in_batches(transcriber, frames)
        runs[name] = (out, drafted, transcriber, timed)
    fast_out, fast_drafted, fast, _ = runs["fast"]
    slow_out, slow_drafted, slow, slow_clock = runs["slow"]
    # Where a partial costs half the interval's budget, one is computed every second
    # of speech (every one-second batch within an utterance), none refused.
    assert fast.partials_over_budget == 0
    for batches in _per_utterance(fast_drafted).values():
        assert [b - a for a, b in zip(batches, batches[1:], strict=False)] == \
            [1] * (len(batches) - 1), fast_drafted
    # Four times the budget: each sentence still gets its first two hypotheses (so its
    # first words show), then one partial per 2-4 s of audio; the time spent stays
    # within the budget but for those and the overshoot of one partial (two drafts
    # when it closes a window).
    slow_by_id = _per_utterance(slow_drafted)
    assert set(slow_by_id) == {0, 1, 2}
    for batches in slow_by_id.values():
        later = batches[FREE_HYPOTHESES - 1:]
        assert all(b - a >= 2 for a, b in zip(later, later[1:], strict=False)), slow_drafted
    assert slow.partials_over_budget > 0
    # Beyond the hypotheses that always run, at most half as many partials as the fast.
    always = FREE_HYPOTHESES * len(slow_by_id)
    assert len(slow_drafted) - always <= 0.5 * (len(fast_drafted) - always), \
        (slow_drafted, fast_drafted)
    assert slow.partial_cpu_s == pytest.approx(0.40 * slow_clock.drafts)
    free = FREE_HYPOTHESES * len(slow_by_id) * 0.40
    assert slow.partial_cpu_s <= budget * (len(frames) * 0.1 + BUDGET_BURST_S) + free + 0.80
    slow_partials = [s for _, s in slow_out if not s.final]
    assert {s.id for s in slow_partials} == {0, 1, 2}, "a sentence never showed words"
    for earlier, later in zip(slow_partials, slow_partials[1:], strict=False):
        if earlier.id == later.id:  # still no flicker
            assert _words(later.text)[: len(_words(earlier.text))] == _words(earlier.text)
    # The finals are the same segments, out of the same batches, as with no partials.
    bare, _ = _run_in_batches(StreamingTranscriber(engine, partials=False), frames)
    finals = {name: [(k, s) for k, s in run[0] if s.final] for name, run in runs.items()}
    assert len(bare) == 3
    assert finals["slow"] == finals["fast"] == bare


def test_after_a_costly_partial_partials_pause_until_its_cost_is_earned_back(
    engine, corpus_frames
):
    # A stall: the third draft takes 2 s of CPU (the machine was swapping); the others
    # 50 ms. With a 10 % budget that is 15-20 s of audio's worth (less the credit held,
    # at most 0.5 s): until then each sentence gets only its first two hypotheses, then
    # partials come every second again.
    stalled = CostClock(engine, lambda n: 2.0 if n == 3 else 0.05)
    transcriber = StreamingTranscriber(stalled, partial_budget=0.10, cost_clock=stalled.clock)
    _, drafted = _run_in_batches(transcriber, corpus_frames)
    stall_at = drafted[2][0]
    repaid_by = stall_at + 20 + 2  # + what the free hypotheses since cost
    during = _per_utterance([d for d in drafted if stall_at < d[0] < stall_at + 14])
    after = _per_utterance([d for d in drafted if d[0] > repaid_by])
    assert during and all(len(b) <= FREE_HYPOTHESES for b in during.values()), drafted
    assert after and any(len(b) >= 3 for b in after.values()), drafted
    for batches in after.values():
        assert [b - a for a, b in zip(batches, batches[1:], strict=False)] == \
            [1] * (len(batches) - 1), f"not every second again: {drafted}"


def test_no_partial_is_computed_while_the_voice_pauses(engine):
    counting = CountingEngine(engine)
    voiced = say("We will review the quarterly budget on Tuesday morning.", "en-us", 160, 50)
    pcm = (np.clip(voiced, -1, 1) * 32767).astype("<i2")
    n = len(pcm) // 1600
    pcm = pcm[: n * 1600].tobytes()
    # Speech throughout, but one frame the VAD called quiet (too short to end the
    # utterance) exactly where the second partial falls due: the first comes after
    # 0.8 s of speech (FIRST_DRAFT_SPEECH_S: frame 7), the next one a second later
    # (frame 17).
    flags = [True] * n
    flags[17] = False
    transcriber = StreamingTranscriber(counting, partial_budget=None)
    drafts_at: list[int] = []
    for seq in range(n):  # frame by frame, as a live server hands them over
        before = len(counting.draft_calls)
        transcriber.feed(seq, pcm[seq * FRAME_BYTES:(seq + 1) * FRAME_BYTES], [flags[seq]])
        if len(counting.draft_calls) > before:
            drafts_at.append(seq)
    assert drafts_at[:3] == [7, 18, 28], drafts_at  # the one due at 17 waits for speech


def _partials_at_the_servers_pace(engine, budget, draft_cost_s: float = 0.070):
    """The live server's pace (frames handed over one by one, a partial due every 0.8 s)
    over 20 sentences 1.2 s apart (bench/transcript_latency.py's), each draft costing
    ``draft_cost_s`` (a synthetic clock: what one costs here, docs/figures.md). Returns
    the transcriber, the corpus and, per sentence, the audio times at which a partial
    came while its voice lasted."""
    from tests.support.transcript_corpus import MORE_SENTENCES, SENTENCES, make_corpus

    pool = SENTENCES + MORE_SENTENCES
    corpus = make_corpus(tuple(pool[i % len(pool)] for i in range(20)), pause_s=1.2)
    clock = CostClock(engine, lambda _n: draft_cost_s)
    transcriber = StreamingTranscriber(clock, partial_interval_s=0.8, cost_clock=clock.clock,
                                       partial_budget=budget)
    seen: list = []
    transcribe_frames(transcriber, frames_with_speech(corpus.samples),
                      on_segment=seen.append, batch_frames=1)
    came = [[s.end_s for s in seen if not s.final and u.start_s < s.end_s <= u.end_s + 0.05]
            for u in corpus.utterances]
    return transcriber, corpus, came


def test_within_the_2_percent_cap_nearly_every_sentence_shows_a_partial(engine):
    """``--partial-budget 2`` (the operators' cost cap) admits only the first two
    hypotheses of most sentences: those must agree on a word while the voice lasts. With
    the first one after 0.5 s of speech, 7 of these 20 sentences showed no partial before
    their final."""
    transcriber, _corpus, came = _partials_at_the_servers_pace(engine, 0.02)
    shown = [len(times) for times in came]
    assert transcriber.partials_over_budget > 0  # the budget is what limits them here
    assert shown.count(0) <= 3, shown


def test_at_the_default_budget_new_text_comes_about_once_a_second_during_speech(engine):
    """Issue 9: partials at least once a second during speech, by default. The longest
    wait for new text while a sentence is spoken (from one partial to the next, and from
    the last one to the voice's end) stays near the 0.8 s interval, p95 <= 1.2 s, when a
    draft costs 80 ms (a busy machine; 66-83 ms measured here). At the former 2 % default
    the same sentences waited ~1.8 s median, ~2.9 s p95, one partial each."""
    from meetcap.transcribe.stream import DEFAULT_PARTIAL_BUDGET

    transcriber, corpus, came = _partials_at_the_servers_pace(
        engine, DEFAULT_PARTIAL_BUDGET, draft_cost_s=0.080)
    waits = []
    for times, u in zip(came, corpus.utterances, strict=True):
        waits += [b - a for a, b in zip(times, times[1:], strict=False)]
        if times:
            waits.append(u.end_s - times[-1])
    waits.sort()
    p95 = waits[round(0.95 * (len(waits) - 1))]
    assert [len(times) for times in came].count(0) <= 1, came
    assert p95 <= 1.2, (p95, waits[-5:], transcriber.partials_over_budget)
