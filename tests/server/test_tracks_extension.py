"""The tracks extension (docs/protocol.md 3.5) against real meetcap-server processes over
real websockets: a two-lane session stored gaplessly in both WAVs across a dropped
connection and a kill -9 of the server, the refusals, and old/new peers together."""

from __future__ import annotations

import asyncio
import json
import time
import wave

import numpy as np

from meetcap.protocol import TRACKS_MESSAGE_BYTES, Welcome
from meetcap.protocol.audio import encode_audio
from meetcap.server.msgsize import too_big
from tests.server.conftest import FAST
from tests.server.test_speakers_extension import old_server  # noqa: F401 (a fixture)
from tests.server.wire import Closed, Wire, make_pcm, run, wav_pcm


def make_tracks(seq: int) -> bytes:
    """Frame ``seq``'s two lanes: different noise on each channel, interleaved."""
    mic = np.frombuffer(make_pcm(seq, seed=101), np.int16)
    system = np.frombuffer(make_pcm(seq, seed=202), np.int16)
    return np.column_stack((mic, system)).astype("<i2").tobytes()


class TracksClient:
    """A client that captured ``mono`` and ``tracks`` per frame and resumes from the ack."""

    def __init__(self, frames: int, offer: int | None = 1) -> None:
        self.mono = [make_pcm(seq, seed=7) for seq in range(frames)]
        self.tracks = [make_tracks(seq) for seq in range(frames)]
        self.offer = offer
        self.session_id: str | None = None
        self.token: str | None = None
        self.accepted: list[int | None] = []  # welcome.tracks of every connection

    async def open(self, url: str) -> Wire:
        wire = Wire(url)
        await wire.__aenter__()
        assert wire.ws is not None
        await wire.ws.send(
            wire.conn.hello(self.session_id, self.token, time.time(), tracks=self.offer)
        )
        wire._reader = asyncio.create_task(wire._read())
        deadline = time.monotonic() + 10
        while wire.welcome is None and not wire._reader.done():
            await wire._wait_progress(deadline)
        assert isinstance(wire.welcome, Welcome), await wire.closed()
        self.session_id, self.token = wire.welcome.session_id, wire.welcome.resume_token
        self.accepted.append(wire.welcome.tracks)
        return wire

    async def send(self, wire: Wire, upto: int) -> None:
        assert wire.ws is not None and wire.welcome is not None
        for seq in range(wire.welcome.acked + 1, upto):
            # ClientConnection sends the lanes only if this connection's welcome took them.
            await wire.ws.send(wire.conn.frame(seq, self.mono[seq], seq % 3 == 0, None,
                                               self.tracks[seq]))


def _stored(data_dir, session_id):
    sidecar = json.loads((data_dir / f"{session_id}.json").read_text())
    mono = wav_pcm(data_dir / f"{session_id}.wav")
    tracks_path = data_dir / f"{session_id}.tracks.wav"
    return sidecar, mono, tracks_path


def test_a_tracks_session_is_gapless_in_both_files_across_a_drop_and_a_kill_9(
    meetcap_server_factory,
):
    server = meetcap_server_factory(**FAST)
    client = TracksClient(90)

    async def go():
        wire = await client.open(server.url)
        await client.send(wire, 30)
        await wire.wait_acked(29)
        await client.send(wire, 40)  # some of these are in flight when the link drops
        await wire.__aexit__()  # a dropped connection (no close frame)
        wire = await client.open(server.url)
        assert 29 <= wire.welcome.acked <= 39
        await client.send(wire, 60)
        await wire.wait_acked(59)
        await client.send(wire, 70)
        await asyncio.to_thread(server.restart)  # kill -9 while frames are unacked
        await wire.__aexit__()
        wire = await client.open(server.url)
        assert 59 <= wire.welcome.acked <= 69
        await client.send(wire, 90)
        ended = await wire.end(89)
        await wire.__aexit__()
        return ended

    ended = run(go())
    assert client.accepted == [1, 1, 1]
    sidecar, mono, tracks_path = _stored(server.data_dir, client.session_id)
    assert ended.frames == 90 and sidecar["frames"] == 90 and sidecar["finished"]
    assert sidecar["tracks"] is True and sidecar["tracks_audio"] == tracks_path.name
    assert mono == b"".join(client.mono)  # the mono mix exactly as without tracks
    with wave.open(str(tracks_path)) as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getsampwidth()) == (2, 16000, 2)
        assert wav.getnframes() == 90 * 1600
        stored = wav.readframes(wav.getnframes())
    assert stored == b"".join(client.tracks)  # both lanes, every frame once, in order
    both = np.frombuffer(stored, "<i2").reshape(-1, 2)
    sent = np.frombuffer(b"".join(client.tracks), "<i2").reshape(-1, 2)
    assert np.array_equal(both[:, 0], sent[:, 0]) and np.array_equal(both[:, 1], sent[:, 1])


def test_a_tracks_frame_without_the_extension_is_refused_with_4000(fast_server):
    async def go():
        async with Wire(fast_server.url) as wire:
            welcome = await wire.hello()  # no hello.tracks
            assert isinstance(welcome, Welcome) and welcome.tracks is None
            await wire.send_frame(0, make_pcm(0))
            await wire.wait_acked(0)
            message = encode_audio(1, make_pcm(1), tracks=make_tracks(1))
            assert len(message) == TRACKS_MESSAGE_BYTES
            await wire.send_raw(message)
            return await wire.closed()

    closed = run(go())
    assert closed.code == 4000 and closed.error.code == "bad_message"
    assert "tracks extension" in closed.error.message


