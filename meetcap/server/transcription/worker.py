"""The transcription worker process: one engine, the sessions the server hands it.

Runs in its own process (multiprocessing, spawn), so the engine's CPU and any crash stay
away from the server's event loop: storage and acks never wait for it. The server tells
it, per session, how many frames are durable (and when the session ended); the worker
reads those frames back from disk (storedaudio.py), decides speech itself with the
Silero VAD (speech.py: the frames' own speech bit is not used, so a client without a VAD
gets its transcript), feeds them to a
:class:`~meetcap.transcribe.stream.StreamingTranscriber`, writes each utterance's finals
to the transcript files (files.py) and only then reports them. Because it works from the
files, it catches up after falling behind or after a restart from ``resume_seq``.

Messages (tuples over a multiprocessing Pipe). Server -> worker: ``("stored", sid,
frames)``, ``("ended", sid, frames)``, ``("detached", sid, frames)``,
``("stop", "", 0)``. Worker -> server: ``("ready", model_dir)``, ``("fatal", sentence)``,
``("finals", sid, [segment dicts])``, ``("partial", sid, segment dict)``,
``("progress", sid, fed, durable)``, ``("complete", sid, next_id)``,
``("released", sid)``, ``("failed", sid, sentence)``, ``("step", sid)`` (the session
it works on from now on: the server blames that one when the worker dies), ``("saved",
sid, resume_seq)`` (where a restart would carry on: the server counts crashes there).

Fault injection (tests only): with ``MEETCAP_FAULT_CRASH_SESSIONS_FILE`` set to a file,
the worker exits abruptly (``os._exit``, as a crash of the engine's native code would)
when it is about to work on a session whose id is a line of that file.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from pathlib import Path

from meetcap.constants import FRAMES_PER_SECOND
from meetcap.errors import MeetcapError, StorageError
from meetcap.server.sidecar import speaker_of_frames
from meetcap.server.transcription.config import TranscriptionConfig
from meetcap.server.transcription.files import TranscriptFiles, TranscriptState
from meetcap.server.transcription.speech import SpeechDecider
from meetcap.server.transcription.storedaudio import StoredAudio
from meetcap.transcribe.engine import Engine
from meetcap.transcribe.segments import TranscriptSegment
from meetcap.transcribe.stream import (
    DEFAULT_PARTIAL_BUDGET,
    PreviousFinal,
    StreamingTranscriber,
)

log = logging.getLogger(__name__)

# The workers are spawned with this process's environment: one OpenBLAS thread in them.
# numpy's OpenBLAS otherwise runs the feature extractor's small matrix products on every
# core and its threads spin-wait after each one, which nearly doubled a partial's CPU
# time (130 vs 70 ms a draft) and ate the partials' budget (stream.py). This process's
# own numpy is loaded already and keeps its threads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

FAULT_CRASH_ENV = "MEETCAP_FAULT_CRASH_SESSIONS_FILE"  # fault-injection hook, tests only
FAULT_CRASH_STATUS = 70

CHUNK_FRAMES = 10  # fed at once: 1 s of audio, so a backlog is read in big steps
WARM_UP_FRAMES = 600  # the VAD's warm-up at a take-up, a minute (~0.25 s) per step
_SAVE_AFTER_FRAMES = 300  # move resume_seq on over 30 s of silence even without finals
_LOCK_RETRY_S = 0.25
_PROGRESS_INTERVAL_S = 0.25
_IDLE_POLL_S = 0.2


@dataclass
class _Job:
    """One session this worker transcribes."""

    session_id: str
    durable: int = 0
    ended: bool = False
    last_news: float = field(default_factory=time.monotonic)
    retry_lock_at: float = 0.0
    # Set once taken up (lock held, state loaded):
    files: TranscriptFiles | None = None
    audio: StoredAudio | None = None
    transcriber: StreamingTranscriber | None = None
    speech: SpeechDecider | None = None
    state: TranscriptState | None = None
    read: int = 0  # frames read from disk into ``speech`` (it decides them, then feeds)
    resume: int = 0  # where it was taken up: ``speech`` only warms up on frames before
    read_high: int = 0  # max(read, resume): what progress reports
    fed: int = 0
    saved_resume: int = 0
    progress_sent: tuple[int, int] = (-1, -1)
    progress_at: float = 0.0
    stepped_at: float = 0.0
    detached: bool = False  # its connection went away: let go once caught up

    @property
    def taken(self) -> bool:
        return self.transcriber is not None


class Worker:
    """The worker's main loop (see module doc); ``send`` goes to the server."""

    def __init__(
        self, engine: Engine, config: TranscriptionConfig, data_dir: Path,
        commands: queue.Queue[tuple], send,
    ) -> None:
        self.engine = engine
        self.config = config
        self.data_dir = Path(data_dir)
        self.commands = commands
        self.send = send
        self.jobs: dict[str, _Job] = {}
        self._max_lag_frames = round(config.partial_max_lag_s * FRAMES_PER_SECOND)
        self._crash_file = os.environ.get(FAULT_CRASH_ENV)
        self._stepping: str | None = None

    def run(self) -> None:
        while True:
            job = self._next_job()
            self._drain(timeout=None if job is not None else _IDLE_POLL_S)
            job = self._next_job()
            if job is not None:
                try:
                    self._step(job)
                except MeetcapError as exc:  # files unreadable: this session only
                    log.error("session %s: transcription stopped: %s", job.session_id, exc)
                    self.send(("failed", job.session_id, str(exc)))
                    self._drop(job)
            self._release_idle()

    # -- commands

    def _drain(self, timeout: float | None) -> None:
        """Take every queued command; wait up to ``timeout`` for one when idle."""
        try:
            if timeout is not None:
                self._apply(self.commands.get(timeout=timeout))
            while True:
                self._apply(self.commands.get_nowait())
        except queue.Empty:
            pass

    def _apply(self, command: tuple) -> None:
        kind, session_id, frames = command
        job = self.jobs.get(session_id)
        if job is None and kind == "detached":
            return
        if job is None:
            job = self.jobs[session_id] = _Job(session_id)
        if kind == "detached":
            job.detached = True
            return
        if frames > job.durable or kind == "ended":
            job.detached = False  # new audio: attached again (here or after a takeover)
        job.durable = max(job.durable, frames)
        job.last_news = time.monotonic()
        if kind == "ended":
            job.ended = True

    # -- scheduling

    def _wants_work(self, job: _Job, now: float) -> bool:
        if not job.taken:
            return job.retry_lock_at <= now
        return job.read < job.durable or job.ended

    def _next_job(self) -> _Job | None:
        """Round robin over the sessions with work: a session catching up on a long
        backlog takes one chunk at a time, so live sessions beside it stay live."""
        now = time.monotonic()
        ready = [j for j in self.jobs.values() if self._wants_work(j, now)]
        if not ready:
            return None
        job = min(ready, key=lambda j: j.stepped_at)
        job.stepped_at = now
        return job

    def _step(self, job: _Job) -> None:
        if job.session_id != self._stepping:
            self._stepping = job.session_id
            self.send(("step", job.session_id))  # read before our death, if it comes
        self._fault_injection(job)
        if not job.taken and not self._take_up(job):
            return
        speech, audio = job.speech, job.audio
        assert speech and audio
        if job.read < min(job.resume, job.durable):
            # The VAD hears the session from its start first (speech.py).
            n = min(WARM_UP_FRAMES, min(job.resume, job.durable) - job.read)
            speech.warm_up(audio.read(job.read, n)[0])
            job.read += n
        elif job.read < job.durable:
            n = min(CHUNK_FRAMES, job.durable - job.read)
            pcm, _ = audio.read(job.read, n)  # the client's speech bit is not used
            job.read += n
            job.read_high = max(job.read_high, job.read)
            self._transcribe(job, *speech.feed(pcm))
            self._progress(job)
        elif job.ended:
            self._transcribe(job, *speech.flush())
            self._complete(job)

    def _transcribe(self, job: _Job, first_seq: int, pcm: bytes, speech: list[bool]) -> None:
        """Feed the frames whose speech is decided; save and report the finals."""
        transcriber, state, files, audio = job.transcriber, job.state, job.files, job.audio
        assert transcriber and state and files and audio
        if not speech:
            return
        end = first_seq + len(speech)
        # Partials go first when behind: none while more than the limit waits. None
        # either once the voice paused (the VAD says no speech): the utterance is about
        # to end, and a partial computed now would only make its final later.
        transcriber.partials_enabled = self.config.partials and (
            job.durable - end <= self._max_lag_frames and speech[-1]
        )
        segments = transcriber.feed(first_seq, pcm, speech)
        job.fed = end
        finals = [self._with_speaker(audio, s) for s in segments if s.final]
        resume = transcriber.resume_seq
        if finals or (resume is not None and resume - job.saved_resume >= _SAVE_AFTER_FRAMES):
            state.segments.extend(finals)
            state.resume_seq = resume if resume is not None else job.fed
            files.save(state)  # durable before anyone hears of them
            job.saved_resume = state.resume_seq
            self.send(("saved", job.session_id, state.resume_seq))
        if finals:
            self.send(("finals", job.session_id, [s.to_json() for s in finals]))
        partials = [s for s in segments if not s.final]
        if partials and partials[-1].id == transcriber.next_id:
            self.send(("partial", job.session_id, partials[-1].to_json()))

    def _complete(self, job: _Job) -> None:
        transcriber, state, files, audio = job.transcriber, job.state, job.files, job.audio
        assert transcriber and state and files and audio
        finals = [self._with_speaker(audio, s) for s in transcriber.flush()]
        state.segments.extend(finals)
        state.resume_seq = job.durable
        state.complete = True
        files.save(state)
        if finals:
            self.send(("finals", job.session_id, [s.to_json() for s in finals]))
        job.fed = job.durable
        self._progress(job, force=True)
        self.send(("complete", job.session_id, state.next_id))
        log.info("session %s: transcript complete, %d segments", job.session_id,
                 state.next_id)
        self._drop(job, remove_lock=True)

    def _fault_injection(self, job: _Job) -> None:
        """The test-only crash hook (module doc); nothing unless the variable is set."""
        if not self._crash_file:
            return
        try:
            doomed = Path(self._crash_file).read_text().split()
        except OSError:
            return
        if job.session_id in doomed:
            log.error("session %s: fault injection: the worker crashes now (%s)",
                      job.session_id, FAULT_CRASH_ENV)
            logging.shutdown()
            os._exit(FAULT_CRASH_STATUS)

    @staticmethod
    def _with_speaker(audio: StoredAudio, segment: TranscriptSegment) -> TranscriptSegment:
        """The segment with who spoke over its frames, when the frames say (the speakers
        extension's flag bits); else as it is (speaker None)."""
        first = round(segment.start_s * FRAMES_PER_SECOND)
        count = max(1, round(segment.end_s * FRAMES_PER_SECOND) - first)
        speaker = speaker_of_frames(audio.flags(first, count))
        return replace(segment, speaker=speaker) if speaker is not None else segment

    def _take_up(self, job: _Job) -> bool:
        """Lock the session's transcript and load where it stopped; False to retry later."""
        files = TranscriptFiles(self.data_dir, job.session_id)
        try:
            locked = files.try_lock()
        except OSError as exc:
            raise StorageError(f"cannot lock the transcript: {exc.strerror or exc}") from exc
        if not locked:  # another instance still transcribes it (it lets go when idle)
            job.retry_lock_at = time.monotonic() + _LOCK_RETRY_S
            return False
        try:
            state = files.load()
            if state.failed:  # given up before (service.py): never taken up again
                self.send(("failed", job.session_id, state.failed))
                files.unlock(remove=True)
                del self.jobs[job.session_id]
                return False
            if state.complete:
                self.send(("complete", job.session_id, state.next_id))
                files.unlock(remove=True)
                del self.jobs[job.session_id]
                return False
            files.write_derived(state)  # heals a crash between the JSON and the others
        except BaseException:
            files.unlock()
            raise
        transcriber = StreamingTranscriber(
            self.engine, min_words=self.config.min_words,
            partial_interval_s=self.config.partial_interval_s,
            max_utterance_s=self.config.max_utterance_s,
            partial_budget=partial_budget(self.config),
        )
        job.audio = StoredAudio(self.data_dir, job.session_id)
        # The next final is decoded after the last stored one, as in an uninterrupted run.
        previous = None
        if state.segments:
            last = state.segments[-1]
            try:
                pcm, _ = job.audio.read(*PreviousFinal.frames_of(last))
            except BaseException:
                files.unlock()
                raise
            previous = PreviousFinal.of(last, pcm)
        transcriber.resume_from(state.resume_seq, state.next_id, previous)
        job.files, job.state, job.transcriber = files, state, transcriber
        job.speech = SpeechDecider(state.resume_seq)
        job.read = 0  # the VAD warms up on the frames before resume_seq (speech.py)
        job.resume = job.fed = job.saved_resume = job.read_high = state.resume_seq
        self.send(("saved", job.session_id, state.resume_seq))
        log.info("session %s: transcribing from frame %d (next segment %d)",
                 job.session_id, state.resume_seq, state.next_id)
        self._progress(job, force=True)
        return True

    def _progress(self, job: _Job, force: bool = False) -> None:
        now = time.monotonic()
        current = (job.read_high, job.durable)
        caught_up = job.read_high >= job.durable
        if current != job.progress_sent and (
            force or caught_up or now - job.progress_at >= _PROGRESS_INTERVAL_S
        ):
            job.progress_sent, job.progress_at = current, now
            self.send(("progress", job.session_id, job.read_high, job.durable))

    def _release_idle(self) -> None:
        """Let go of sessions whose client went away (see TranscriptionConfig)."""
        now = time.monotonic()
        for job in list(self.jobs.values()):
            if job.ended or (
                not job.detached and now - job.last_news < self.config.idle_release_s
            ):
                continue
            if job.taken and job.read < job.durable:
                continue  # finish what is stored first
            if job.taken:
                assert job.state is not None and job.files is not None
                resume = job.transcriber.resume_seq if job.transcriber else None
                if resume is not None and resume != job.state.resume_seq:
                    job.state.resume_seq = resume
                    job.files.save(job.state)
            self.send(("released", job.session_id))
            self._drop(job)

    def _drop(self, job: _Job, remove_lock: bool = False) -> None:
        self.jobs.pop(job.session_id, None)
        if job.audio is not None:
            job.audio.close()
        if job.files is not None:
            job.files.unlock(remove=remove_lock)


