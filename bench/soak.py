"""Soak: many real-time sessions against one meetcap-server for a long time, with the
server killed (-9) and client processes killed (-9) at random moments, and hostile peers
alongside; then every session's stored audio is checked frame by frame (issue 11).

    .venv/bin/python bench/soak.py --minutes 30 --slots 200   # the issue's soak
    .venv/bin/python bench/soak.py --minutes 5 --slots 40     # a shorter run

Parts, all real: ``python -m meetcap.server`` (embedded state) on a fixed port, restarted
on it after each kill; ``--workers`` client processes (this script with ``--worker``),
each running ``slots / workers`` session slots in threads. A slot records session after
session with meetcap's own Streamer (its own spool), submitting frames at real time (10 a
second) for 20-60 s each (``--session-min-s`` / ``--session-max-s``: shorter sessions end
more of them a minute); every frame's first 16 bytes name its session key and seq, the
rest is seeded noise, so the stored audio can be checked against what was submitted. Each
submit is logged (an O_APPEND write: a kill -9 keeps it). A killed worker is started
again with the same spools: the next Streamer of each slot delivers what its spool holds.
Hostile peers, every few seconds: a connection that sends garbage (must be refused with
4000) and one that floods pings without reading (must be closed, 4013 or dropped).

At the end the workers finish, a last pass delivers every spool, the server stops, and
each WAV in the data directory is read: frames stored in order must equal the frames
submitted. Lost = frames logged as submitted that are not stored (or stored wrong).
Server RSS is sampled every 5 s; "a -> b" is the first instance's RSS 30 s in and the
last sample before the end. The LAST line is exactly:
``soak: <N> sessions, <K> kills, <L> frames lost, RSS <a> -> <b> MB``
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meetcap.constants import FRAME_BYTES  # noqa: E402

USER, TOKEN = "soak", "soak-token-0123456789"
WAV_HEADER = 44
STOP_FILE = "stop"


# ----------------------------------------------------------------------------- frames


def frame_pcm(key: int, seq: int) -> bytes:
    """Session ``key``'s frame ``seq``: its identity, then seeded noise."""
    head = struct.pack("!QQ", key, seq)
    return head + random.Random(key * 1_000_003 + seq).randbytes(FRAME_BYTES - len(head))


# ----------------------------------------------------------------------------- worker