def test_other_messages_over_3216_bytes_still_close_with_1009(fast_server):
    """Only the tracks message may be bigger: a 9,615-byte binary, a 3,217-byte text and
    anything over 9,616 close with 1009 and no JSON error, with or without tracks."""
    assert too_big(b"x" * 3217) and not too_big(b"x" * 9616) and too_big("é" * 1700)

    async def one(message: bytes | str, offer: int | None) -> Closed:
        client = TracksClient(1, offer)
        wire = await client.open(fast_server.url)
        await wire.send_raw(message)
        closed = await wire.closed()
        await wire.__aexit__()
        return closed

    async def go():
        return [await one(message, offer) for offer in (None, 1)
                for message in (b"\0" * 9615, b"\0" * 9617, "x" * 3217)]

    for closed in run(go()):
        assert closed.code == 1009 and closed.error is None


def test_a_server_with_tracks_off_gets_mono_frames_and_the_session_is_whole(
    meetcap_server_factory,
):
    server = meetcap_server_factory(no_tracks=True, **FAST)
    client = TracksClient(30)

    async def go():
        wire = await client.open(server.url)
        await client.send(wire, 30)
        ended = await wire.end(29)
        await wire.__aexit__()
        return ended

    ended = run(go())
    assert client.accepted == [None]
    sidecar, mono, tracks_path = _stored(server.data_dir, client.session_id)
    assert ended.frames == 30 and mono == b"".join(client.mono)
    assert sidecar["tracks"] is False and not tracks_path.exists()


def test_a_tracks_client_and_the_old_server_from_git(old_server):  # noqa: F811
    url, data = old_server
    client = TracksClient(30)

    async def go():
        wire = await client.open(url)
        await client.send(wire, 30)  # an old server closes 4000 on any 9,616-byte message
        ended = await wire.end(29)
        await wire.__aexit__()
        return ended

    ended = run(go())
    assert client.accepted == [None] and ended.frames == 30
    assert wav_pcm(data / f"{client.session_id}.wav") == b"".join(client.mono)


def test_an_old_client_is_served_as_before(fast_server):
    async def go():
        async with Wire(fast_server.url) as wire:
            welcome = await wire.hello()
            for seq in range(20):
                await wire.send_frame(seq, make_pcm(seq))
            return welcome, await wire.end(19)

    welcome, ended = run(go())
    assert welcome.tracks is None and ended.frames == 20
    sidecar, mono, tracks_path = _stored(fast_server.data_dir, welcome.session_id)
    assert mono == b"".join(make_pcm(seq) for seq in range(20))
    assert sidecar["tracks"] is False and not tracks_path.exists()


def test_tracks_and_mono_connections_of_one_session_keep_the_files_in_step(fast_server):
    """A session begun mono, resumed with tracks, then without, then with again: the
    tracks file is created filled with silence up to the mono file, gets silence for
    the frames of the connection without tracks, and stays frame for frame in step."""
    client = TracksClient(40, offer=None)

    async def go():
        for upto, offer in ((10, None), (20, 1), (30, None), (40, 1)):
            client.offer = offer
            wire = await client.open(fast_server.url)
            await client.send(wire, upto)
            await wire.wait_acked(upto - 1)
            if upto == 40:
                await wire.end(39)
            await wire.__aexit__()

    run(go())
    assert client.accepted == [None, 1, None, 1]
    sidecar, mono, tracks_path = _stored(fast_server.data_dir, client.session_id)
    assert mono == b"".join(client.mono) and sidecar["tracks"] is True
    with wave.open(str(tracks_path)) as wav:
        stored = wav.readframes(wav.getnframes())
    silence = bytes(len(client.tracks[0]))
    expected = [silence] * 10 + client.tracks[10:20] + [silence] * 10 + client.tracks[30:40]
    assert stored == b"".join(expected)


def test_a_tracks_file_cut_short_by_a_crash_cuts_the_mono_file_to_match(
    meetcap_server_factory,
):
    """The attach makes both files hold the same whole frames: after a crash left the
    tracks file a frame and a half short (the audio a power cut can lose before its ack),
    the session resumes from the frame both hold, and the client's resend fills both."""
    server = meetcap_server_factory(**FAST)
    client = TracksClient(30)

    async def first_part():
        wire = await client.open(server.url)
        await client.send(wire, 20)
        await wire.wait_acked(19)
        await wire.__aexit__()

    run(first_part())
    server.kill()
    tracks_path = server.data_dir / f"{client.session_id}.tracks.wav"
    with open(tracks_path, "r+b") as fh:
        fh.truncate(44 + 18 * 6400 + 3000)  # frames 18-19 gone, 18 torn
    server.start()

    async def second_part():
        wire = await client.open(server.url)
        assert wire.welcome.acked == 17
        await client.send(wire, 30)
        ended = await wire.end(29)
        await wire.__aexit__()
        return ended

    assert run(second_part()).frames == 30
    sidecar, mono, tracks_path = _stored(server.data_dir, client.session_id)
    assert mono == b"".join(client.mono)
    with wave.open(str(tracks_path)) as wav:
        assert wav.readframes(wav.getnframes()) == b"".join(client.tracks)


def test_a_bad_checksum_in_the_tracks_part_is_4002(fast_server):
    async def go():
        client = TracksClient(1)
        wire = await client.open(fast_server.url)
        message = bytearray(encode_audio(0, client.mono[0], tracks=client.tracks[0]))
        message[-1] ^= 0xFF  # the last byte of channel 2
        await wire.send_raw(bytes(message))
        closed = await wire.closed()
        await wire.__aexit__()
        return closed

    closed = run(go())
    assert closed.code == 4002 and closed.error.code == "bad_checksum"
