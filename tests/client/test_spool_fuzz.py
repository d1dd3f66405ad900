"""Spool fuzz (issue 11): random damage over many small spools, delivered for real.

Each seeded run spools one to three small recordings (a few frames a segment file, so
that each has several), damages them at random (flipped bytes, files cut short, segment
files or session.json deleted, session.json of the wrong shape), then starts a Streamer
that captures a new recording in the same spool and delivers the old ones to the
scripted server (real websockets, the real protocol). Every run must:

* deliver every intact frame, bit for bit at its own place, and name exactly the frames
  lost (sent as silence); or, for a recording that cannot be delivered (its
  session.json unusable, or nothing of it intact), leave it in the spool and list it
  with the reason, in `meetcap spool list` and in the streamer's status;
* never crash, and never block a new recording: the new one is delivered and verified,
  and so is a second one started afterwards in the same spool.
"""

from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field

import pytest

from meetcap.client import Streamer
from meetcap.client import spool as spool_module
from meetcap.client.pending import list_pending
from meetcap.client.spool import LOCK_NAME, META_NAME, RECORD_BYTES, Spool
from meetcap.constants import FRAME_BYTES
from tests.client.conftest import TOKEN, fast_config
from tests.client.frames import SubmitLog, synthetic_frames
from tests.client.scripted_server import ScriptedServer

RUNS = 150  # about 10 s on the 2-core test VM
_SPAN = re.compile(r"\bframes? (\d+)(?:-(\d+))? \(")
SILENCE = bytes(FRAME_BYTES)
WRONG_META = [
    None,  # deleted
    "null", "[]", "7", '"session"', "{", "", "\x00\xff\xfe",
    {"acked": "7"}, {"acked": None}, {"acked": 2.5}, {"ended": "no"}, {"ended": 1},
    {"started_at": "yesterday"}, {"started_at": -5}, {"session_id": 5},
    {"spooled_to": None}, {"lost": "frame 3"}, {"damaged": [[4, 2, "x"]]},
    {"destination": ["x"]}, {"local_id": None},
]


@dataclass
class Spooled:
    """One recording as spooled, and what the fuzz did to it."""

    name: str
    frames: list
    damaged: set[int] = field(default_factory=set)
    meta_broken: bool = False
    segments_before: dict[str, bytes] = field(default_factory=dict)

    @property
    def all_lost(self) -> bool:
        return len(self.damaged) == len(self.frames)


@pytest.fixture(scope="module")
def server():
    srv = ScriptedServer(token=TOKEN).start()
    yield srv
    srv.stop()


