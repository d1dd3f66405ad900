"""Disk-backed spool of frames the server has not acknowledged yet.

Every frame is written here before it is sent, and leaves only when the server's ack
covers it, so nothing is lost across a dropped connection, a server restart or a crash
of the app. Layout of the spool root (one directory per capture session)::

    <root>/<local id>/session.json           metadata, replaced atomically (tmp, fsync, rename)
    <root>/<local id>/seg-<first seq>.dat    600 records (1 minute of audio, 1.9 MB) each
    <root>/<local id>/lock                   locked (oscalls) by the process delivering it

A record is the protocol's binary audio message (meetcap.protocol.audio): 3,216 bytes
carrying the sequence number and a CRC32, so a record torn by a crash or damaged on
disk is caught, never delivered as audio. Records are fixed-size, so record ``i`` of the
segment that starts at ``first`` is frame ``first + i``.

Durability: each frame is written to the segment file with one ``os.write`` (no user
space buffer), so a crash of the app loses nothing that :meth:`SpoolSession.append`
accepted; :meth:`SpoolSession.sync` (fsync, called every ``fsync_interval_s`` by the
streamer) bounds what an OS crash or power cut can lose.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from meetcap import oscalls
from meetcap.durable import atomic_write_bytes, write_all
from meetcap.errors import ProtocolError, SpoolFullError, StorageError, UsageError
from meetcap.frames import Frame
from meetcap.protocol import AUDIO_MESSAGE_BYTES, decode_audio, encode_audio

log = logging.getLogger(__name__)

RECORD_BYTES = AUDIO_MESSAGE_BYTES  # 3,216
FRAMES_PER_SEGMENT = 600  # one minute of audio a file: few files, cheap deletes
META_NAME = "session.json"
LOCK_NAME = "lock"
_SEGMENT_PREFIX, _SEGMENT_SUFFIX = "seg-", ".dat"
_META_VERSION = 2  # 2: destination, account and the last refusal
# How long Spool.open retries a session's lock before leaving it to the process holding
# it: a listing (meetcap spool, the app's dialog) probes locks for a moment.
_LOCK_RETRIES, _LOCK_RETRY_S = 5, 0.01


class _AnyDestination:
    def __repr__(self) -> str:
        return "ANY_DESTINATION"


ANY_DESTINATION = _AnyDestination()  # Spool.open: load every session (tools and tests)


@dataclass(frozen=True, slots=True)
class SpoolMeta:
    """What a spooled session needs to be resumed, kept in ``session.json``.

    ``session_id`` and ``resume_token`` are None until the server's first welcome.
    ``acked`` may lag behind the server's real ack (it is written lazily); the server's
    welcome says where to resume, so a lagging value only keeps frames longer.

    ``destination`` is the key of where the audio belongs
    (:meth:`StreamerConfig.resolved_destination`); a streamer delivers only sessions
    of its own destination. None (a session.json written before destinations existed)
    means "destination unknown": never delivered automatically, only by an explicit
    ``meetcap spool deliver`` that binds it to one. ``account`` is the account
    fingerprint (never the token). ``refused_*`` describe the last fatal refusal (close
    code, or HTTP status of a refused handshake; the reason in words; when), cleared by
    the next welcome or re-binding.
    """

    local_id: str
    started_at: float
    url: str
    session_id: str | None = None
    resume_token: str | None = None
    acked: int = -1
    ended: bool = False
    version: int = _META_VERSION
    destination: str | None = None
    account: str | None = None
    refused_code: int | None = None
    refused_reason: str | None = None
    refused_at: float | None = None


class SpoolBudget:
    """The byte cap shared by every session of one spool root (thread-safe)."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def reserve(self, nbytes: int, where: Path) -> None:
        with self._lock:
            if self._used + nbytes > self.cap_bytes:
                raise SpoolFullError(
                    f"the spool at {where} is full ({self._used / 2**20:.0f} MiB of "
                    f"{self.cap_bytes / 2**20:.0f} MiB, about "
                    f"{self._used / RECORD_BYTES / 36000:.1f} h of audio the server has not "
                    "acknowledged): capture stops so that no audio is dropped. Check the "
                    "connection to the server, or raise the spool cap."
                )
            self._used += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._used = max(0, self._used - nbytes)

    def add_existing(self, nbytes: int) -> None:
        """Count bytes already on disk (found at startup); may exceed the cap."""
        with self._lock:
            self._used += nbytes


