"""The transcript feed's priorities (meetcap/server/transcription/feed.py): finals from
the id asked for, in order, exactly once; partials dropped while the socket has unsent
data; the lag when it moved. The socket is a stand-in that records what is sent and
reports the unsent bytes the test sets (the real socket is covered end to end in
test_transcription.py)."""

from __future__ import annotations

import asyncio
import json

from meetcap.server.transcription.feed import PARTIAL_MAX_UNSENT, TranscriptFeed
from meetcap.server.transcription.files import TranscriptFiles
from meetcap.server.transcription.service import SessionTranscript
from meetcap.transcribe.segments import TranscriptSegment


class StandInTransport:
    def __init__(self) -> None:
        self.unsent = 0

    def get_write_buffer_size(self) -> int:
        return self.unsent


class StandInSocket:
    def __init__(self) -> None:
        self.transport = StandInTransport()
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


def final(i: int) -> TranscriptSegment:
    return TranscriptSegment(i, i * 3.0, i * 3.0 + 2.0, f"sentence number {i} is here", True)


def partial(i: int, text: str) -> TranscriptSegment:
    return TranscriptSegment(i, i * 3.0, i * 3.0 + 1.0, text, False)


def test_finals_from_the_id_asked_then_partials_dropped_while_data_waits_stand_in_socket(tmp_path):
    async def scenario() -> list[dict]:
        session = SessionTranscript("s1", TranscriptFiles(tmp_path, "s1"))
        session.add_finals([final(0), final(1), final(2)])
        ws = StandInSocket()
        feed = TranscriptFeed(ws, session, next_id=1)  # the client has final 0
        feed.start()
        await asyncio.sleep(0.01)
        ws.transport.unsent = PARTIAL_MAX_UNSENT + 1  # the client is slow to read
        session.partial = partial(3, "a partial nobody")
        session.notify()
        await asyncio.sleep(0.01)
        ws.transport.unsent = 0
        session.partial = partial(3, "a partial that goes")
        session.durable, session.fed = 40, 10  # 3 s behind
        session.notify()
        await asyncio.sleep(0.01)
        session.add_finals([final(2), final(3)])  # 2 again: a repeat is not sent twice
        session.fed = 40
        session.complete = True
        session.notify()
        await asyncio.wait_for(feed.finish(5), 5)
        assert feed.partials_dropped == 1
        return ws.sent

    sent = asyncio.run(scenario())
    kinds = [(m["type"], m.get("id"), m.get("final"), m.get("lag_s")) for m in sent]
    assert kinds == [
        ("transcript", 1, True, None), ("transcript", 2, True, None),
        ("transcript_status", None, None, 0.0),
        ("transcript_status", None, None, 3.0), ("transcript", 3, False, None),
        ("transcript", 3, True, None), ("transcript_status", None, None, 0.0),
    ]
    assert sent[4]["text"] == "a partial that goes" and sent[4]["speaker"] is None
    assert sent[-1]["complete"] is True and sent[-1]["next_id"] == 4


def test_a_failed_transcript_does_not_hold_the_end_of_the_session_stand_in_socket(tmp_path):
    """A transcript file that cannot be read stops that transcript (it is never
    overwritten); the connection's end then does not wait the tail timeout for finals."""
    (tmp_path / "s1.transcript.json").write_text("{damaged")

    async def scenario() -> float:
        session = SessionTranscript("s1", TranscriptFiles(tmp_path, "s1"))
        assert session.failed and "cannot read" in session.failed
        feed = TranscriptFeed(StandInSocket(), session, next_id=0)
        feed.start()
        loop = asyncio.get_running_loop()
        started = loop.time()
        await feed.finish(10)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0
