"""The server as a library: the thread-based EmbeddedServer of the desktop app, the
sink where transcription plugs in, and refusals while shutting down."""

from __future__ import annotations

import asyncio
import threading

from meetcap.protocol import CloseCode
from meetcap.server import EmbeddedServer, SessionSummary, StoredBatch
from tests.server.inprocess import config, running
from tests.server.wire import Recording, run


class RecordingSink:
    """A test sink: keeps every call, and the thread it came from."""

    def __init__(self) -> None:
        self.batches: list[StoredBatch] = []
        self.ended: list[SessionSummary] = []
        self.threads: set[str] = set()

    def frames_stored(self, batch: StoredBatch) -> None:
        self.threads.add(threading.current_thread().name)
        self.batches.append(batch)

    def session_ended(self, summary: SessionSummary) -> None:
        self.ended.append(summary)


class BrokenSink:
    def frames_stored(self, batch: StoredBatch) -> None:
        raise RuntimeError("transcription service down")

    def session_ended(self, summary: SessionSummary) -> None:
        raise RuntimeError("transcription service down")


def test_the_sink_gets_every_stored_frame_once_in_order_and_the_end(tmp_path):
    sink = RecordingSink()
    rec = Recording(seed=60)
    rec.extend(30)

    async def scenario():
        async with running(tmp_path, sink=sink) as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire, upto=12)
            await wire.wait_acked(11)
            await wire.__aexit__()
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire)
            await wire.end(29)
            await wire.__aexit__()

    run(scenario())
    seqs = [b.first_seq for b in sink.batches]
    assert seqs == sorted(seqs) and seqs[0] == 0
    pairs = zip(sink.batches, sink.batches[1:], strict=False)
    assert all(a.first_seq + a.frames == b.first_seq for a, b in pairs)
    assert b"".join(b.pcm for b in sink.batches) == b"".join(rec.frames)
    assert [f for b in sink.batches for f in b.speech] == [s % 10 < 3 for s in range(30)]
    (summary,) = sink.ended
    assert (summary.user, summary.session_id, summary.frames) == ("alice", rec.session_id, 30)
    assert summary.sha256 == rec.sha256() and summary.wav_path.endswith(".wav")
    assert sink.threads == {threading.main_thread().name}  # called on the loop thread


def test_a_failing_sink_does_not_affect_storage_or_acks(tmp_path):
    rec = Recording(seed=61)
    rec.extend(10)

    async def scenario():
        async with running(tmp_path, sink=BrokenSink()) as server:
            wire = await rec.open(server.url)
            await rec.send_from_ack(wire)
            ended = await wire.end(9)
            await wire.__aexit__()
            return ended

    assert run(scenario()).sha256 == rec.sha256()


def test_embedded_server_runs_in_its_own_thread_and_stops_gracefully(tmp_path):
    server = EmbeddedServer(config(tmp_path)).start()
    assert server.url == f"ws://127.0.0.1:{server.port}/v1/stream" and server.port > 0
    rec = Recording(seed=62)
    rec.extend(10)

    async def scenario():
        wire = await rec.open(server.url)
        await rec.send_from_ack(wire)
        await wire.wait_acked(9)
        stopper = asyncio.create_task(asyncio.to_thread(server.stop))
        closed = await wire.closed()
        await stopper
        await wire.__aexit__()
        return closed

    closed = run(scenario())
    assert closed.code == CloseCode.SERVICE_RESTART and closed.going_away is not None
    assert not any(t.name == "meetcap-server" for t in threading.enumerate())
    server.stop()  # idempotent


def test_embedded_server_reports_a_start_failure_to_the_caller(tmp_path):
    from meetcap.errors import StorageError

    blocker = tmp_path / "blocker"
    blocker.write_text("")
    try:
        EmbeddedServer(config(blocker / "sessions")).start()
    except StorageError as exc:
        assert "not writable" in str(exc)
    else:
        raise AssertionError("start() should have raised StorageError")


def test_a_handshake_during_shutdown_is_refused_with_503(tmp_path):
    async def scenario():
        async with running(tmp_path) as server:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            rec = Recording(seed=63)
            rec.extend(1)
            wire = await rec.open(server.url)  # keeps the shutdown busy for a moment
            shutdown = asyncio.create_task(server.shutdown())
            await asyncio.sleep(0.05)
            writer.write(
                b"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer alice-token-0123456789\r\n\r\n"
            )
            status = await asyncio.wait_for(reader.readline(), 5)
            writer.close()
            await shutdown
            await wire.__aexit__()
            return status

    assert run(scenario()).split()[1] == b"503"