@dataclass(slots=True)
class _Segment:
    first_seq: int
    count: int  # whole records in the file
    path: Path

    @property
    def end_seq(self) -> int:  # one past the last frame
        return self.first_seq + self.count


def _segment_name(first_seq: int) -> str:
    return f"{_SEGMENT_PREFIX}{first_seq:020d}{_SEGMENT_SUFFIX}"


class SpoolSession:
    """The spooled frames of one capture session. Thread-safe.

    The capture side calls :meth:`append`; the streamer reads with :meth:`read`, records
    server state with :meth:`set_session` and :meth:`ack`, and finally :meth:`mark_ended`.
    Get instances from :meth:`Spool.new_session` or :attr:`Spool.pending`.
    """

    def __init__(self, directory: Path, meta: SpoolMeta, budget: SpoolBudget) -> None:
        self.dir = directory
        self._meta = meta
        self._budget = budget
        self._lock = threading.Lock()  # guards everything below but fsync
        self._sync_lock = threading.Lock()  # keeps close() from closing an fd being fsynced
        self._segments: list[_Segment] = []
        self._next_seq = meta.acked + 1
        self._write_fd: int | None = None
        self._retired_fds: list[int] = []  # full segments still to fsync and close
        self._read_fds: dict[int, int] = {}  # first_seq -> fd
        self._dir_dirty = False
        self._dirty = False
        self._closed = False
        self._lock_fd: int | None = None
        self.dropped_on_recovery = 0  # torn/corrupt tail records removed by Spool.open

    # -- state

    @property
    def meta(self) -> SpoolMeta:
        with self._lock:
            return self._meta

    @property
    def next_seq(self) -> int:
        """The sequence number the next appended frame must carry."""
        return self._next_seq

    @property
    def last_seq(self) -> int:
        """The last frame spooled (-1 when none)."""
        return self._next_seq - 1

    @property
    def acked(self) -> int:
        return self._meta.acked

    @property
    def first_seq(self) -> int:
        """The lowest frame still on disk (frames below it were acked and deleted)."""
        with self._lock:
            return self._segments[0].first_seq if self._segments else self._next_seq

    @property
    def unacked_frames(self) -> int:
        return max(0, self._next_seq - 1 - self._meta.acked)

    # -- capture side

    def append(self, frame: Frame) -> None:
        """Write ``frame`` (which must carry :attr:`next_seq`) to disk.

        Raises :class:`SpoolFullError` at the byte cap and :class:`StorageError` when the
        disk refuses the write; in both cases nothing was stored.
        """
        data = encode_audio(frame.seq, frame.pcm, frame.speech)
        with self._lock:
            if self._closed:
                raise UsageError("the spool session is closed")
            if frame.seq != self._next_seq:
                raise ValueError(
                    f"frames must be spooled in order without gaps: expected frame "
                    f"{self._next_seq}, got {frame.seq}"
                )
            self._budget.reserve(RECORD_BYTES, self.dir)
            try:
                segment = self._writable_segment()
                assert self._write_fd is not None
                try:
                    write_all(self._write_fd, data)
                except OSError:
                    # Cut a partial record so the file stays a whole number of records.
                    os.ftruncate(self._write_fd, segment.count * RECORD_BYTES)
                    raise
            except OSError as exc:
                self._budget.release(RECORD_BYTES)
                raise StorageError(
                    f"cannot write the audio spool in {self.dir}: {exc.strerror or exc}; "
                    "capture stops so that no audio is lost silently"
                ) from exc
            segment.count += 1
            self._next_seq += 1
            self._dirty = True

    def _writable_segment(self) -> _Segment:
        if self._segments and self._write_fd is not None:
            last = self._segments[-1]
            if last.count < FRAMES_PER_SEGMENT:
                return last
            self._retired_fds.append(self._write_fd)
            self._write_fd = None
        path = self.dir / _segment_name(self._next_seq)
        self._write_fd = oscalls.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        segment = _Segment(self._next_seq, 0, path)
        self._segments.append(segment)
        self._dir_dirty = True
        return segment

    def sync(self) -> None:
        """Make every appended frame durable (fsync). Call it from a non-audio thread."""
        with self._sync_lock:
            with self._lock:
                if not (self._dirty or self._retired_fds or self._dir_dirty):
                    return
                fds = list(self._retired_fds)
                self._retired_fds.clear()
                current = self._write_fd
                dir_dirty, self._dir_dirty = self._dir_dirty, False
                self._dirty = False
            try:
                for fd in fds:
                    oscalls.datasync(fd)
                if current is not None:
                    oscalls.datasync(current)
                if dir_dirty:
                    oscalls.fsync_dir(self.dir)
            except OSError as exc:
                raise StorageError(f"cannot flush the audio spool in {self.dir}: {exc}") from exc
            finally:
                for fd in fds:
                    os.close(fd)

    # -- streamer side

    def read(self, seq: int, max_frames: int) -> list[bytes]:
        """Up to ``max_frames`` records from frame ``seq`` on (fewer at a segment end).

        Returns [] when ``seq`` is not spooled yet. Raises :class:`StorageError` when
        ``seq`` was already deleted (it was acked: the caller resumed from a stale ack).
        """
        with self._lock:
            if seq >= self._next_seq:
                return []
            segment = self._find_segment(seq)
            fd = self._read_fds.get(segment.first_seq)
            if fd is None:
                fd = oscalls.open_file(segment.path, os.O_RDONLY)
                self._read_fds[segment.first_seq] = fd
            count = min(max_frames, segment.end_seq - seq)
            offset = (seq - segment.first_seq) * RECORD_BYTES
            blob = oscalls.pread(fd, count * RECORD_BYTES, offset)
        if len(blob) != count * RECORD_BYTES:
            raise StorageError(f"spool segment {segment.path} is shorter than its records")
        return [blob[i : i + RECORD_BYTES] for i in range(0, len(blob), RECORD_BYTES)]

    def _find_segment(self, seq: int) -> _Segment:
        # Few segments (one a minute, fewer still once acked): a scan from the front is fine.
        for segment in self._segments:
            if segment.first_seq <= seq < segment.end_seq:
                return segment
        raise StorageError(
            f"frame {seq} is no longer in the spool at {self.dir} (the spool holds "
            f"{self._segments[0].first_seq if self._segments else self._next_seq}"
            f"-{self._next_seq - 1})"
        )

    def set_session(self, session_id: str, resume_token: str) -> None:
        """Durably record the server's session id and latest resume token.

        Returns once it is on disk: the protocol requires the new token to be persisted
        before any frame is sent on the connection that issued it.
        """
        with self._lock:
            self._meta = replace(
                self._meta, session_id=session_id, resume_token=resume_token,
                refused_code=None, refused_reason=None, refused_at=None,
            )
            meta = self._meta
        self._write_meta(meta)

    def record_refusal(self, code: int | None, reason: str) -> None:
        """Durably note why delivery stopped (a fatal answer): the session stays in the
        spool and a listing can say why. ``code``: close code or HTTP status, if any."""
        with self._lock:
            self._meta = replace(
                self._meta, refused_code=code, refused_reason=reason, refused_at=time.time()
            )
            meta = self._meta
        if self.dir.exists():
            self._write_meta(meta)

    def rebind(self, destination: str, url: str, account: str | None) -> None:
        """Durably send this session to another destination from now on (new server or
        new credentials); the last refusal is forgotten. The server session id and resume
        token stay: a server that does not know them refuses, and says so."""
        with self._lock:
            self._meta = replace(
                self._meta, destination=destination, url=url, account=account,
                refused_code=None, refused_reason=None, refused_at=None,
                version=_META_VERSION,
            )
            meta = self._meta
        self._write_meta(meta)

    def ack(self, seq: int) -> None:
        """The server stored every frame up to ``seq``: delete fully acked segments."""
        doomed: list[_Segment] = []
        with self._lock:
            if seq <= self._meta.acked:
                return
            if seq >= self._next_seq:
                raise ValueError(f"ack for frame {seq}, but only {self._next_seq - 1} is spooled")
            self._meta = replace(self._meta, acked=seq)
            # The last segment stays even when acked: it tells a later run where the
            # session's frames end (the next sequence number and the last_seq of ``end``).
            while len(self._segments) > 1 and self._segments[0].end_seq - 1 <= seq:
                doomed.append(self._segments.pop(0))
            meta = self._meta
        if not doomed:
            return
        # Persist the ack before deleting, so a later run never mistakes the hole for a gap.
        self._write_meta(meta)
        for segment in doomed:
            with self._lock:
                fd = self._read_fds.pop(segment.first_seq, None)
            if fd is not None:
                os.close(fd)
            segment.path.unlink(missing_ok=True)
            self._budget.release(segment.count * RECORD_BYTES)

    def mark_ended(self) -> None:
        """The server answered ``ended``: the session is delivered; remove it from disk."""
        with self._lock:
            self._meta = replace(self._meta, ended=True)
            meta = self._meta
        self._write_meta(meta)  # a crash during the removal below leaves an "ended" marker
        self.remove()

    def remove(self) -> None:
        """Delete the session from disk (delivered, or nothing worth delivering)."""
        self.close(keep=False)
        with self._lock:
            released = sum(s.count for s in self._segments) * RECORD_BYTES
            self._segments.clear()
        self._budget.release(released)
        shutil.rmtree(self.dir, ignore_errors=True)

    def close(self, keep: bool = True) -> None:
        """Flush and close the files; the session stays on disk for a later run.

        ``keep`` False skips the final metadata write (the caller deletes the session).
        """
        with self._sync_lock:
            with self._lock:
                if self._closed:
                    return
                self._closed = True
                fds = [*self._retired_fds, *self._read_fds.values()]
                if self._write_fd is not None:
                    fds.append(self._write_fd)
                self._retired_fds.clear()
                self._read_fds.clear()
                self._write_fd = None
                meta = self._meta
            for fd in fds:
                try:
                    oscalls.datasync(fd)
                except OSError:
                    pass  # read-only fds on some systems; the data fds were synced above
                os.close(fd)
            if keep and self.dir.exists():
                self._write_meta(meta)
            if self._lock_fd is not None:
                try:
                    oscalls.unlock(self._lock_fd)
                finally:
                    os.close(self._lock_fd)
                self._lock_fd = None

    # -- files

    def _write_meta(self, meta: SpoolMeta) -> None:
        try:
            atomic_write_bytes(self.dir / META_NAME, json.dumps(asdict(meta)).encode())
        except OSError as exc:
            raise StorageError(f"cannot write the spool metadata in {self.dir}: {exc}") from exc

    def _try_lock(self) -> bool:
        """Take this session's cross-process lock; False when another process holds it."""
        fd = oscalls.open_file(self.dir / LOCK_NAME, os.O_RDWR | os.O_CREAT)
        try:
            locked = oscalls.lock_exclusive(fd)
        except OSError:
            locked = False
        if not locked:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def _recover(self) -> None:
        """Load the segments found on disk, cutting a torn or corrupt tail.

        Only the tail can be torn (frames are appended in order, one write each), so the
        session is the longest run of whole, valid, contiguous records from the start.
        """
        found: list[_Segment] = []
        for path in self.dir.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
            try:
                first = int(path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)])
            except ValueError:
                continue
            found.append(_Segment(first, path.stat().st_size // RECORD_BYTES, path))
        found.sort(key=lambda s: s.first_seq)
        segments: list[_Segment] = []
        cut = False
        for index, segment in enumerate(found):
            size = segment.path.stat().st_size
            if cut or (segments and segment.first_seq != segments[-1].end_seq):
                cut = True
                self.dropped_on_recovery += segment.count
                segment.path.unlink()
                continue
            is_last = index == len(found) - 1
            valid = self._valid_prefix(segment) if is_last else segment.count
            if not is_last and (valid != FRAMES_PER_SEGMENT or size != valid * RECORD_BYTES):
                valid = self._valid_prefix(segment)
                cut = True
            if valid * RECORD_BYTES != size:
                self.dropped_on_recovery += segment.count - valid
                with open(segment.path, "r+b") as fh:
                    fh.truncate(valid * RECORD_BYTES)
                    fh.flush()
                    oscalls.datasync(fh.fileno())
                segment.count = valid
            if segment.count == 0:
                segment.path.unlink()
                continue
            segments.append(segment)
        self._segments = segments
        if segments:
            self._next_seq = segments[-1].end_seq
            if self._meta.acked >= self._next_seq:
                # The ack in session.json is durable, the tail after it was not: the server
                # holds those frames, so nothing is lost; resume numbering after the ack.
                self._next_seq = self._meta.acked + 1
        if self.dropped_on_recovery:
            log.warning(
                "spool %s: dropped %d torn or corrupt frame records at the end (a crash "
                "during the last write); frames 0-%d are intact",
                self.dir, self.dropped_on_recovery, self._next_seq - 1,
            )
        self._budget.add_existing(sum(s.count for s in segments) * RECORD_BYTES)

    @staticmethod
    def _valid_prefix(segment: _Segment) -> int:
        """How many records from the start of ``segment`` decode and carry the right seq."""
        valid = 0
        with open(segment.path, "rb") as fh:
            while True:
                record = fh.read(RECORD_BYTES)
                if len(record) < RECORD_BYTES:
                    return valid
                try:
                    message = decode_audio(record)
                except ProtocolError:
                    return valid
                if message.seq != segment.first_seq + valid:
                    return valid
                valid += 1


class Spool:
    """A spool root: the sessions in it and the byte cap they share.

    Open with :meth:`open`; :attr:`pending` lists the unfinished sessions an earlier run
    left behind for this destination (locked for this process); :attr:`elsewhere` the
    session folders left alone (another destination, unknown destination, or held by
    another process); :meth:`new_session` starts a new one.
    """

    def __init__(
        self,
        root: Path,
        budget: SpoolBudget,
        pending: list[SpoolSession],
        elsewhere: list[Path] | None = None,
    ) -> None:
        self.root = root
        self.budget = budget
        self.pending = pending
        self.elsewhere = elsewhere or []

    @classmethod
    def open(
        cls,
        root: Path | str,
        cap_bytes: int = 2 * 1024**3,
        *,
        destination: str | None | _AnyDestination = ANY_DESTINATION,
        local_ids: Collection[str] | None = None,
    ) -> Spool:
        """Open (creating if needed) the spool at ``root`` and recover its sessions.

        Only sessions whose recorded destination equals ``destination`` (and, with
        ``local_ids``, whose local id is listed) are taken: locked for this process and
        recovered. The others are not touched, not even locked (another process may be
        delivering them); their bytes still count against the cap, which the whole root
        shares. ``destination`` None takes the sessions of unknown destination;
        :data:`ANY_DESTINATION` (the default) takes every session.

        Sessions already ended are removed; a torn last record is cut (logged, counted
        in :attr:`SpoolSession.dropped_on_recovery`); sessions held by another running
        process are left alone.
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the audio spool at {root}: {exc}") from exc
        budget = SpoolBudget(cap_bytes)
        pending: list[SpoolSession] = []
        elsewhere: list[Path] = []
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            wanted = local_ids is None or directory.name in local_ids
            session = cls._load(directory, budget, destination) if wanted else None
            if session is not None:
                pending.append(session)
            elif directory.exists():
                elsewhere.append(directory)
                budget.add_existing(spooled_bytes(directory))
        return cls(root, budget, pending, elsewhere)

    @staticmethod
    def read_meta(directory: Path) -> SpoolMeta:
        """The metadata of the session in ``directory``, without locking it.

        Raises FileNotFoundError (no session.json) or ValueError (unreadable).
        """
        raw = json.loads((directory / META_NAME).read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"{META_NAME} holds no JSON object")
        try:
            return SpoolMeta(**{k: v for k, v in raw.items() if k in SpoolMeta.__slots__})
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from exc

    @staticmethod
    def lock(directory: Path, meta: SpoolMeta, budget: SpoolBudget | None = None):
        """Take the cross-process lock of the session in ``directory``: the
        :class:`SpoolSession` (not recovered; release with ``close(keep=False)``) or None
        when another process holds it."""
        session = SpoolSession(directory, meta, budget or SpoolBudget(2**62))
        for attempt in range(_LOCK_RETRIES):
            if session._try_lock():
                return session
            if attempt + 1 < _LOCK_RETRIES:
                time.sleep(_LOCK_RETRY_S)  # a listing may be probing it for a moment
        return None

    @staticmethod
    def _load(
        directory: Path, budget: SpoolBudget, destination: str | None | _AnyDestination
    ) -> SpoolSession | None:
        try:
            meta = Spool.read_meta(directory)
        except FileNotFoundError:
            # Created but never described: a crash inside new_session, before any frame.
            if not any(directory.glob(f"{_SEGMENT_PREFIX}*")):
                shutil.rmtree(directory, ignore_errors=True)
            return None
        except (ValueError, OSError) as exc:
            log.error("spool %s: unreadable %s (%s); left in place", directory, META_NAME, exc)
            return None
        if destination is not ANY_DESTINATION and meta.destination != destination:
            return None  # another destination's audio: not ours to deliver, nor to lock
        session = Spool.lock(directory, meta, budget)
        if session is None:
            log.info("spool %s is being delivered by another meetcap process", directory)
            return None
        if meta.ended:
            session.remove()
            return None
        session._recover()
        if session.last_seq < 0 and meta.session_id is None:
            session.remove()  # nothing captured, nothing on the server: nothing to deliver
            return None
        return session

    def new_session(
        self,
        started_at: float,
        url: str,
        *,
        destination: str | None = None,
        account: str | None = None,
    ) -> SpoolSession:
        """Create the directory of a new capture session (frames start at seq 0) for
        ``destination`` (see :class:`SpoolMeta`)."""
        local_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
        local_id += f"-{secrets.token_hex(4)}"
        directory = self.root / local_id
        meta = SpoolMeta(local_id, started_at, url, destination=destination, account=account)
        try:
            directory.mkdir()
            session = SpoolSession(directory, meta, self.budget)
            session._try_lock()
            session._write_meta(session._meta)
            oscalls.fsync_dir(self.root)
        except OSError as exc:
            raise StorageError(f"cannot create a spool session in {self.root}: {exc}") from exc
        return session

    def close(self) -> None:
        for session in self.pending:
            session.close()


def spooled_bytes(directory: Path) -> int:
    """Bytes of whole records in the segment files of ``directory`` (no lock, no checks)."""
    total = 0
    for path in directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
        try:
            total += path.stat().st_size // RECORD_BYTES * RECORD_BYTES
        except OSError:
            continue  # deleted meanwhile (acked by the process delivering it)
    return total


def spooled_frames(directory: Path) -> tuple[int, int]:
    """(first, last) frame numbers on disk in ``directory``, from the file names and sizes
    alone (no lock, no checks; a torn tail is not looked for); (0, -1) when none."""
    spans = []
    for path in directory.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
        try:
            first = int(path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)])
            count = path.stat().st_size // RECORD_BYTES
        except (ValueError, OSError):
            continue
        if count:
            spans.append((first, first + count - 1))
    if not spans:
        return 0, -1
    return min(f for f, _ in spans), max(last for _, last in spans)
