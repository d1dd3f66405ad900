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
segment that starts at ``first`` is frame ``first + i``. A tracks session (both lanes
kept, docs/protocol.md 3.5) writes the 9,616-byte tracks message instead, in segments
named ``seg-<first seq>.trk``: the name says the record size, so every tool that reads
the folder (survey, spooled_frames) knows it without session.json.

Durability: each frame is written to the segment file with one ``os.write`` (no user
space buffer), so a crash of the app loses nothing that :meth:`SpoolSession.append`
accepted; :meth:`SpoolSession.sync` (fsync, called every ``fsync_interval_s`` by the
streamer) bounds what an OS crash or power cut can lose.

Damage (a record whose checksum or number is wrong, a segment file deleted or cut
short, a ``session.json`` that cannot be read) is found, said in words, and never stops a
new recording. Recovery (:meth:`Spool.open`) checks the layout of every segment (names,
sizes: a missing or short segment leaves a hole) and every record of the last one;
:meth:`SpoolSession.read_frames` checks each record's checksum and number as it is read
for sending. What "deliver everything intact" means on the wire: the protocol refuses
gaps, so a frame that is damaged or missing on disk is sent as a frame of *silence* at
its own number. That keeps the most audio and tells the truth: every intact frame is
delivered, in the one server session it belongs to, at its own place in time (a
transcript's timestamps stay right; splitting the rest off as a second session would
shift or orphan it), and the frames replaced are named, durably, in ``session.json``
(``damaged`` before, ``lost`` once sent), in ``meetcap spool list`` and in the result
(:attr:`meetcap.client.status.FinishResult.lost`). The one exception is the end of a
recording: damaged records after its last intact frame (beyond what ``session.json``
says was spooled) are what a crash during the last writes leaves, so they are cut, not
padded, and named as cut.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shutil
import threading
import time
from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from meetcap import oscalls
from meetcap.constants import FRAME_BYTES, FRAME_MS
from meetcap.durable import atomic_write_bytes, write_all
from meetcap.errors import ProtocolError, SpoolFullError, StorageError, UsageError
from meetcap.frames import Frame
from meetcap.protocol import (
    AUDIO_MESSAGE_BYTES,
    TRACKS_MESSAGE_BYTES,
    AudioMessage,
    decode_audio,
    encode_audio,
)
from meetcap.protocol.audio import TRACKS_BYTES

log = logging.getLogger(__name__)

RECORD_BYTES = AUDIO_MESSAGE_BYTES  # 3,216
# One minute of audio a file: few files, cheap deletes. A spool cap too small for a few
# such files makes smaller ones (see Spool.new_session), or the last, acked segment
# (kept to mark where the frames end) would hold the cap forever.
FRAMES_PER_SEGMENT = 600
META_NAME = "session.json"
LOCK_NAME = "lock"
_SEGMENT_PREFIX, _SEGMENT_SUFFIX = "seg-", ".dat"
_TRACKS_SUFFIX = ".trk"  # a tracks session's segments: TRACKS_MESSAGE_BYTES records
SILENT_TRACKS = bytes(TRACKS_BYTES)  # a frame that came without its lanes, in a tracks session
_META_VERSION = 3  # 2: destination, account and the last refusal; 3: spooled_to, damage
SILENT_PCM = bytes(FRAME_BYTES)  # what a frame lost from the spool is sent as

# Why frames are lost, in words (kept in session.json, shown to people).
WHY_DAMAGED = "damaged on disk: its checksum or number is wrong"
WHY_MISSING = "missing from disk: a segment file is gone or cut short"
WHY_CUT = (
    "damaged after the recording's last intact frame, as a crash during the last writes "
    "leaves them: cut off"
)

