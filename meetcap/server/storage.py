"""Gapless per-session storage: one WAV file, a speech-flag file and a JSON sidecar.

Files of session ``<id>`` in the data directory:

* ``<id>.wav`` - the audio, frames in sequence order, header sizes kept valid (wavfile).
* ``<id>.speech`` - one byte per frame (the frame's flags: bit 0 speech, bits 1-2 who
  spoke) while the session is open; folded into the sidecar's speech segments and
  removed when the session ends.
* ``<id>.json`` - the sidecar (sidecar.py).
* ``<id>.tracks.wav`` - a tracks session's two lanes (tracksfile, docs/protocol.md 3.5),
  written, fsynced and reconciled with the mono WAV so that an ack covers both.

One :class:`SessionWriter` at a time owns a session's files: it holds an exclusive
lock on the WAV (:func:`meetcap.oscalls.lock_exclusive`) for as long as it is attached,
so two server instances sharing the data directory (Redis mode) can never interleave
writes, and a killed instance lets go at once (the kernel drops its locks). **The file
is the truth for what is stored**: at every attach the writer cuts a torn last frame
and reports the whole frames as stored; frames are acknowledged only after the round
that wrote them was fsynced, so the file always holds at least every frame ever
acknowledged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from meetcap.constants import FRAME_BYTES
from meetcap.errors import FatalError, RetryableError, StorageError, UsageError
from meetcap.oscalls import (
    datasync,
    fsync_dir,
    lock_exclusive,
    open_file,
    pread,
    pwrite_all,
    unlock,
)
from meetcap.server import tracksfile, wavfile
from meetcap.server.sidecar import SessionMeta, write_sidecar

if TYPE_CHECKING:
    from meetcap.server.flusher import Flusher

log = logging.getLogger(__name__)

# The speech flags are advisory (the VAD's verdict, not audio): they are fsynced at most
# this often per session instead of in every round, which halves the fsyncs per round.
# A kill -9 loses none of them (they are in the page cache); a power cut may lose the
# last second of flags, which then read as "no speech".
_SPEECH_SYNC_INTERVAL_S = 1.0
_META_INTERVAL_S = 1.0  # WAV header + speech flags written at most this often
_LOCK_POLL_S = 0.05
# Below glibc's 128 KiB mmap threshold: the hash runs on a to_thread worker, and each of
# those keeps its own heap; with 1 MiB reads each worker's heap kept 1-2 MB (the soak's
# single instance: ~10 MB of its growth, docs/figures.md). 64 KiB: 16 reads a MiB.
_HASH_CHUNK_BYTES = 64 * 1024


class SessionFull(FatalError):
    """The session reached the most frames one WAV file can hold (about 37 hours): a new
    session must be started."""


class SessionLocked(RetryableError):
    """Another writer (another server instance) still holds the session's files; it lets
    go when its connection ends."""


class SessionSuperseded(FatalError):
    """While waiting for the files, a newer connection took the session over: this one
    has nothing more to do."""


class AudioFileMissing(FatalError):
    """A session known to the state store has no audio file in this data directory."""


@dataclass(slots=True)
class Batch:
    """Frames handed from the event loop to a write round; ``data`` is their joined PCM."""

    writer: SessionWriter
    first_seq: int
    pcm: list[bytes]
    flags: bytearray
    data: bytes = b""
    tracks: list[bytes] = field(default_factory=list)  # a tracks session's, else empty

    @property
    def frames(self) -> int:
        return len(self.flags)


@dataclass(frozen=True, slots=True)
class Finalised:
    """What the end of a session produced."""

    frames: int
    sha256: str
    wav_path: Path
    sidecar_path: Path


@dataclass(eq=False)
class SessionWriter:
    """The one writer of a session's files, for one attachment (one connection).

    The connection handler calls :meth:`append` for each frame in order; the
    :class:`~meetcap.server.flusher.Flusher` writes and fsyncs them in rounds and then
    advances :attr:`durable_frames` and wakes :meth:`changed` waiters. Only the event
    loop thread calls its methods, except :meth:`sync` (a flusher thread).
    """

    storage: Storage
    meta: SessionMeta
    epoch: int
    wav_fd: int
    speech_fd: int
    durable_frames: int
    failed: StorageError | None = None
    closed: bool = False
    tracks_fd: int | None = None  # a tracks session's two-lane WAV (tracksfile)
    _pending: list[bytes] = field(default_factory=list)
    _pending_tracks: list[bytes] = field(default_factory=list)
    _pending_flags: bytearray = field(default_factory=bytearray)
    _inflight: Batch | None = None
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _speech_synced_at: float = 0.0
    _meta_written_at: float = 0.0
    _flags_written: int = 0  # speech flags in the file (== durable_frames at open)
    _close_task: asyncio.Future[None] | None = None
    finalised: Finalised | None = None

    def __post_init__(self) -> None:
        self._idle.set()

    # -- the event loop side

    @property
    def received_frames(self) -> int:
        """Frames handed to this writer so far, stored or not (the next seq expected)."""
        inflight = self._inflight.frames if self._inflight is not None else 0
        return self.durable_frames + inflight + len(self._pending_flags)

    @property
    def unstored_frames(self) -> int:
        return self.received_frames - self.durable_frames

    def changed(self) -> asyncio.Event:
        """An event set at the next change of ``durable_frames`` or ``failed``. Take it,
        check the state, then wait: a change between the two is never missed."""
        return self._changed

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    @property
    def max_frames(self) -> int:
        """The most frames the session's files hold (a two-channel WAV fills twice as fast)."""
        return tracksfile.MAX_FRAMES if self.tracks_fd is not None else wavfile.MAX_FRAMES

    def append(self, pcm: bytes, flags: int | bool, tracks: bytes | None = None) -> None:
        """Queue the next frame for the next write round. Raises the storage failure,
        or SessionFull. ``flags``: the frame's header flags (bit 0 speech, bits 1-2 who
        spoke, meetcap.protocol.audio); a bool is the speech flag alone. ``tracks``: the
        frame's two lanes; in a tracks session a frame without them (it came over a
        connection without the extension) is stored as silence there, so the tracks
        file stays frame for frame in step with the mono one."""
        if self.failed is not None:
            raise self.failed
        if self.closed:
            raise UsageError("append() on a closed session writer")
        if self.received_frames >= self.max_frames:
            hours = "18.6 hours of two tracks" if self.tracks_fd is not None else "37 hours"
            raise SessionFull(
                f"session {self.meta.session_id} reached {self.max_frames} frames, the most "
                f"one WAV file holds (about {hours}): end it and start a new session"
            )
        self._pending.append(pcm)
        if self.tracks_fd is not None:
            self._pending_tracks.append(tracks if tracks is not None else tracksfile.SILENCE)
        self._pending_flags.append(int(flags))
        self.storage.flusher.mark_dirty(self)

    async def wait_durable(self, frames: int) -> None:
        """Return once ``frames`` frames are stored; raise the failure if storing failed."""
        while True:
            event = self.changed()
            if self.failed is not None:
                raise self.failed
            if self.durable_frames >= frames:
                return
            if self.closed:
                raise StorageError(f"session {self.meta.session_id} was detached")
            self.storage.flusher.mark_dirty(self)
            await event.wait()

    def take_batch(self) -> Batch | None:
        """Flusher only: hand the pending frames over to a write round."""
        if self._inflight is not None or not self._pending or self.closed or self.failed:
            return None
        batch = Batch(
            self, self.durable_frames, self._pending, self._pending_flags,
            tracks=self._pending_tracks,
        )
        self._pending, self._pending_flags, self._pending_tracks = [], bytearray(), []
        self._inflight = batch
        self._idle.clear()
        return batch

    def complete_batch(self, batch: Batch, error: BaseException | None) -> None:
        """Flusher only: the round that carried ``batch`` finished (fsynced or failed)."""
        self._inflight = None
        self._idle.set()
        if error is not None:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            self.failed = StorageError(
                f"cannot store audio of session {self.meta.session_id}: {reason}"
            )
            log.error("%s", self.failed)
        else:
            self.durable_frames += batch.frames
            if self._pending:
                self.storage.flusher.mark_dirty(self)
        self._notify()

    async def close(self, *, flush: bool) -> None:
        """Detach: store what is pending if ``flush`` (else drop it, it was never
        acknowledged), update the sidecar, and let go of the files (and their lock).

        Safe to call more than once and from several tasks: all wait for the one close.
        """
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(flush))
        # Shielded: a cancelled caller must not leave the files half released.
        await asyncio.shield(self._close_task)

    async def _close(self, flush: bool) -> None:
        if flush and self.failed is None:
            try:
                await self.wait_durable(self.received_frames)
            except StorageError:
                pass  # already logged; those frames were never acknowledged
        self.closed = True
        self._pending, self._pending_flags, self._pending_tracks = [], bytearray(), []
        await self._idle.wait()  # a round may still be writing our last batch
        self._notify()
        await asyncio.to_thread(self._release)

    # -- the thread side

    def write_batch(self, batch: Batch) -> None:
        """Write one batch's audio at its place in the WAV (page cache only, no fsync).

        Runs on the event loop thread: a pwrite of a few KB costs microseconds, while
        handing it to a thread would cost a GIL round trip. The WAV header and the speech
        flags are written at most once a second (_META_INTERVAL_S): after a crash the
        header may describe up to a second less audio than the file holds (still a valid
        WAV; reopening recomputes it). The speech flags are written with the audio (one
        byte a frame at offset ``seq``), so a kill -9 loses none; they are fsynced at
        most once a second (a power cut may lose the newest second of them).
        """
        batch.data = batch.pcm[0] if len(batch.pcm) == 1 else b"".join(batch.pcm)
        pwrite_all(self.wav_fd, batch.data, wavfile.pcm_offset(batch.first_seq))
        if self.tracks_fd is not None:  # fsynced in the same sync(): one ack covers both
            pwrite_all(
                self.tracks_fd, b"".join(batch.tracks), tracksfile.pcm_offset(batch.first_seq)
            )
        # The flags go to their file with the audio, every round: the transcriber reads
        # them from disk with the frames the sink announced (docs/server.md).
        pwrite_all(self.speech_fd, bytes(batch.flags), batch.first_seq)
        self._flags_written = batch.first_seq + batch.frames
        now = time.monotonic()
        if now - self._meta_written_at >= _META_INTERVAL_S:
            self._write_meta(batch.first_seq + batch.frames)
            self._meta_written_at = now

    def _write_meta(self, frames: int) -> None:
        """Write the WAV header's sizes for ``frames`` frames."""
        wavfile.write_sizes(self.wav_fd, frames * FRAME_BYTES)
        if self.tracks_fd is not None:
            tracksfile.write_sizes(self.tracks_fd, frames)

    def sync(self) -> None:
        """Make the written audio durable (fdatasync); the speech flags at most once a
        second (see _SPEECH_SYNC_INTERVAL_S). Blocks: runs on a flusher thread."""
        datasync(self.wav_fd)
        if self.tracks_fd is not None:
            datasync(self.tracks_fd)
        now = time.monotonic()
        if now - self._speech_synced_at >= _SPEECH_SYNC_INTERVAL_S:
            datasync(self.speech_fd)
            self._speech_synced_at = now

    def read_flags(self, frames: int) -> bytes:
        """The speech flags of frames 0..frames-1 (call after _write_meta)."""
        flags = pread(self.speech_fd, frames, 0)
        return flags + bytes(frames - len(flags))

    def _release(self) -> None:
        try:
            # A finished session's sidecar was written by finalise_sync: keep it.
            if self.failed is None and self.finalised is None:
                self._write_meta(self.durable_frames)
                datasync(self.wav_fd)
                if self.tracks_fd is not None:
                    datasync(self.tracks_fd)
                datasync(self.speech_fd)
                paths = self.storage.paths(self.meta.session_id)
                write_sidecar(
                    paths.sidecar, self.meta, paths.wav.name, self.read_flags(self.durable_frames),
                    tracks_audio=self._tracks_name(),
                )
        except OSError as exc:
            log.warning("session %s: sidecar not updated: %s", self.meta.session_id, exc)
        finally:
            os.close(self.speech_fd)
            if self.tracks_fd is not None:
                os.close(self.tracks_fd)
            try:
                unlock(self.wav_fd)
            finally:
                os.close(self.wav_fd)

    def _tracks_name(self) -> str | None:
        if self.tracks_fd is None:
            return None
        return self.storage.paths(self.meta.session_id).tracks.name

    def finalise_sync(self) -> Finalised:
        """Hash the stored PCM and mark the sidecar finished. Blocks: run in a thread.
        Raises StorageError when the files cannot be read or written."""
        try:
            return self._finalise()
        except OSError as exc:
            raise StorageError(
                f"the files of session {self.meta.session_id} cannot be read or written: "
                f"{exc.strerror or exc}"
            ) from exc

    def _finalise(self) -> Finalised:
        frames = self.durable_frames
        self._write_meta(frames)
        datasync(self.wav_fd)
        digest = hashlib.sha256()
        offset, end = wavfile.pcm_offset(0), wavfile.pcm_offset(frames)
        while offset < end:
            chunk = pread(self.wav_fd, min(_HASH_CHUNK_BYTES, end - offset), offset)
            if not chunk:
                raise StorageError(f"session {self.meta.session_id}: audio file is short")
            digest.update(chunk)
            offset += len(chunk)
            del chunk  # one read alive at a time (see _HASH_CHUNK_BYTES)
        datasync(self.speech_fd)
        if self.tracks_fd is not None:
            datasync(self.tracks_fd)
        paths = self.storage.paths(self.meta.session_id)
        sha256 = digest.hexdigest()
        write_sidecar(
            paths.sidecar, self.meta, paths.wav.name, self.read_flags(frames),
            finished=True, sha256=sha256, tracks_audio=self._tracks_name(),
        )
        self.finalised = Finalised(frames, sha256, paths.wav, paths.sidecar)
        return self.finalised


