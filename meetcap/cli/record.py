"""`meetcap record`: headless capture to a file and/or a meetcap server."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable

from meetcap.audio.devices import default_device, find_device, list_devices
from meetcap.audio.filewriter import FrameFileWriter
from meetcap.audio.manager import AudioManager, CaptureSettings
from meetcap.audio.pipeline import (
    EVENT_DEVICE_RESTORED,
    EVENT_DEVICE_SWITCHED,
    EVENT_HEALTH,
    AudioEvent,
)
from meetcap.constants import FRAMES_PER_SECOND
from meetcap.dsp.gain import check_gain_db
from meetcap.errors import ConfigError
from meetcap.frames import Frame
from meetcap.levels import SourceLevels


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help="record headless until Ctrl-C or --seconds")
    p.add_argument("--mic", metavar="ID",
                   help="microphone id (see `meetcap devices`); default: the system default")
    p.add_argument("--system", metavar="ID",
                   help="system-audio id; default: the monitor of the default output")
    p.add_argument("--no-mic", action="store_true", help="do not capture a microphone")
    p.add_argument("--no-system", action="store_true", help="do not capture system audio")
    p.add_argument("--gain-mic", type=float, default=0.0, metavar="DB",
                   help="microphone gain in dB, -inf (off) to +12; default 0")
    p.add_argument("--gain-system", type=float, default=0.0, metavar="DB",
                   help="system-audio gain in dB, -inf (off) to +12; default 0")
    p.add_argument("--vad", action="store_true", help="mark speech in each frame (Silero VAD)")
    p.add_argument("--vad-model", metavar="FILE", help="Silero VAD .onnx file (default: bundled)")
    p.add_argument("--no-normalize", action="store_true",
                   help="leave levels as captured (the limiter stays on)")
    p.add_argument("--seconds", type=float, metavar="N",
                   help="stop after N seconds of captured audio (exactly N*10 frames); "
                        "default: until Ctrl-C")
    p.add_argument("--out", metavar="FILE", help="write a .wav or .flac file")
    p.add_argument("--url", help="stream to a meetcap server, e.g. ws://127.0.0.1:8765/v1/stream")
    p.add_argument("--token", help="bearer token for --url")
    p.add_argument("--finish-timeout", type=float, default=30.0, metavar="S",
                   help="how long to wait at the end for the server to acknowledge everything")
    p.set_defaults(run=run)


class FrameGate:
    """Forwards frames to every consumer until the frame limit (for --seconds).

    If a consumer fails (disk full, spool full), no later frame goes anywhere, so the
    outputs stay gapless, and the capture loop stops and reports ``failure``.
    """

    def __init__(self, consumers: list[Callable[[Frame], None]], limit_frames: int | None) -> None:
        self.consumers = consumers
        self.limit_frames = limit_frames
        self.frames = 0
        self.failure: BaseException | None = None
        self.done = threading.Event()

    def __call__(self, frame: Frame) -> None:
        if self.done.is_set() or (self.limit_frames is not None and frame.seq >= self.limit_frames):
            self.done.set()
            return
        try:
            for consumer in self.consumers:
                consumer(frame)
        except Exception as exc:
            self.failure = exc
            self.done.set()
            raise
        self.frames += 1
        if self.limit_frames is not None and self.frames >= self.limit_frames:
            self.done.set()


def _settings(args: argparse.Namespace) -> CaptureSettings:
    """The capture settings from the command line; DeviceError for an unknown id and
    ConfigError for a bad gain, before anything is created."""
    devices = list_devices()

    def pick(explicit: str | None, skip: bool, kind: str) -> str | None:
        if skip:
            return None
        if explicit:
            return find_device(explicit, devices).id
        device = default_device(kind, devices)  # type: ignore[arg-type]
        return device.id if device else None

    settings = CaptureSettings(
        mic_device_id=pick(args.mic, args.no_mic, "mic"),
        system_device_id=pick(args.system, args.no_system, "loopback"),
        normalize=not args.no_normalize,
        vad_model_path=args.vad_model,
    )
    settings.gain_db.update(
        mic=check_gain_db(args.gain_mic), system=check_gain_db(args.gain_system)
    )
    if not settings.mic_device_id and not settings.system_device_id:
        raise ConfigError(
            "nothing to record: no microphone and no system-audio source "
            "(run `meetcap devices` to see what there is)"
        )
    return settings


def format_levels(levels: dict[str, SourceLevels]) -> str:
    """One line of levels: RMS in dBFS per source and for the mix, with any problem."""
    parts = []
    for name in ("mic", "system", "mix"):
        lv = levels.get(name)
        if lv is None:
            continue
        state = "" if lv.health.value == "ok" else f" [{lv.health.value}]"
        speech = " speech" if name == "mix" and lv.speech else ""
        parts.append(f"{name} {lv.rms_dbfs:6.1f} dBFS{state}{speech}")
    return " | ".join(parts)


def run(args: argparse.Namespace) -> int:
    if not args.out and not args.url:
        raise ConfigError("say where the audio goes: --out FILE and/or --url ws://... --token ...")
    if args.url and not args.token:
        raise ConfigError("--url needs --token (the bearer token the server gave you)")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"--seconds must be more than 0, got {args.seconds:g}")
    settings = _settings(args)
    # Consumers get every frame, in order, on the subscription's delivery thread. To add
    # one, append it here (and its cleanup to ``closers``).
    consumers: list[Callable[[Frame], None]] = []
    closers: list[Callable[[], None]] = []
    writer = FrameFileWriter(args.out) if args.out else None
    if writer:
        closers.append(writer.close)
    streaming = None
    try:
        if args.url:
            from meetcap.client.record_sink import StreamingConsumer

            # The file gets each frame only after the spool took it, so --out holds
            # exactly the frames that were streamed.
            streaming = StreamingConsumer.open(args.url, args.token, tee=writer)
            consumers.append(streaming)
        elif writer:
            consumers.append(writer)
        limit = int(round(args.seconds * FRAMES_PER_SECOND)) if args.seconds else None
        gate = FrameGate(consumers, limit)
        _capture(settings, gate, vad=args.vad)
    finally:
        for close in closers:
            close()
    if gate.failure is not None:
        print(f"meetcap: recording stopped: {gate.failure}", file=sys.stderr)
    print(f"recorded {gate.frames} frames ({gate.frames / FRAMES_PER_SECOND:.1f} s)"
          + (f" to {args.out}" if args.out else ""))
    code = 2 if gate.failure is not None else 0
    if streaming is not None:
        from meetcap.client.record_sink import describe_finish

        print("waiting for the server to confirm every frame...", flush=True)
        finish_code, line = describe_finish(streaming.finish(args.finish_timeout))
        print(line)
        code = code or finish_code
    return code


def _capture(settings: CaptureSettings, gate: FrameGate, *, vad: bool) -> None:
    """Capture into ``gate`` until it is done or Ctrl-C, showing levels meanwhile. Every
    frame captured before the stop has reached the gate when this returns."""
    manager = AudioManager(settings)
    manager.add_event_listener(_print_event)
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    tty = sys.stdout.isatty()
    try:
        subscription = manager.subscribe(gate, vad=vad, name="record")
        try:
            last_print = 0.0
            while not gate.done.is_set() and not interrupted.is_set():
                time.sleep(0.05)
                if time.monotonic() - last_print >= (0.2 if tty else 2.0):
                    last_print = time.monotonic()
                    seconds = gate.frames / FRAMES_PER_SECOND
                    if manager.session_start_time is None:
                        line = f"{seconds:7.1f} s  waiting for the devices to deliver audio..."
                    else:
                        line = f"{seconds:7.1f} s  {format_levels(manager.levels())}"
                    print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)
        finally:
            manager.unsubscribe(subscription)  # flushes the last frames through the gate
    finally:
        manager.close()
        signal.signal(signal.SIGINT, previous)
        if tty:
            print()


def _print_event(event: AudioEvent) -> None:
    """Warnings go to stderr on their own line (the levels line is on stdout)."""
    if event.kind == EVENT_HEALTH and event.health is not None and not event.health.is_problem:
        return
    who = f"{event.source}: " if event.source else ""
    label = "note" if event.kind in (EVENT_DEVICE_RESTORED, EVENT_DEVICE_SWITCHED) else "warning"
    print(f"\n{label}: {who}{event.message}", file=sys.stderr, flush=True)