# A run of lost frames: (first, last, why), both ends included.
LostRange = tuple[int, int, str]
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

    ``session_id`` and ``resume_token`` are chosen by the client when the session is
    created (``create_pending`` until the server's first welcome confirms them); None in
    a session.json written before hello.create existed, or after an older server refused
    the chosen id (the server's welcome then gives them).
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
    # The last frame spooled when this was written: where the recording ends at least,
    # so a lost last segment is seen as lost, not taken for a shorter recording.
    spooled_to: int = -1
    # Frames whose audio is gone from disk: ``damaged`` are found and not sent yet (they
    # go out as silence unless the server already holds them), ``lost`` were sent as
    # silence or cut off (see WHY_*). Ranges (first, last, why), in frame order.
    damaged: tuple[LostRange, ...] = ()
    lost: tuple[LostRange, ...] = ()
    # Tracks mode: records carry the two lanes too (.trk segments); sent as the tracks
    # message to a server that accepts it, as the mono frame to any other.
    tracks: bool = False
    # Re-opened as a new server session (the server lost the old one: resume refused with
    # 4005/4006, see SpoolSession.reopen_as_new): local frame ``n`` goes out as frame
    # ``n - seq_offset`` of ``session_id``; ``lost_session`` is the id the server lost.
    seq_offset: int = 0
    lost_session: str | None = None
    # ``session_id`` and ``resume_token`` were made up here for a session not created yet
    # (hello.create, docs/protocol.md 4): recorded before the hello, so a crash before
    # the welcome resumes that id instead of leaving an empty session behind. Cleared by
    # the first welcome. Set for every new recording (Spool.new_session) and re-open.
    create_pending: bool = False

    @property
    def server_session_id(self) -> str | None:
        """The session id once a welcome confirmed it; None while the server may not have
        the session yet (``create_pending``: the id is only the one this client chose)."""
        return None if self.create_pending else self.session_id


# session.json's fields and the JSON types each may hold (read_meta checks them: a file of
# the wrong shape is reported, never run into).
_INT, _NUMBER, _TEXT, _BOOL = "integer", "number", "text", "true/false"
_NULL, _RANGES = "null", "ranges"
_META_FIELDS: dict[str, tuple[str, ...]] = {
    "local_id": (_TEXT,), "started_at": (_NUMBER,), "url": (_TEXT,),
    "session_id": (_TEXT, _NULL), "resume_token": (_TEXT, _NULL), "acked": (_INT,),
    "ended": (_BOOL,), "version": (_INT,), "destination": (_TEXT, _NULL),
    "account": (_TEXT, _NULL), "refused_code": (_INT, _NULL),
    "refused_reason": (_TEXT, _NULL), "refused_at": (_NUMBER, _NULL),
    "spooled_to": (_INT,), "damaged": (_RANGES,), "lost": (_RANGES,), "tracks": (_BOOL,),
    "seq_offset": (_INT,), "lost_session": (_TEXT, _NULL), "create_pending": (_BOOL,),
}


_MAX_FRAME = 2**63 - 1  # far beyond any recording (the protocol's limit is 2**64 - 1)
_MAX_TIME = 1e11  # seconds since 1970: the year 5138


def _json_kind(value: object) -> str:
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return _BOOL
    if isinstance(value, int):
        return _INT
    if isinstance(value, float):
        return _NUMBER if math.isfinite(value) else "not a finite number"
    if isinstance(value, str):
        return _TEXT
    if isinstance(value, list):
        ok = all(
            isinstance(r, list) and len(r) == 3
            and all(type(n) is int for n in r[:2]) and 0 <= r[0] <= r[1]
            and isinstance(r[2], str)
            for r in value
        )
        return _RANGES if ok else "a list"
    return type(value).__name__


def _check_meta(raw: object) -> SpoolMeta:
    if not isinstance(raw, dict):
        raise ValueError(f"it holds {_json_kind(raw)}, not a JSON object")
    values: dict[str, object] = {}
    for name, kinds in _META_FIELDS.items():
        if name not in raw:
            continue
        value, kind = raw[name], _json_kind(raw[name])
        if kind not in kinds and not (kind == _INT and _NUMBER in kinds):
            shown = json.dumps(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(f"field {name!r} is {shown} ({kind}), not {' or '.join(kinds)}")
        if kind == _RANGES:
            value = tuple((r[0], r[1], r[2]) for r in value)  # type: ignore[union-attr]
        values[name] = value
    missing = [n for n in ("local_id", "started_at", "url") if n not in values]
    if missing:
        raise ValueError(f"field {missing[0]!r} is missing")
    for name in ("acked", "spooled_to", "seq_offset"):
        if not -1 <= values.get(name, -1) <= _MAX_FRAME:  # type: ignore[operator]
            raise ValueError(f"field {name!r} is not a frame number")
    for name in ("damaged", "lost"):
        if any(run[1] > _MAX_FRAME for run in values.get(name, ())):  # type: ignore[attr-defined]
            raise ValueError(f"field {name!r} names frames that cannot exist")
    if not 0 <= values["started_at"] <= _MAX_TIME:  # type: ignore[operator]
        raise ValueError("field 'started_at' is not a time")
    return SpoolMeta(**values)  # type: ignore[arg-type]


# -- runs of lost frames (few, small: plain tuples)


def merge_ranges(ranges) -> tuple[LostRange, ...]:
    """Sorted, without overlaps (a frame keeps the first reason given for it), runs with
    the same reason joined."""
    out: list[LostRange] = []
    for first, last, why in sorted(ranges, key=lambda r: (r[0], r[1])):
        if out:
            prev_first, prev_last, prev_why = out[-1]
            if first <= prev_last:
                if last <= prev_last:
                    continue
                first = prev_last + 1
            if first == prev_last + 1 and why == prev_why:
                out[-1] = (prev_first, last, why)
                continue
        out.append((first, last, why))
    return tuple(out)


def cut_ranges(ranges, first: int, last: int) -> tuple[LostRange, ...]:
    """``ranges`` without the frames ``first``..``last``."""
    out: list[LostRange] = []
    for run_first, run_last, why in ranges:
        if run_last < first or run_first > last:
            out.append((run_first, run_last, why))
            continue
        if run_first < first:
            out.append((run_first, first - 1, why))
        if run_last > last:
            out.append((last + 1, run_last, why))
    return tuple(out)


def _range_at(ranges, seq: int) -> LostRange | None:
    for run in ranges:
        if run[0] <= seq <= run[1]:
            return run
    return None


def count_frames(ranges) -> int:
    return sum(last - first + 1 for first, last, _ in ranges)


def frame_span(first: int, last: int) -> str:
    """``frame 3`` or ``frames 10-19``."""
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def describe_lost(ranges, *, sent: bool = True) -> str:
    """The runs in words, each with what became of it: ``frame 3 (damaged on disk: ...;
    replaced by silence)``. ``sent`` False: not sent yet (``to be replaced``)."""
    parts = []
    for first, last, why in ranges:
        done = "" if why == WHY_CUT else (
            "; replaced by silence" if sent else "; to be sent as silence"
        )
        parts.append(f"{frame_span(first, last)} ({why}{done})")
    return ", ".join(parts)


class SpoolBudget:
    """The byte cap shared by every session of one spool root (thread-safe)."""

    def __init__(self, cap_bytes: int) -> None:
        self.cap_bytes = cap_bytes
        self._used = 0
        self.elsewhere_bytes = 0  # of _used: sessions this process leaves alone
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def reserve(self, nbytes: int, where: Path, record_bytes: int = RECORD_BYTES) -> None:
        """Count ``nbytes`` more, or SpoolFullError in words. ``record_bytes``: the size of
        one 100 ms record of the session writing (a tracks record is three times a mono
        one), so the message's hours of audio are right for what is being recorded."""
        with self._lock:
            if self._used + nbytes > self.cap_bytes:
                held = ""
                if self.elsewhere_bytes:
                    held = (
                        f" {self.elsewhere_bytes / 2**20:.0f} MiB of it are recordings this "
                        "run does not deliver (for another server or account, busy, or "
                        "damaged: see `meetcap spool list`, deliver or discard them)."
                    )
                raise SpoolFullError(
                    f"the spool at {where} is full ({self._used / 2**20:.0f} MiB of "
                    f"{self.cap_bytes / 2**20:.0f} MiB, about "
                    f"{self._used / record_bytes / 36000:.1f} h of audio the server has not "
                    "acknowledged): capture stops so that no audio is dropped. Check the "
                    "connection to the server, or raise the spool cap." + held
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
    record_bytes: int = RECORD_BYTES  # TRACKS_MESSAGE_BYTES in a .trk segment

    @property
    def end_seq(self) -> int:  # one past the last frame
        return self.first_seq + self.count


def _segment_name(first_seq: int, tracks: bool = False) -> str:
    return f"{_SEGMENT_PREFIX}{first_seq:020d}{_TRACKS_SUFFIX if tracks else _SEGMENT_SUFFIX}"


def _segment_files(directory: Path):
    """(path, first seq or None when the name is odd, record size) of each segment file."""
    for path in directory.glob(f"{_SEGMENT_PREFIX}*"):
        kinds = ((_SEGMENT_SUFFIX, RECORD_BYTES), (_TRACKS_SUFFIX, TRACKS_MESSAGE_BYTES))
        for suffix, size in kinds:
            if path.name.endswith(suffix):
                try:
                    first: int | None = int(path.name[len(_SEGMENT_PREFIX) : -len(suffix)])
                except ValueError:
                    first = None
                yield path, first, size
                break


class SpoolSession:
    """The spooled frames of one capture session. Thread-safe.

    The capture side calls :meth:`append`; the streamer reads with :meth:`read`, records
    server state with :meth:`set_session` and :meth:`ack`, and finally :meth:`mark_ended`.
    Get instances from :meth:`Spool.new_session` or :attr:`Spool.pending`.
    """

    def __init__(
        self,
        directory: Path,
        meta: SpoolMeta,
        budget: SpoolBudget,
        segment_frames: int | None = None,
    ) -> None:
        self.dir = directory
        self._meta = meta
        self._budget = budget
        self._segment_frames = segment_frames or FRAMES_PER_SEGMENT
        self.tracks = meta.tracks
        self._record_bytes = TRACKS_MESSAGE_BYTES if meta.tracks else RECORD_BYTES
        self._lock = threading.Lock()  # guards everything below but fsync
        self._sync_lock = threading.Lock()  # keeps close() from closing an fd being fsynced
        self._segments: list[_Segment] = []
        self._next_seq = meta.acked + 1
        self._damaged: tuple[LostRange, ...] = meta.damaged  # see SpoolMeta
        self._lost: tuple[LostRange, ...] = meta.lost
        self._write_fd: int | None = None
        self._retired_fds: list[int] = []  # full segments still to fsync and close
        self._read_fds: dict[int, int] = {}  # first_seq -> fd
        self._dir_dirty = False
        self._dirty = False
        self._closed = False
        self._lock_fd: int | None = None
        self.dropped_on_recovery = 0  # damaged tail records cut by Spool.open (WHY_CUT)
        self.intact_frames = 0  # after recovery: frames after the ack that are not damaged
        self.odd: tuple[str, ...] = ()  # after recovery: odd files in its folder, in words

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
        """The lowest frame still to deliver: on disk, or known lost on disk (to be sent as
        silence). Frames below it were acked and deleted."""
        with self._lock:
            firsts = [self._next_seq]
            if self._segments:
                firsts.append(self._segments[0].first_seq)
            if self._damaged:
                firsts.append(self._damaged[0][0])
            return min(firsts)

    @property
    def unacked_frames(self) -> int:
        return max(0, self._next_seq - 1 - self._meta.acked)

    @property
    def damaged(self) -> tuple[LostRange, ...]:
        """Frames found damaged or missing on disk and not sent yet (see SpoolMeta)."""
        with self._lock:
            return self._damaged

    @property
    def lost_ranges(self) -> tuple[LostRange, ...]:
        """Frames whose audio did not go out: sent as silence, or cut off at the end."""
        with self._lock:
            return self._lost

    @property
    def lost(self) -> tuple[tuple[int, int], ...]:
        """:attr:`lost_ranges` as (first, last) pairs, joined where they touch."""
        pairs: list[tuple[int, int]] = []
        for first, last, _why in self.lost_ranges:
            if pairs and pairs[-1][1] + 1 == first:
                pairs[-1] = (pairs[-1][0], last)
            else:
                pairs.append((first, last))
        return tuple(pairs)

    def damage_words(self) -> str | None:
        """What is wrong with this session's frames on disk, in words; None if nothing."""
        with self._lock:
            lost, damaged = self._lost, self._damaged
        parts = [f"odd files in its folder, left alone: {'; '.join(self.odd)}"] if self.odd else []
        if lost:
            parts.append(f"audio lost from the spool: {describe_lost(lost)}")
        if damaged:
            parts.append(f"audio damaged in the spool: {describe_lost(damaged, sent=False)}")
        return "; ".join(parts) or None

    # -- capture side

    def append(self, frame: Frame) -> None:
        """Write ``frame`` (which must carry :attr:`next_seq`) to disk.

        Raises :class:`SpoolFullError` at the byte cap and :class:`StorageError` when the
        disk refuses the write; in both cases nothing was stored.
        """
        tracks = (frame.tracks or SILENT_TRACKS) if self.tracks else None
        data = encode_audio(frame.seq, frame.pcm, frame.speech, frame.speaker, tracks)
        size = len(data)
        with self._lock:
            if self._closed:
                raise UsageError("the spool session is closed")
            if frame.seq != self._next_seq:
                raise ValueError(
                    f"frames must be spooled in order without gaps: expected frame "
                    f"{self._next_seq}, got {frame.seq}"
                )
            self._budget.reserve(size, self.dir, self._record_bytes)
            try:
                segment = self._writable_segment()
                assert self._write_fd is not None
                try:
                    write_all(self._write_fd, data)
                except OSError:
                    # Cut a partial record so the file stays a whole number of records.
                    os.ftruncate(self._write_fd, segment.count * size)
                    raise
            except OSError as exc:
                self._budget.release(size)
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
            if last.count < self._segment_frames:
                return last
            self._retired_fds.append(self._write_fd)
            self._write_fd = None
        path = self.dir / _segment_name(self._next_seq, self.tracks)
        self._write_fd = oscalls.open_file(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        segment = _Segment(self._next_seq, 0, path, self._record_bytes)
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
        """Up to ``max_frames`` records from frame ``seq`` on (fewer at a segment end), as
        they are on disk: not checked (:meth:`read_frames` checks them).

        Returns [] when ``seq`` is not spooled yet. Raises :class:`StorageError` when
        ``seq`` was already deleted (it was acked: the caller resumed from a stale ack).
        """
        with self._lock:
            if seq >= self._next_seq:
                return []
            segment = self._find_segment(seq)
        blob, wanted = self._pread(segment, seq, max_frames)
        if len(blob) != wanted * segment.record_bytes:
            raise StorageError(f"spool segment {segment.path} is shorter than its records")
        size = segment.record_bytes
        return [blob[i : i + size] for i in range(0, len(blob), size)]

    def _pread(self, segment: _Segment, seq: int, max_frames: int) -> tuple[bytes, int]:
        """The bytes of up to ``max_frames`` records of ``segment`` from ``seq`` on, and
        how many records were asked for (the file may be shorter)."""
        with self._lock:
            fd = self._read_fds.get(segment.first_seq)
            if fd is None:
                fd = oscalls.open_file(segment.path, os.O_RDONLY)
                self._read_fds[segment.first_seq] = fd
            count = min(max_frames, segment.end_seq - seq)
            offset = (seq - segment.first_seq) * segment.record_bytes
            return oscalls.pread(fd, count * segment.record_bytes, offset), count

    def read_frames(self, seq: int, max_frames: int) -> list[AudioMessage]:
        """Up to ``max_frames`` checked frames from ``seq`` on (fewer at a segment end or
        where a run of damage starts or ends), to send.

        A record whose checksum or number is wrong, or that is missing on disk, comes
        back as a frame of silence at its own number (the module doc says why), durably
        noted in :attr:`lost_ranges` before this returns. Returns [] when ``seq`` is not
        spooled yet. Raises :class:`StorageError` when ``seq`` was already acked and
        deleted, or the disk refuses the read.
        """
        with self._lock:
            if seq >= self._next_seq:
                return []
            known = _range_at(self._damaged, seq)
            segment = self._segment_at(seq) if known is None else None
            if known is None and segment is None:
                if seq <= self._meta.acked:
                    self._find_segment(seq)  # raises: acked and deleted
                # Above the ack, in no segment, yet not known as damaged: a hole that
                # appeared after recovery. Missing up to the next segment.
                later = [s.first_seq for s in self._segments if s.first_seq > seq]
                known = (seq, min([*later, self._next_seq]) - 1, WHY_MISSING)
            # Stop where the next known run of damage starts: it is answered on its own.
            starts = [first for first, _, _ in self._damaged if first > seq]
            if starts:
                max_frames = min(max_frames, min(starts) - seq)
        if known is not None:
            last = min(known[1], seq + max_frames - 1, self._next_seq - 1)
            self._note_lost(seq, last, known[2])
            return [AudioMessage(n, SILENT_PCM, False) for n in range(seq, last + 1)]
        assert segment is not None
        try:
            blob, wanted = self._pread(segment, seq, max_frames)
        except FileNotFoundError:
            blob, wanted = b"", 0  # deleted while the session was open
        except OSError as exc:
            raise StorageError(
                f"cannot read the audio spool in {self.dir}: {exc.strerror or exc}"
            ) from exc
        size = segment.record_bytes
        whole = len(blob) // size
        if whole < max(wanted, 1):
            # The file went away or was cut short while the session was open: the rest of
            # this segment is missing.
            self._note_damaged(seq + whole, segment.end_seq - 1, WHY_MISSING)
            if whole == 0:
                return self.read_frames(seq, max_frames)
        messages: list[AudioMessage] = []
        bad: list[int] = []
        for i in range(whole):
            n = seq + i
            try:
                message = decode_audio(
                    blob[i * size : (i + 1) * size], speakers=True, tracks=True
                )
            except ProtocolError:
                message = None
            if message is None or message.seq != n:
                bad.append(n)
                message = AudioMessage(n, SILENT_PCM, False)
            messages.append(message)
        if bad:
            ranges = merge_ranges((n, n, WHY_DAMAGED) for n in bad)
            log.warning("spool %s: %s", self.dir, describe_lost(ranges))
            for first, last, why in ranges:
                self._note_lost(first, last, why, write=False)
            self._write_meta(self._meta_now())
        return messages

    def _note_damaged(self, first: int, last: int, why: str) -> None:
        with self._lock:
            self._damaged = merge_ranges((*self._damaged, (first, last, why)))
        log.warning("spool %s: %s", self.dir, describe_lost(((first, last, why),), sent=False))

    def _note_lost(self, first: int, last: int, why: str, *, write: bool = True) -> None:
        """Frames ``first``..``last`` are being sent as silence: lost, durably."""
        with self._lock:
            self._damaged = cut_ranges(self._damaged, first, last)
            self._lost = merge_ranges((*self._lost, (first, last, why)))
        if write:
            self._write_meta(self._meta_now())

    def _meta_now(self, **changes) -> SpoolMeta:
        """The metadata to write now: ``changes`` and the current frames and damage."""
        with self._lock:
            self._meta = replace(
                self._meta, spooled_to=max(self._meta.spooled_to, self._next_seq - 1),
                damaged=self._damaged, lost=self._lost, **changes,
            )
            return self._meta

    def _segment_at(self, seq: int) -> _Segment | None:
        for segment in self._segments:
            if segment.first_seq <= seq < segment.end_seq:
                return segment
        return None

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
        meta = self._meta_now(
            session_id=session_id, resume_token=resume_token, create_pending=False,
            refused_code=None, refused_reason=None, refused_at=None,
        )
        self._write_meta(meta)

    def record_refusal(self, code: int | None, reason: str) -> None:
        """Durably note why delivery stopped (a fatal answer): the session stays in the
        spool and a listing can say why. ``code``: close code or HTTP status, if any."""
        meta = self._meta_now(refused_code=code, refused_reason=reason, refused_at=time.time())
        if self.dir.exists():
            self._write_meta(meta)

    def reopen_as_new(self, held_to: int | None = None) -> int:
        """The server lost this session (a resume refused as unknown or stale): from now on
        deliver every frame it does not hold as a NEW server session, durably, before
        the next hello. Returns the first frame it carries (its frame 0): the wire
        numbers are offset by it (:attr:`SpoolMeta.seq_offset`) so a crash mid-delivery
        resumes the new session, never doubling or losing a frame.

        ``held_to``: the last local frame the old session holds, when the server said
        (error.held with a 4006); frames up to it count as acknowledged, so none is in
        both sessions. Else the new session starts after the last ack.

        The new session's id and token are chosen here and written in the same step
        (``create_pending``, sent as hello.create): a crash before its welcome resumes
        that id, so no empty session is left on the server."""
        with self._lock:
            acked = self._meta.acked
            old = self._meta.session_id
        offset = max(acked, -1 if held_to is None else held_to) + 1
        meta = self._meta_now(
            session_id=secrets.token_urlsafe(16), resume_token=secrets.token_urlsafe(16),
            create_pending=True, seq_offset=offset, lost_session=old,
            refused_code=None, refused_reason=None, refused_at=None,
        )
        self._write_meta(meta)
        if offset - 1 > acked:
            self.ack(offset - 1)  # held by the old session: gone from the spool
        return offset

    def forget_chosen_id(self) -> None:
        """The server does not know hello.create (an older server: it answered 4005): the
        next hello asks for a new session the old way (its id comes in the welcome)."""
        meta = self._meta_now(session_id=None, resume_token=None, create_pending=False)
        self._write_meta(meta)

    @property
    def seq_offset(self) -> int:
        """What is subtracted from a local frame number to give its number on the wire."""
        return self._meta.seq_offset

    def wire_started_at(self) -> float:
        """``hello.started_at``: the wall time of the first frame the server session holds
        (a re-opened session starts ``seq_offset`` frames into the recording)."""
        meta = self._meta
        return meta.started_at + meta.seq_offset * FRAME_MS / 1000

    def rebind(self, destination: str, url: str, account: str | None) -> None:
        """Durably send this session to another destination from now on (new server or
        new credentials); the last refusal is forgotten. The server session id and resume
        token stay: a server that does not know them refuses, and says so."""
        meta = self._meta_now(
            destination=destination, url=url, account=account,
            refused_code=None, refused_reason=None, refused_at=None, version=_META_VERSION,
        )
        self._write_meta(meta)

    def ack(self, seq: int) -> None:
        """The server stored every frame up to ``seq``: delete fully acked segments."""
        doomed: list[_Segment] = []
        with self._lock:
            if seq <= self._meta.acked:
                return
            if seq >= self._next_seq:
                raise ValueError(f"ack for frame {seq}, but only {self._next_seq - 1} is spooled")
            # Damaged frames the server acks without our sending them as silence: it held
            # them from before the damage, so nothing of them is lost.
            self._damaged = cut_ranges(self._damaged, 0, seq)
            self._meta = replace(self._meta, acked=seq)
            # The last segment stays even when acked: it tells a later run where the
            # session's frames end (the next sequence number and the last_seq of ``end``).
            while len(self._segments) > 1 and self._segments[0].end_seq - 1 <= seq:
                doomed.append(self._segments.pop(0))
        if not doomed:
            return
        # Persist the ack before deleting, so a later run never mistakes the hole for a gap.
        self._write_meta(self._meta_now())
        for segment in doomed:
            with self._lock:
                fd = self._read_fds.pop(segment.first_seq, None)
            if fd is not None:
                os.close(fd)
            segment.path.unlink(missing_ok=True)
            self._budget.release(segment.count * segment.record_bytes)

    def mark_ended(self) -> None:
        """The server answered ``ended``: the session is delivered; remove it from disk."""
        meta = self._meta_now(ended=True)
        self._write_meta(meta)  # a crash during the removal below leaves an "ended" marker
        self.remove()

    def remove(self) -> None:
        """Delete the session from disk (delivered, or nothing worth delivering)."""
        self.close(keep=False)
        with self._lock:
            released = sum(s.count * s.record_bytes for s in self._segments)
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
            for fd in fds:
                try:
                    oscalls.datasync(fd)
                except OSError:
                    pass  # read-only fds on some systems; the data fds were synced above
                os.close(fd)
            if keep and self.dir.exists():
                self._write_meta(self._meta_now())
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
        """Load the segments found on disk; find, note (durably) and log the damage.

        Every segment's place is checked from its name and size (:func:`survey`): a
        missing or short segment leaves a hole, sent as silence. Every record of the last
        segment is checked too: frames are appended in order, one write each, so a crash
        can leave damaged records at the very end; those after the last intact frame and
        beyond what session.json says was spooled are cut (WHY_CUT); a damaged one before
        an intact one is sent as silence. Records of the other segments are checked as
        they are read (:meth:`read_frames`).
        """
        meta = self._meta
        start = meta.acked + 1  # the frames below are on the server
        found = survey(self.dir, meta.acked, -1)
        self.odd = found.odd
        segments = list(found.segments)
        damaged = list(found.holes)
        cut: LostRange | None = None
        shrink: tuple[_Segment, int] | None = None
        doomed = list(found.leftovers)
        if segments:
            last = segments[-1]
            intact = self._check_records(last)
            good = [i for i, ok in enumerate(intact) if ok]
            end = max(last.first_seq + (good[-1] if good else -1), meta.spooled_to)
            keep = max(0, min(last.count, end - last.first_seq + 1))
            damaged += [
                (last.first_seq + i, last.first_seq + i, WHY_DAMAGED)
                for i, ok in enumerate(intact[:keep])
                if not ok and last.first_seq + i >= start
            ]
            if keep < last.count and last.end_seq - 1 >= start:
                cut = (max(last.first_seq + keep, start), last.end_seq - 1, WHY_CUT)
                self.dropped_on_recovery = cut[1] - cut[0] + 1
            try:
                size = last.path.stat().st_size
            except OSError:
                size = last.count * last.record_bytes
            if size != keep * last.record_bytes:
                shrink = (last, keep)  # a partial record, or the cut records
            last.count = keep
            if keep == 0:
                segments.pop()
        last_on_disk = segments[-1].end_seq - 1 if segments else start - 1
        end = max(last_on_disk, meta.spooled_to)
        if end > last_on_disk and end >= start:
            damaged.append((max(last_on_disk + 1, start), end, WHY_MISSING))
        earlier = cut_ranges(meta.damaged, 0, meta.acked) if meta.acked >= 0 else meta.damaged
        with self._lock:
            self._segments = segments
            self._next_seq = max(end + 1, start)  # the ack is durable even if the tail is not
            self._damaged = merge_ranges((*earlier, *damaged))
            if cut is not None:
                self._lost = merge_ranges((*self._lost, cut))
            self.intact_frames = self._next_seq - start - count_frames(self._damaged)
            noted = (self._damaged, self._lost) != (meta.damaged, meta.lost)
        words = self.damage_words()
        if words:
            log.warning(
                "spool %s: %s (frames %d-%d wait to be sent; the other %d are sent as they "
                "are, each checked as it is read)",
                self.dir, words, start, self._next_seq - 1, self.intact_frames,
            )
        if noted or self._next_seq - 1 > meta.spooled_to:
            # Durable before anything is cut or deleted: what was lost stays known.
            self._write_meta(self._meta_now())
        if shrink is not None:
            segment, keep = shrink
            if keep == 0:
                doomed.append(segment.path)
            else:
                with open(segment.path, "r+b") as fh:
                    fh.truncate(keep * segment.record_bytes)
                    fh.flush()
                    oscalls.datasync(fh.fileno())
        for path in doomed:
            path.unlink(missing_ok=True)
        self._budget.add_existing(sum(s.count * s.record_bytes for s in segments))

    @staticmethod
    def _check_records(segment: _Segment) -> list[bool]:
        """For each whole record of ``segment``: whether it decodes and carries its seq."""
        with open(segment.path, "rb") as fh:
            blob = fh.read(segment.count * segment.record_bytes)
        size = segment.record_bytes
        intact = []
        for i in range(len(blob) // size):
            try:
                message = decode_audio(
                    blob[i * size : (i + 1) * size], speakers=True, tracks=True
                )
            except ProtocolError:
                intact.append(False)
                continue
            intact.append(message.seq == segment.first_seq + i)
        intact += [False] * (segment.count - len(intact))  # shorter than its size said
        return intact


@dataclass(frozen=True, slots=True)
class SpoolSurvey:
    """What the files of one session folder show, from their names and sizes alone.

    ``segments``: the usable segment files, in frame order; ``holes``: frames after
    the ack missing on disk (a segment file gone or cut short, or fewer frames than
    ``spooled_to`` says); ``last_seq``: the recording's last frame as far as known
    (-1: none); ``odd``: files that are not what meetcap writes, in words;
    ``leftovers``: empty or fully acked segment files a crash left behind.
    """

    segments: tuple[_Segment, ...]
    holes: tuple[LostRange, ...]
    last_seq: int
    odd: tuple[str, ...] = ()
    leftovers: tuple[Path, ...] = ()


def survey(directory: Path, acked: int = -1, spooled_to: int = -1) -> SpoolSurvey:
    """Look at the segment files of ``directory`` (no lock, no checksums; cheap): see
    :class:`SpoolSurvey`. ``acked`` and ``spooled_to`` come from its session.json."""
    found: list[tuple[int, int, Path, int]] = []  # first seq, size, path, record size
    odd: list[str] = []
    for path, first, record_bytes in _segment_files(directory):
        if first is None or first < 0:
            odd.append(f"{path.name} is not a segment file meetcap writes")
            continue
        try:
            found.append((first, path.stat().st_size, path, record_bytes))
        except OSError:
            continue  # deleted meanwhile (acked by the process delivering it)
    found.sort()
    start = acked + 1
    segments: list[_Segment] = []
    holes: list[LostRange] = []
    leftovers: list[Path] = []
    for index, (first, size, path, record_bytes) in enumerate(found):
        count = size // record_bytes
        prev_end = segments[-1].end_seq if segments else None
        if prev_end is not None and first < prev_end:
            odd.append(f"{path.name} overlaps the segment file before it")
            continue
        if count == 0 or (first + count <= start and index < len(found) - 1):
            leftovers.append(path)  # nothing in it yet, or all of it acked
            continue
        gap_from = max(start, prev_end if prev_end is not None else start)
        if first > gap_from:
            holes.append((gap_from, first - 1, WHY_MISSING))
        segments.append(_Segment(first, count, path, record_bytes))
    last_on_disk = segments[-1].end_seq - 1 if segments else start - 1
    if spooled_to > last_on_disk and spooled_to >= start:
        holes.append((max(last_on_disk + 1, start), spooled_to, WHY_MISSING))
    return SpoolSurvey(
        tuple(segments), tuple(holes), max(last_on_disk, spooled_to, acked), tuple(odd),
        tuple(leftovers),
    )


class Spool:
    """A spool root: the sessions in it and the byte cap they share.

    Open with :meth:`open`; :attr:`pending` lists the unfinished sessions an earlier run
    left behind for this destination (locked for this process); :attr:`elsewhere` the
    session folders left alone (another destination, unknown destination, held by
    another process, or damaged); :attr:`problems` the folders left alone because they
    are damaged, each with why in words; :meth:`new_session` starts a new one.
    """

    def __init__(
        self,
        root: Path,
        budget: SpoolBudget,
        pending: list[SpoolSession],
        elsewhere: list[Path] | None = None,
        problems: list[tuple[Path, str]] | None = None,
    ) -> None:
        self.root = root
        self.budget = budget
        self.pending = pending
        self.elsewhere = elsewhere or []
        self.problems = problems or []

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

        Sessions already ended are removed; damage is found and noted (see
        :meth:`SpoolSession._recover`; the frames it costs are sent as silence); sessions
        held by another running process are left alone. A session folder that cannot be
        used (its session.json missing or of the wrong shape, nothing intact left in
        it, any error while opening it) is left as it is, logged and listed in
        :attr:`problems`: it never stops the others, nor a new recording.
        """
        root = Path(root)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the audio spool at {root}: {exc}") from exc
        budget = SpoolBudget(cap_bytes)
        pending: list[SpoolSession] = []
        elsewhere: list[Path] = []
        problems: list[tuple[Path, str]] = []
        try:
            directories = sorted(p for p in root.iterdir() if p.is_dir())
        except OSError as exc:
            raise StorageError(f"cannot read the audio spool at {root}: {exc}") from exc
        for directory in directories:
            wanted = local_ids is None or directory.name in local_ids
            try:
                session = cls._load(directory, budget, destination, problems) if wanted else None
            except Exception as exc:  # one odd folder must never stop a new recording
                log.exception("spool %s: cannot be opened; left in place", directory)
                problems.append((directory, f"it cannot be opened ({exc})"))
                session = None
            if session is not None:
                pending.append(session)
            elif directory.exists():
                elsewhere.append(directory)
                held = spooled_bytes(directory)
                budget.add_existing(held)
                budget.elsewhere_bytes += held
                if not wanted:
                    cls._check_unwanted(directory, problems)
        return cls(root, budget, pending, elsewhere, problems)

    @staticmethod
    def _check_unwanted(directory: Path, problems: list[tuple[Path, str]]) -> None:
        """Report a folder not taken whose session.json cannot be used (read only)."""
        try:
            Spool.read_meta(directory)
        except FileNotFoundError:
            if any(directory.glob(f"{_SEGMENT_PREFIX}*")):
                problems.append((directory, meta_problem(directory, None)))
        except (ValueError, OSError) as exc:
            problems.append((directory, meta_problem(directory, exc)))

    @staticmethod
    def read_meta(directory: Path) -> SpoolMeta:
        """The metadata of the session in ``directory``, without locking it.

        Raises FileNotFoundError (no session.json) or ValueError (unreadable, or of the
        wrong shape: every field's type is checked; the message says which is wrong).
        """
        data = (directory / META_NAME).read_bytes()
        try:
            raw = json.loads(data)
        except RecursionError as exc:  # nested beyond reason: not a file meetcap wrote
            raise ValueError("it is nested too deeply to be session metadata") from exc
        return _check_meta(raw)

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
        directory: Path,
        budget: SpoolBudget,
        destination: str | None | _AnyDestination,
        problems: list[tuple[Path, str]],
    ) -> SpoolSession | None:
        try:
            meta = Spool.read_meta(directory)
        except FileNotFoundError:
            # Created but never described: a crash inside new_session, before any frame.
            if not any(directory.glob(f"{_SEGMENT_PREFIX}*")):
                shutil.rmtree(directory, ignore_errors=True)
                return None
            why = meta_problem(directory, None)
            log.warning("spool %s: %s; left in place", directory, why)
            problems.append((directory, why))
            return None
        except (ValueError, OSError) as exc:
            why = meta_problem(directory, exc)
            log.warning("spool %s: %s; left in place", directory, why)
            problems.append((directory, why))
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
        try:
            session._recover()
        except BaseException:
            session.close(keep=False)  # release the lock; the folder stays as it was
            raise
        if session.last_seq < 0 and meta.session_id is None:
            session.remove()  # nothing captured, nothing on the server: nothing to deliver
            return None
        # Nothing captured but a chosen id (create_pending): the hello may have created
        # the session; the link asks and ends it if so (SessionLink._probing).
        if session.intact_frames == 0 and meta.server_session_id is None and session.damaged:
            # Every frame of it is lost and the server has none: sending only silence
            # would make a recording of nothing. It waits, listed, to be discarded.
            why = (
                f"nothing of it can be delivered, all {session.last_seq + 1} frames are "
                f"lost ({describe_lost(session.damaged, sent=False)})"
            )
            log.warning("spool %s: %s; left in place", directory, why)
            problems.append((directory, why))
            session.close(keep=False)
            return None
        return session

    def new_session(
        self,
        started_at: float,
        url: str,
        *,
        destination: str | None = None,
        account: str | None = None,
        tracks: bool = False,
    ) -> SpoolSession:
        """Create the directory of a new capture session (frames start at seq 0) for
        ``destination`` (see :class:`SpoolMeta`); ``tracks``: its records keep both lanes."""
        local_id = time.strftime("%Y%m%dT%H%M%S", time.gmtime(started_at))
        local_id += f"-{secrets.token_hex(4)}"
        directory = self.root / local_id
        # The server session's id and token are chosen here and on disk before the first
        # hello (hello.create, docs/protocol.md 4): a crash or a lost link between the
        # server creating the session and the welcome being stored then resumes that same
        # session, instead of leaving it empty and never finished on the server.
        meta = SpoolMeta(
            local_id, started_at, url, destination=destination, account=account, tracks=tracks,
            session_id=secrets.token_urlsafe(16), resume_token=secrets.token_urlsafe(16),
            create_pending=True,
        )
        record_bytes = TRACKS_MESSAGE_BYTES if tracks else RECORD_BYTES
        # Segments of at most a quarter of the cap: the last segment is kept while acked
        # (it marks where the frames end), so a cap below a few segments would otherwise
        # fill with acked audio that is never freed.
        segment_frames = max(1, min(FRAMES_PER_SEGMENT, self.budget.cap_bytes // record_bytes // 4))
        try:
            directory.mkdir()
            session = SpoolSession(directory, meta, self.budget, segment_frames)
            session._try_lock()
            session._write_meta(session._meta)
            oscalls.fsync_dir(self.root)
        except OSError as exc:
            raise StorageError(f"cannot create a spool session in {self.root}: {exc}") from exc
        return session

    def close(self) -> None:
        for session in self.pending:
            session.close()


def meta_problem(directory: Path, exc: BaseException | None) -> str:
    """Why the session.json of ``directory`` cannot be used, in words (``exc`` None: it
    is missing), with the frames on disk."""
    first, last = spooled_frames(directory)
    verb = "is" if first == last else "are"
    on_disk = f"{frame_span(first, last)} {verb} on disk" if last >= 0 else "no audio is on disk"
    if exc is None:
        return (
            f"its {META_NAME} is missing ({on_disk}): where it belongs is unknown, it can "
            "only be discarded"
        )
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (
        f"its {META_NAME} cannot be read ({detail}; {on_disk}): where it belongs is "
        "unknown, it can only be discarded"
    )


def spooled_bytes(directory: Path) -> int:
    """Bytes of whole records in the segment files of ``directory`` (no lock, no checks)."""
    total = 0
    for path, _first, record_bytes in _segment_files(directory):
        try:
            total += path.stat().st_size // record_bytes * record_bytes
        except OSError:
            continue  # deleted meanwhile (acked by the process delivering it)
    return total


def spooled_frames(directory: Path) -> tuple[int, int]:
    """(first, last) frame numbers on disk in ``directory``, from the file names and sizes
    alone (no lock, no checks; a torn tail is not looked for); (0, -1) when none."""
    spans = []
    for path, first, record_bytes in _segment_files(directory):
        if first is None:
            continue
        try:
            count = path.stat().st_size // record_bytes
        except OSError:
            continue
        if count:
            spans.append((first, first + count - 1))
    if not spans:
        return 0, -1
    return min(f for f, _ in spans), max(last for _, last in spans)