@dataclass(frozen=True, slots=True)
class SessionPaths:
    wav: Path
    speech: Path
    sidecar: Path
    tracks: Path  # exists only for a tracks session


class Storage:
    """Opens session writers in ``data_dir``; writes go through ``flusher``."""

    def __init__(self, data_dir: Path, flusher: Flusher) -> None:
        self.data_dir = Path(data_dir)
        self.flusher = flusher

    def prepare(self) -> None:
        """Create the data directory; raise StorageError if it cannot be written."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".write-probe"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise StorageError(
                f"the data directory {self.data_dir} is not writable: {exc.strerror or exc}"
            ) from exc

    def paths(self, session_id: str) -> SessionPaths:
        base = self.data_dir / session_id
        return SessionPaths(
            base.with_suffix(".wav"), base.with_suffix(".speech"), base.with_suffix(".json"),
            self.data_dir / f"{session_id}{tracksfile.SUFFIX}",
        )

    async def open(
        self,
        meta: SessionMeta,
        epoch: int,
        *,
        create: bool,
        wait_s: float,
        superseded: Callable[[], Awaitable[bool]],
        tracks: bool = False,
    ) -> SessionWriter:
        """Attach to a session's files, waiting up to ``wait_s`` for another instance to
        let go of them. Raises SessionSuperseded when ``superseded()`` turns True while
        waiting, SessionLocked on timeout, AudioFileMissing, or StorageError.

        ``tracks``: this connection sends two-lane frames; the session's tracks file is
        created if it has none yet. A session that has one keeps writing it either way."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return await asyncio.to_thread(self._open_sync, meta, epoch, create, tracks)
            except SessionLocked:
                if await superseded():
                    raise SessionSuperseded() from None
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_LOCK_POLL_S)
            except OSError as exc:
                raise StorageError(
                    f"cannot open the audio of session {meta.session_id}: {exc.strerror or exc}"
                ) from exc

    def _open_sync(
        self, meta: SessionMeta, epoch: int, create: bool, tracks: bool = False
    ) -> SessionWriter:
        paths = self.paths(meta.session_id)
        if not create and not paths.wav.exists():
            raise AudioFileMissing(str(paths.wav))
        wav_fd = open_file(paths.wav, os.O_RDWR | os.O_CREAT, 0o640)
        tracks_fd: int | None = None
        try:
            if not lock_exclusive(wav_fd):  # the lock on the mono WAV covers all the files
                raise SessionLocked(str(paths.wav))
            frames = self._reconcile(wav_fd)
            if tracks or paths.tracks.exists():
                tracks_fd, frames = self._open_tracks(paths.tracks, wav_fd, frames)
            speech_fd = open_file(paths.speech, os.O_RDWR | os.O_CREAT, 0o640)
        except BaseException:
            os.close(wav_fd)
            if tracks_fd is not None:
                os.close(tracks_fd)
            raise
        try:
            # Flags beyond the audio belong to frames never stored; missing ones read 0.
            os.ftruncate(speech_fd, frames)
            datasync(speech_fd)
            if create or tracks_fd is not None:
                fsync_dir(self.data_dir)
            if create:
                write_sidecar(
                    paths.sidecar, meta, paths.wav.name, b"",
                    tracks_audio=paths.tracks.name if tracks_fd is not None else None,
                )
        except BaseException:
            os.close(speech_fd)
            os.close(wav_fd)
            if tracks_fd is not None:
                os.close(tracks_fd)
            raise
        return SessionWriter(
            self, meta, epoch, wav_fd, speech_fd, frames, tracks_fd=tracks_fd,
            _flags_written=frames,
        )

    async def held_frames(self, session_id: str, wait_s: float) -> int | None:
        """How many frames the session's files hold, counted as an attach would (torn
        tail cut, tracks matched), while no writer holds them: then the count cannot grow
        without a valid resume. None when a writer still holds them after ``wait_s`` (a
        connection that just closed lets go as soon as it stored what it received), or
        there is no file. For a stale-token refusal (docs/protocol.md 4)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return await asyncio.to_thread(self._held_frames, session_id)
            except SessionLocked:
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(_LOCK_POLL_S)

    def _held_frames(self, session_id: str) -> int | None:
        paths = self.paths(session_id)
        try:
            wav_fd = open_file(paths.wav, os.O_RDWR)
        except OSError:  # no file, or a disk that refuses: the refusal goes without it
            return None
        try:
            if not lock_exclusive(wav_fd):
                raise SessionLocked(str(paths.wav))
            try:
                frames = self._reconcile(wav_fd)
                if paths.tracks.exists():
                    tracks_fd, frames = self._open_tracks(paths.tracks, wav_fd, frames)
                    os.close(tracks_fd)
                return frames
            finally:
                unlock(wav_fd)
        except OSError as exc:
            log.warning("session %s: cannot count its stored frames: %s", session_id, exc)
            return None
        finally:
            os.close(wav_fd)

    @staticmethod
    def _open_tracks(path: Path, wav_fd: int, frames: int) -> tuple[int, int]:
        """Open (or create) the tracks file and make both files hold the same frames.

        A new tracks file (a session that was mono until now) is filled with silence up
        to the mono file's frames. An existing one shorter than the mono file lost its
        last frames in a crash (both are fsynced in the same round before an ack, so
        never an acked frame): the mono file is cut to match. Returns (fd, frames)."""
        existed = path.exists()
        fd = open_file(path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            if existed:
                size = os.fstat(fd).st_size
                if size >= tracksfile.HEADER_BYTES and tracksfile.frames_in(size) < frames:
                    frames = tracksfile.frames_in(size)
                    os.ftruncate(wav_fd, wavfile.pcm_offset(frames))
                    wavfile.write_sizes(wav_fd, frames * FRAME_BYTES)
                    datasync(wav_fd)
            os.ftruncate(fd, tracksfile.pcm_offset(frames))  # zeros (silence) when short
            tracksfile.write_sizes(fd, frames)
            datasync(fd)
        except BaseException:
            os.close(fd)
            raise
        return fd, frames

    @staticmethod
    def _reconcile(wav_fd: int) -> int:
        """Make the file exactly header + whole frames, with matching sizes; fsync it."""
        size = os.fstat(wav_fd).st_size
        if size < wavfile.HEADER_BYTES:
            pwrite_all(wav_fd, wavfile.header(0), 0)
        frames = wavfile.frames_in(size)
        os.ftruncate(wav_fd, wavfile.pcm_offset(frames))
        wavfile.write_sizes(wav_fd, frames * FRAME_BYTES)
        datasync(wav_fd)
        return frames

    def remove_speech_file(self, session_id: str) -> None:
        """After the end: the flags live on in the sidecar's segments."""
        try:
            self.paths(session_id).speech.unlink()
        except OSError as exc:
            log.warning("session %s: cannot remove its speech flags: %s", session_id, exc)
