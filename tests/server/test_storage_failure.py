"""A disk that fails: the client hears storage_failed (4011), nothing that was not
stored is ever acknowledged, and the session completes once the disk is back."""

from __future__ import annotations

import errno
import hashlib
import os
import sys

import pytest

from meetcap.constants import FRAME_BYTES
from meetcap.oscalls import pwrite_all
from meetcap.protocol import CloseCode
from meetcap.server import storage as storage_module
from meetcap.server.storage import SessionWriter
from meetcap.server.wavfile import pcm_offset
from tests.server.inprocess import running
from tests.server.wire import Recording, Wire, run, wav_pcm


class FullDisk:
    """Patch for SessionWriter.write_batch: while ``full``, write a frame and a half of
    the batch, then fail with ENOSPC, as a filesystem that runs out of space does."""

    def __init__(self) -> None:
        self.full = False
        self.failures = 0
        self.original = SessionWriter.write_batch

    def write_batch(self, writer: SessionWriter, batch) -> None:
        if not self.full:
            return self.original(writer, batch)
        self.failures += 1
        data = b"".join(batch.pcm)[: FRAME_BYTES + FRAME_BYTES // 2]
        pwrite_all(writer.wav_fd, data, pcm_offset(batch.first_seq))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def install(self, monkeypatch) -> None:
        def write_batch(writer: SessionWriter, batch) -> None:
            self.write_batch(writer, batch)

        monkeypatch.setattr(SessionWriter, "write_batch", write_batch)


def test_a_failing_disk_closes_with_storage_failed_and_acks_only_stored_frames(
    tmp_path, monkeypatch
):
    disk = FullDisk()
    disk.install(monkeypatch)
    rec = Recording(seed=50)
    rec.extend(40)

    async def scenario():
        async with running(tmp_path) as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire, upto=10)
            await wire.wait_acked(9)
            disk.full = True
            for seq in range(10, 20):
                await wire.send_frame(seq, rec.frames[seq])
            closed = await wire.closed()
            acked_before_failure = wire.acked
            await wire.__aexit__()
            stored_then = wav_pcm(tmp_path / f"{rec.session_id}.wav")
            disk.full = False  # space freed: the client retries (4011 is retryable)
            wire = await rec.open(server.url)
            resumed_at = wire.welcome.acked
            await rec.send_from_ack(wire)
            ended = await wire.end(39)
            await wire.__aexit__()
            return closed, acked_before_failure, stored_then, resumed_at, ended

    closed, acked, stored_then, resumed_at, ended = run(scenario())
    assert disk.failures >= 1
    assert closed.code == CloseCode.STORAGE_FAILED and closed.error.code == "storage_failed"
    assert "No space left" in closed.error.message
    assert acked == 9  # nothing of the failed round was acknowledged
    # What the file holds covers every ack (the WAV header lags the torn write: valid).
    assert stored_then == b"".join(rec.frames[:10])
    assert resumed_at >= 9
    assert ended.frames == 40 and ended.sha256 == rec.sha256()
    assert hashlib.sha256(wav_pcm(tmp_path / f"{rec.session_id}.wav")).hexdigest() == rec.sha256()


def test_a_session_that_cannot_be_opened_is_refused_with_storage_failed(tmp_path, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    async def scenario():
        async with running(tmp_path) as server:
            with monkeypatch.context() as patch:
                patch.setattr(storage_module.Storage, "_open_sync", read_only)
                async with Wire(server.url) as wire:
                    refused = await wire.hello()
            async with Wire(server.url) as wire:  # the disk is back: the retry works
                welcome = await wire.hello()
                await wire.end(-1)
            return refused, welcome

    refused, welcome = run(scenario())
    assert refused.code == CloseCode.STORAGE_FAILED
    assert "Read-only file system" in refused.error.message
    assert welcome.acked == -1


def test_a_data_dir_that_cannot_be_written_stops_the_server_at_start(tmp_path):
    from meetcap.errors import StorageError
    from meetcap.server import serve
    from tests.server.inprocess import config

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")

    async def scenario():
        await serve(config(not_a_dir / "sessions"))

    with pytest.raises(StorageError, match="not writable"):
        run(scenario())


def test_a_session_at_the_wav_size_limit_is_refused_with_a_fatal_code(tmp_path, monkeypatch):
    from meetcap.server import wavfile

    monkeypatch.setattr(wavfile, "MAX_FRAMES", 5)  # 37 hours is too long for a test
    rec = Recording(seed=51)
    rec.extend(6)

    async def scenario():
        async with running(tmp_path) as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire)
            closed = await wire.closed()
            await wire.__aexit__()
            return closed

    closed = run(scenario())
    assert closed.code == CloseCode.BAD_MESSAGE and "37 hours" in closed.error.message


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="syncfs(2) is Linux-only")
def test_a_failing_syncfs_acks_nothing_of_its_round(tmp_path, monkeypatch):
    """fsync mode syncfs: one error from the filesystem sync fails every batch of that
    round (none of it is known durable), for every session in it."""
    from meetcap.server.flusher import Flusher

    failing = {"on": False}
    original = Flusher._sync_filesystem

    def sync_filesystem(self):
        if failing["on"]:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return original(self)

    monkeypatch.setattr(Flusher, "_sync_filesystem", sync_filesystem)
    rec = Recording(seed=52)
    rec.extend(20)

    async def scenario():
        async with running(tmp_path, fsync_mode="syncfs") as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire, upto=10)
            await wire.wait_acked(9)
            failing["on"] = True
            for seq in range(10, 15):
                await wire.send_frame(seq, rec.frames[seq])
            closed = await wire.closed()
            acked = wire.acked
            await wire.__aexit__()
            failing["on"] = False
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire)
            ended = await wire.end(19)
            await wire.__aexit__()
            return closed, acked, ended

    closed, acked, ended = run(scenario())
    assert closed.code == CloseCode.STORAGE_FAILED and "Input/output error" in closed.error.message
    assert acked == 9
    assert ended.sha256 == rec.sha256()