def _damage(rng: random.Random, spooled: Spooled, directory, per_segment: int) -> list[str]:
    """Damage one recording at random; note in ``spooled`` which frames it costs."""
    done = []
    count = len(spooled.frames)
    for _ in range(rng.choice([0, 1, 1, 2, 3])):
        kind = rng.choice(["flip", "flip", "flip", "truncate", "delete", "meta", "lock"])
        first = rng.randrange(0, count, per_segment)
        path = directory / f"seg-{first:020d}.dat"
        end = min(first + per_segment, count)  # one past the segment's last frame
        if kind in ("flip", "truncate", "delete") and not path.exists():
            continue
        size = path.stat().st_size if path.exists() else 0
        if kind == "flip" and size:
            offset = rng.randrange(size)
            with open(path, "r+b") as fh:
                fh.seek(offset)
                byte = fh.read(1)[0]
                fh.seek(offset)
                fh.write(bytes([byte ^ (1 << rng.randrange(8))]))
            spooled.damaged.add(first + offset // RECORD_BYTES)
        elif kind == "truncate":
            keep = rng.randrange(size) if size else 0
            with open(path, "r+b") as fh:
                fh.truncate(keep)
            spooled.damaged.update(range(first + keep // RECORD_BYTES, end))
        elif kind == "delete":
            path.unlink()
            spooled.damaged.update(range(first, end))
        elif kind == "meta":
            wrong = rng.choice(WRONG_META)
            meta_path = directory / META_NAME
            if wrong is None:
                meta_path.unlink(missing_ok=True)
            elif isinstance(wrong, dict):
                try:
                    meta = json.loads(meta_path.read_text())
                except (OSError, ValueError):
                    meta = {}
                meta_path.write_text(json.dumps({**(meta if isinstance(meta, dict) else {}),
                                                 **wrong}))
            else:
                meta_path.write_bytes(wrong.encode("latin-1"))
            spooled.meta_broken = True
        elif kind == "lock":
            (directory / LOCK_NAME).unlink(missing_ok=True)  # harmless: recreated
        done.append(f"{kind} seg {first}" if kind != "meta" else "meta")
    return done


def _expand(runs) -> set[int]:
    return {n for first, last in runs for n in range(first, last + 1)}


def _record(config, seed: int):
    streamer = Streamer(config)
    streamer.start()
    log = SubmitLog()
    for frame in synthetic_frames(4, seed=seed):
        streamer.submit(frame)
        log.record(frame)
    return streamer, log


@pytest.mark.parametrize("seed", range(RUNS))
def test_random_damage_delivers_every_intact_frame_or_says_what_was_lost(
    seed, server, tmp_path, monkeypatch
):
    rng = random.Random(seed)
    per_segment = rng.randint(2, 6)
    monkeypatch.setattr(spool_module, "FRAMES_PER_SEGMENT", per_segment)
    root = tmp_path / "spool"
    config = fast_config(server.url, root)
    spooled: dict[str, Spooled] = {}
    spool = Spool.open(root)
    for i in range(rng.randint(1, 3)):
        frames = list(synthetic_frames(rng.randint(1, 18), seed=seed * 10 + i))
        session = spool.new_session(
            1.7e9 + i, config.url, destination=config.resolved_destination(),
            account=config.account(),
        )
        for frame in frames:
            session.append(frame)
        session.close()
        spooled[session.dir.name] = Spooled(session.dir.name, frames)
    spool.close()
    what = {
        name: _damage(rng, one, root / name, per_segment) for name, one in spooled.items()
    }
    for one in spooled.values():
        one.segments_before = {p.name: p.read_bytes() for p in (root / one.name).glob("seg-*")}
    context = f"seed {seed}, {per_segment} frames a segment, damage {what}"

    # A new recording in the same spool: it starts, and the old ones go along with it.
    started = time.monotonic()
    streamer, log = _record(config, seed=1000 + seed)
    links = {link.session.dir.name: link for link in streamer._earlier_links}
    problems = streamer.status().spool_problems
    result = streamer.finish(15)
    assert result.ok and result.verified and result.frames == len(log), (context, result)
    assert time.monotonic() - started < 15, context
    assert len(result.earlier) == len(links), (context, result)
    delivered = dict(zip(links, result.earlier, strict=True))
    listed = {r.local_id: r for r in list_pending(root)}

    for name, one in spooled.items():
        lost = sorted(one.damaged)
        where = f"{context}; recording {name} ({len(one.frames)} frames, lost {lost})"
        if one.meta_broken:
            # Where it belongs is unknown: not delivered, untouched, listed and reported.
            assert name not in delivered, where
            assert listed[name].state == "unreadable" and META_NAME in listed[name].why, where
            assert any(p.startswith(f"recording {name}:") for p in problems), (where, problems)
            after = {p.name: p.read_bytes() for p in (root / name).glob("seg-*")}
            assert after == one.segments_before, where
            continue
        if name not in delivered:
            # Only a recording with nothing intact left may stay behind, and it says so.
            assert one.all_lost, (where, problems, listed.get(name))
            assert listed[name].state == "damaged", (where, listed[name])
            assert "nothing of it can be delivered" in listed[name].why, where
            assert any(p.startswith(f"recording {name}:") for p in problems), (where, problems)
            continue
        earlier = delivered[name]
        assert earlier.frames_left == 0 and earlier.session_id is not None, (where, earlier)
        assert _expand(earlier.lost) == one.damaged, (where, earlier)  # precisely
        assert earlier.ok == (not one.damaged), (where, earlier)
        stored = server.sessions[earlier.session_id].frames
        assert len(stored) == len(one.frames), (where, earlier)
        for frame in one.frames:
            expected = SILENCE if frame.seq in one.damaged else frame.pcm
            assert stored[frame.seq] == expected, (where, frame.seq, earlier.message)
        said = {  # the frames the message names, each with its reason in brackets
            n
            for first, last in _SPAN.findall(earlier.message)
            for n in range(int(first), int(last or first) + 1)
        }
        assert said == one.damaged, (where, earlier.message)
        assert name not in listed, where

    # And once more: a second new recording in the same spool, with whatever is left.
    again, log = _record(config, seed=2000 + seed)
    second = again.finish(15)
    assert second.ok and second.verified and second.frames == len(log), (context, second)
    assert second.earlier == (), (context, second)  # nothing left that could be delivered