def partial_budget(config: TranscriptionConfig) -> float:
    """The partials' CPU budget, a fraction of the audio time (the config's, or else the
    streaming transcriber's default)."""
    if config.partial_budget is not None:
        return config.partial_budget
    return DEFAULT_PARTIAL_BUDGET


def describe_partials(config: TranscriptionConfig) -> str:
    """What the operator chose for partials, for the worker's first log line."""
    if not config.partials:
        return "partials off (finals only)"
    return f"partials on, within {partial_budget(config) * 100:g} % of the audio time"


def worker_main(
    conn: Connection, config: TranscriptionConfig, data_dir: str, log_level: str
) -> None:
    """The process entry point (spawned by the server's TranscriptionService)."""
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s[worker %(process)d]: %(message)s",
    )
    from meetcap.transcribe.engine import load_engine

    try:
        engine = load_engine(config.model, language=config.language, threads=config.threads)
    except MeetcapError as exc:
        conn.send(("fatal", str(exc)))
        return
    conn.send(("ready", getattr(engine, "model_dir", str(config.model))))
    log.info("model loaded; %s", describe_partials(config))
    commands: queue.Queue[tuple] = queue.Queue()
    send_lock = threading.Lock()

    def send(message: tuple) -> None:
        with send_lock:
            conn.send(message)

    def receive() -> None:
        while True:
            try:
                command = conn.recv()
                if command[0] == "stop":
                    os._exit(0)  # the server stops; every final is on disk already
                commands.put(command)
            except (EOFError, OSError):
                # The server is gone (stopped, or killed): its sessions' state is on
                # disk; exit at once, releasing the locks, even mid-transcription.
                os._exit(0)

    threading.Thread(target=receive, name="meetcap-transcribe-recv", daemon=True).start()
    try:
        Worker(engine, config, Path(data_dir), commands, send).run()
    except (BrokenPipeError, EOFError, OSError) as exc:
        log.info("the server went away (%s)", exc)
        os._exit(0)