def run_worker(args: argparse.Namespace) -> None:
    from meetcap.client import Streamer, StreamerConfig
    from meetcap.frames import Frame

    run_dir = Path(args.run_dir)
    threads = [
        threading.Thread(target=_slot, args=(args, run_dir, j, Streamer, StreamerConfig, Frame),
                         daemon=True)
        for j in range(args.slots_here)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _slot(args, run_dir: Path, j: int, Streamer, StreamerConfig, Frame) -> None:  # noqa: N803
    name = f"w{args.worker}s{j}"
    log_fd = os.open(run_dir / "logs" / f"{name}.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    rng = random.Random()
    final = args.final_pass
    while True:
        config = StreamerConfig(
            url=args.url, token=TOKEN, spool_dir=run_dir / "spool" / name,
            backoff_base_s=0.25, backoff_cap_s=2.0, client_name="soak",
        )
        streamer = Streamer(config)
        streamer.start()
        if final:  # deliver what the spool holds, record nothing new
            result = streamer.finish(args.finish_timeout_s)
            os.write(log_fd, f"final {result.ok} {result.frames_left}\n".encode())
            return
        key = int.from_bytes(os.urandom(7), "big")
        seconds = rng.uniform(args.session_min_s, args.session_max_s)
        t0 = time.time()
        seq = 0
        while seq < seconds * 10 and not (run_dir / STOP_FILE).exists():
            due = t0 + seq / 10
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            streamer.submit(Frame(seq=seq, pcm=frame_pcm(key, seq), capture_time=due,
                                  speech=seq % 4 == 0))
            os.write(log_fd, f"{key:x} {seq}\n".encode())
            seq += 1
        result = streamer.finish(args.finish_timeout_s)
        done = f"done {key:x} {result.ok} {result.frames} {result.frames_left}\n"
        os.write(log_fd, done.encode())
        if (run_dir / STOP_FILE).exists():
            return


# ----------------------------------------------------------------------------- server


class Server:
    def __init__(self, data_dir: Path, port: int, log_path: Path,
                 memtrace: Path | None = None) -> None:
        self.data_dir, self.port, self.log_path = data_dir, port, log_path
        self.memtrace = memtrace  # meetcap/server/memtrace.py reports, when asked for
        self.proc: subprocess.Popen | None = None
        self.rss_samples: list[tuple[int, float, float]] = []  # (instance, t, MB)
        self.instance = 0

    def start(self) -> None:
        env = dict(os.environ, MEETCAP_TOKENS=f"{USER}:{TOKEN}", PYTHONPATH=str(REPO))
        if self.memtrace is not None:
            env["MEETCAP_MEMTRACE"] = str(self.memtrace)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meetcap.server", "--port", str(self.port), "--data-dir",
             str(self.data_dir), "--max-sessions-per-user", "100000",
             "--new-sessions-per-minute", "100000", "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        self.instance += 1
        self.started_at = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("meetcap-server did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def sample_rss(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    mb = int(line.split()[1]) / 1024
                    self.rss_samples.append(
                        (self.instance, time.monotonic() - self.started_at, mb)
                    )
        except OSError:
            pass


# ----------------------------------------------------------------------------- hostile peers


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    size = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | size) if size < 126 else struct.pack(
        "!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _upgrade(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), 5)
    sock.sendall(
        f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: c29ha3NvYWtzb2Frc29haw==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {TOKEN}\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    return sock


def _close_code(sock: socket.socket, timeout_s: float) -> int | None:
    sock.settimeout(timeout_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
            i = data.find(b"\x88")
            if i >= 0 and len(data) >= i + 4:
                return struct.unpack("!H", data[i + 2 : i + 4])[0]
    except OSError:
        return None
    finally:
        sock.close()


def hostile(port: int, stop: threading.Event, tally: collections.Counter) -> None:
    while not stop.wait(5):
        try:
            sock = _upgrade(port)
            sock.sendall(_masked(0x1, b"{garbage"))
            tally["garbage refused" if _close_code(sock, 5) == 4000 else "garbage NOT refused"] += 1
        except OSError:
            tally["garbage: server down"] += 1
        try:
            sock = _upgrade(port)
            hello = json.dumps({"type": "hello", "started_at": time.time()}).encode()
            sock.sendall(_masked(0x1, hello))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.settimeout(10)
            sent = 0
            try:
                for _ in range(200):  # 200 x 1,000 pings, never reading the pongs
                    sock.sendall(_masked(0x9, b"p" * 100) * 1000)
                    sent += 1000
                tally["ping flood NOT stopped"] += 1
            except OSError:
                tally["ping flood stopped"] += 1
            sock.close()
        except OSError:
            tally["ping flood: server down"] += 1


# ----------------------------------------------------------------------------- check


def check(run_dir: Path, data_dir: Path) -> dict:
    submitted: dict[int, int] = {}
    for log in (run_dir / "logs").glob("*.log"):
        for line in log.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                key, seq = int(parts[0], 16), int(parts[1])
                submitted[key] = max(submitted.get(key, 0), seq + 1)
    stored: dict[int, int] = {}  # key -> frames stored right, in order from 0
    wrong = doubled = unfinished = 0
    for wav in data_dir.glob("*.wav"):
        with wav.open("rb") as f:
            f.seek(WAV_HEADER)
            first = f.read(FRAME_BYTES)
            if len(first) < FRAME_BYTES:
                continue
            key = struct.unpack("!Q", first[:8])[0]
            good, seq, frame = 0, 0, first
            while len(frame) == FRAME_BYTES:
                if frame != frame_pcm(key, seq):
                    wrong += 1
                    break
                good += 1
                seq += 1
                frame = f.read(FRAME_BYTES)
        if key in stored:
            doubled += 1
        stored[key] = max(stored.get(key, 0), good)
        sidecar = wav.with_suffix(".json")
        if not json.loads(sidecar.read_text()).get("finished"):
            unfinished += 1
    lost = sum(max(0, n - stored.get(key, 0)) for key, n in submitted.items())
    missing_sessions = sum(1 for key in submitted if key not in stored)
    return dict(sessions=len(submitted), lost=lost, wrong=wrong, doubled=doubled,
                unfinished=unfinished, missing_sessions=missing_sessions,
                frames=sum(submitted.values()))


# ----------------------------------------------------------------------------- main


def rss_per_minute(samples: list[tuple[int, float, float]], instance: int) -> str:
    """One instance's RSS at the first sample of each minute of its life, MB."""
    by_minute: dict[int, float] = {}
    for inst, t, mb in samples:
        if inst == instance:
            by_minute.setdefault(int(t // 60), mb)
    return " ".join(f"{m}:{mb:.1f}" for m, mb in sorted(by_minute.items()))


def start_worker(args, url: str, run_dir: Path, w: int, slots: int, final: bool = False):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(w), "--url", url,
           "--run-dir", str(run_dir), "--slots-here", str(slots),
           "--finish-timeout-s", str(args.finish_timeout_s),
           "--session-min-s", str(args.session_min_s), "--session-max-s", str(args.session_max_s)]
    if final:
        cmd.append("--final-pass")
    return subprocess.Popen(cmd, env=dict(os.environ, PYTHONPATH=str(REPO)),
                            stdout=subprocess.DEVNULL, stderr=open(run_dir / f"w{w}.err", "ab"))  # noqa: SIM115


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--slots", type=int, default=200, help="sessions recorded at once")
    parser.add_argument("--workers", type=int, default=4, help="client processes")
    parser.add_argument("--server-kill-every-s", type=float, default=180.0)
    parser.add_argument("--client-kill-every-s", type=float, default=90.0)
    parser.add_argument("--finish-timeout-s", type=float, default=120.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--session-min-s", type=float, default=20.0,
                        help="shortest session; shorter sessions end more of them a minute")
    parser.add_argument("--session-max-s", type=float, default=60.0, help="longest session")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--memtrace", type=Path, default=None, metavar="FILE",
                        help="the server appends tracemalloc and per-session table reports "
                        "to FILE every minute (meetcap/server/memtrace.py; slows it down)")
    # worker mode (internal)
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", help=argparse.SUPPRESS)
    parser.add_argument("--slots-here", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--final-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        run_worker(args)
        return

    rng = random.Random(args.seed)
    run_dir = Path(tempfile.mkdtemp(prefix="meetcap-soak-"))
    (run_dir / "logs").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = Server(run_dir / "data", port, run_dir / "server.log", args.memtrace)
    server.start()
    url = f"ws://127.0.0.1:{port}/v1/stream"
    per = [args.slots // args.workers + (1 if w < args.slots % args.workers else 0)
           for w in range(args.workers)]
    workers = {w: start_worker(args, url, run_dir, w, per[w]) for w in range(args.workers)}
    stop_hostile = threading.Event()
    tally: collections.Counter = collections.Counter()
    hostile_thread = threading.Thread(target=hostile, args=(port, stop_hostile, tally),
                                      daemon=True)
    hostile_thread.start()

    kills = collections.Counter()
    end = time.monotonic() + args.minutes * 60
    next_server_kill = time.monotonic() + rng.uniform(0.5, 1.0) * args.server_kill_every_s
    next_client_kill = time.monotonic() + rng.uniform(0.5, 1.5) * args.client_kill_every_s
    while time.monotonic() < end:
        time.sleep(5)
        server.sample_rss()
        now = time.monotonic()
        if now >= next_server_kill:
            server.sample_rss()
            server.kill()
            kills["server"] += 1
            server.start()
            next_server_kill = now + rng.uniform(0.5, 1.5) * args.server_kill_every_s
        if now >= next_client_kill:
            w = rng.randrange(args.workers)
            workers[w].send_signal(signal.SIGKILL)
            workers[w].wait()
            kills["client"] += 1
            workers[w] = start_worker(args, url, run_dir, w, per[w])
            next_client_kill = now + rng.uniform(0.5, 1.5) * args.client_kill_every_s
        print(f"  {args.minutes * 60 - (end - now):6.0f} s: kills {dict(kills)}, server RSS "
              f"{server.rss_samples[-1][2] if server.rss_samples else 0:.1f} MB", flush=True)

    (run_dir / STOP_FILE).touch()
    stop_hostile.set()
    for proc in workers.values():
        try:
            proc.wait(args.finish_timeout_s + 30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # A last pass delivers whatever a killed worker left in its spools.
    finals = [start_worker(args, url, run_dir, w, per[w], final=True) for w in range(args.workers)]
    for proc in finals:
        proc.wait(args.finish_timeout_s + 30)
    server.sample_rss()
    server.stop()
    hostile_thread.join(30)

    result = check(run_dir, run_dir / "data")
    first = [mb for inst, t, mb in server.rss_samples if inst == 1 and t >= 30]
    rss_a = first[0] if first else (server.rss_samples[0][2] if server.rss_samples else 0.0)
    rss_b = server.rss_samples[-1][2] if server.rss_samples else 0.0
    peak = max((mb for _, _, mb in server.rss_samples), default=0.0)
    leftover = sum(1 for d in (run_dir / "spool").glob("*/*") if d.is_dir())
    print(f"run dir: {run_dir}")
    print(f"duration {args.minutes:g} min, {args.slots} sessions at once, {args.workers} client "
          f"processes; kills: {kills['server']} server, {kills['client']} client")
    print(f"frames submitted {result['frames']}, stored wrong {result['wrong']}, sessions "
          f"doubled {result['doubled']}, sessions missing {result['missing_sessions']}, "
          f"unfinished on the server {result['unfinished']}, spool folders left {leftover}")
    print(f"hostile peers: {dict(tally)}")
    print(f"server RSS: peak {peak:.1f} MB over {server.instance} instances")
    lives = []  # each instance: RSS 30 s after its start -> its last sample
    for inst in range(1, server.instance + 1):
        mine = [(t, mb) for i, t, mb in server.rss_samples if i == inst]
        warm = [mb for t, mb in mine if t >= 30]
        if warm:
            lives.append(f"{warm[0]:.0f}->{mine[-1][1]:.0f} MB in {mine[-1][0]:.0f} s")
    print(f"server RSS per instance (30 s in -> last): {', '.join(lives)}")
    for inst in range(1, server.instance + 1):  # does it level off or keep growing?
        print(f"server RSS per minute, instance {inst}: {rss_per_minute(server.rss_samples, inst)}")
    if not args.keep and result["lost"] == 0 and result["wrong"] == 0:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"soak: {result['sessions']} sessions, {kills['server'] + kills['client']} kills, "
          f"{result['lost']} frames lost, RSS {rss_a:.1f} -> {rss_b:.1f} MB")


if __name__ == "__main__":
    main()
