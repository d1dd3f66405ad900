"""`meetcap record`: headless capture to a file and/or a meetcap server.

A print loop around :class:`meetcap.session.Recorder`, which holds every session rule
(spool first, then the file; nothing after a failure; one spool per destination).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time

from meetcap.audio.devices import DeviceKind, default_device, find_device, list_devices
from meetcap.audio.events import AudioEvent, AudioEventKind
from meetcap.audio.manager import CaptureSettings
from meetcap.client.status import FinishResult
from meetcap.constants import CAPTURE_SOURCES, FRAMES_PER_SECOND, SOURCE_MIX
from meetcap.dsp.chain import ECHO_AUTO, ECHO_MODES
from meetcap.errors import ConfigError
from meetcap.levels import SourceLevels
from meetcap.session import Recorder, RecorderListener, SessionSettings
from meetcap.session.recorder import DEFAULT_FINISH_TIMEOUT_S
from meetcap.stderr_lock import STDERR_LOCK
from meetcap.transcribe.segments import TranscriptSegment

EXIT_OK = 0
EXIT_FAILED = 2  # the recording stopped early (disk full, spool full): what was kept is whole
EXIT_FRAMES_LEFT = 3  # the server did not confirm everything; the spool keeps the rest


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record", help="record headless until Ctrl-C or --seconds",
        epilog="exit status: 0 recorded (and, with --url, every frame confirmed by the "
               "server); 2 a bad option or device, or the recording stopped early (what "
               "was kept is whole); 3 the server did not confirm every frame in time (the "
               "rest waits in the spool: see `meetcap spool`)",
    )
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
    p.add_argument("--echo-cancel", choices=ECHO_MODES, default=ECHO_AUTO,
                   help="cancel the speakers' echo in the microphone, with the system audio "
                        "as reference: auto (default: on while the speakers reach the mic), "
                        "on, off")
    p.add_argument("--noise-suppress", action="store_true",
                   help="suppress steady noise in the microphone (WebRTC noise suppression)")
    p.add_argument("--seconds", type=float, metavar="N",
                   help="stop after N seconds of captured audio (exactly N*10 frames); "
                        "default: until Ctrl-C")
    p.add_argument("--out", metavar="FILE", help="write a .wav or .flac file")
    p.add_argument("--tracks", action="store_true",
                   help="--out gets two channels: 1 the microphone, 2 the system audio "
                        "(each after gain, echo cancellation and normalisation), 16 kHz; "
                        "with --url, so does the server if it accepts two tracks")
    p.add_argument("--url", help="stream to a meetcap server, e.g. ws://127.0.0.1:8765/v1/stream")
    p.add_argument("--token", help="bearer token for --url")
    p.add_argument("--data-dir", metavar="DIR",
                   help="where the spool of unconfirmed audio lives (default: the user's "
                        "data folder, or $MEETCAP_DATA_DIR)")
    p.add_argument("--transcript", action="store_true",
                   help="with --url: print the server's live transcript, final segments as "
                        "they arrive (the server must run with --transcribe; it finds the "
                        "speech itself, so --vad is not needed; with --vad the segments also "
                        "say who spoke)")
    p.add_argument("--finish-timeout", type=float, default=DEFAULT_FINISH_TIMEOUT_S, metavar="S",
                   help="how long to wait at the end for the server to acknowledge everything")
    p.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace) -> SessionSettings:
    """The session settings from the command line, checked before anything is created:
    DeviceError for an unknown device id, ConfigError for any other bad option."""
    if not args.out and not args.url:
        raise ConfigError("say where the audio goes: --out FILE and/or --url ws://... --token ...")
    if args.url and not args.token:
        raise ConfigError("--url needs --token (the bearer token the server gave you)")
    if args.transcript and not args.url:
        raise ConfigError("--transcript needs --url (the server makes the transcript)")
    if args.seconds is not None and args.seconds <= 0:
        raise ConfigError(f"--seconds must be more than 0, got {args.seconds:g}")
    devices = list_devices()

    def pick(explicit: str | None, skip: bool, kind: DeviceKind) -> str | None:
        if skip:
            return None
        if explicit:
            return find_device(explicit, devices).id
        device = default_device(kind, devices)
        return device.id if device else None

    capture = CaptureSettings(
        mic_device_id=pick(args.mic, args.no_mic, "mic"),
        system_device_id=pick(args.system, args.no_system, "loopback"),
        gain_db={"mic": args.gain_mic, "system": args.gain_system},
        normalize=not args.no_normalize,
        vad=args.vad,  # the server's transcript does not need it (it runs its own)
        vad_model_path=args.vad_model,
        echo_cancel=args.echo_cancel,
        noise_suppress=args.noise_suppress,
        tracks=args.tracks,
    )
    if not any(capture.device_ids()[s] for s in CAPTURE_SOURCES):
        raise ConfigError(
            "nothing to record: no microphone and no system-audio source "
            "(run `meetcap devices` to see what there is)"
        )
    settings = SessionSettings(capture=capture, server_url=args.url or "",
                               token=args.token or "", local_copy=args.out or "",
                               transcribe=args.transcript)
    return settings.validate()


def format_levels(levels: dict[str, SourceLevels]) -> str:
    """One line of levels: RMS in dBFS per source and for the mix, with any problem."""
    parts = []
    for name in ("mic", "system", "mix"):
        lv = levels.get(name)
        if lv is None:
            continue
        state = "" if lv.health.value == "ok" else f" [{lv.health.value}]"
        speech = " speech" if name == "mix" and lv.speech else ""
        # The echo score, once the system audio has played: "echo -15 dB, cancelled".
        echo = ""
        if lv.echo == "reaches the mic":
            echo = (f" [speakers reach the mic, echo {lv.echo_db:.0f} dB"
                    f"{', cancelled' if lv.echo_cancel else ''}]")
        parts.append(f"{name} {lv.rms_dbfs:6.1f} dBFS{state}{speech}{echo}")
    return " | ".join(parts)


class _Printer(RecorderListener):
    """Warnings and problems go to stderr on their own line (levels are on stdout)."""

    def on_audio_event(self, event: AudioEvent) -> None:
        if event.kind is AudioEventKind.HEALTH and (
                event.source == SOURCE_MIX or not (event.health and event.health.is_problem)):
            return  # the mix only echoes its sources' problems
        if event.kind is AudioEventKind.HEALTH:  # "mic is clipping: lower its gain..."
            who = f"{event.source} "
        else:
            who = f"{event.source}: " if event.source else ""
        label = ("note" if event.kind in (AudioEventKind.DEVICE_RESTORED,
                                          AudioEventKind.DEVICE_SWITCHED) else "warning")
        _say(f"{label}: {who}{event.message}")

    def on_problem(self, message: str) -> None:
        _say(f"warning: {message}")

    def on_capture_ended(self, message: str | None) -> None:
        if message is not None:
            _say(f"meetcap: {message}")

    def on_transcript(self, segment: TranscriptSegment) -> None:
        if segment.final:  # partials would scroll the levels away
            print(f"\n{format_segment(segment)}", flush=True)


def format_segment(segment: TranscriptSegment) -> str:
    """``[mm:ss.s - mm:ss.s] text`` on the session's timeline (minor ones marked)."""
    def clock(seconds: float) -> str:
        minutes, rest = divmod(seconds, 60)
        return f"{int(minutes):02d}:{rest:04.1f}"

    minor = " (minor)" if segment.minor else ""
    return f"[{clock(segment.start_s)} - {clock(segment.end_s)}]{minor} {segment.text}"


def _say(line: str) -> None:
    with STDERR_LOCK:  # not while PortAudio re-initialises (it silences fd 2 then)
        print(f"\n{line}", file=sys.stderr, flush=True)


def _portaudio_ready() -> None:
    """Initialise PortAudio here, before the streamer's and capture's threads run: its
    initialisation silences fd 2 for a moment (meetcap.stderr_lock), and a warning
    another thread printed then would be lost. A failure is the capture's to report."""
    with STDERR_LOCK:
        try:
            import sounddevice  # noqa: F401
        except (ImportError, OSError):
            pass


def run(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    _portaudio_ready()
    limit = int(round(args.seconds * FRAMES_PER_SECOND)) if args.seconds else None
    recorder = Recorder(settings, listener=_Printer(), builtin_server=False,
                        data_root=args.data_dir, finish_timeout_s=args.finish_timeout)
    try:
        recorder.start(max_frames=limit)
        _show_levels_until_done(recorder)
        if args.url:
            print(f"\nrecorded {recorder.frames_recorded} frames; waiting for the server to "
                  "confirm every frame...", flush=True)
        result = recorder.stop()
    finally:
        recorder.close()
    return _report(args, recorder, result)


def _show_levels_until_done(recorder: Recorder) -> None:
    """Print levels until Ctrl-C, the frame limit, or a failure ends capture."""
    interrupted = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: interrupted.set())
    tty = sys.stdout.isatty()
    last_print = 0.0
    try:
        while not recorder.capture_ended.is_set() and not interrupted.is_set():
            time.sleep(0.05)
            if time.monotonic() - last_print < (0.2 if tty else 2.0):
                continue
            last_print = time.monotonic()
            seconds = recorder.frames_recorded / FRAMES_PER_SECOND
            if recorder.manager.session_start_time is None:
                line = f"{seconds:7.1f} s  waiting for the devices to deliver audio..."
            else:
                line = f"{seconds:7.1f} s  {format_levels(recorder.levels())}"
            print(f"\r{line}\033[K" if tty else line, end="" if tty else "\n", flush=True)
    finally:
        signal.signal(signal.SIGINT, previous)
        if tty:
            print()


def _report(args: argparse.Namespace, recorder: Recorder, result: FinishResult) -> int:
    frames = recorder.frames_recorded
    print(f"recorded {frames} frames ({frames / FRAMES_PER_SECOND:.1f} s)"
          + (f" to {args.out}" if args.out else ""))
    if recorder.last_corrections_ppm:  # issue 10: on one clock this stays within +-20 ppm
        print("drift correction: " + ", ".join(
            f"{name} {now:+.1f} ppm (at most {peak:.1f})"
            for name, (now, peak) in recorder.last_corrections_ppm.items()))
    code = EXIT_FAILED if recorder.last_failure is not None else EXIT_OK
    if args.url:
        lines = [result.message, *(f"earlier session: {r.message}" for r in result.earlier)]
        ok = result.ok and all(r.ok for r in result.earlier)
        left = result.frames_left + sum(r.frames_left for r in result.earlier)
        if left:  # (not ok with none left: audio the spool lost, named in the messages)
            lines.append(f"{left} frames left in the spool (see `meetcap spool`)")
        print("\n".join(lines))
        code = code or (EXIT_OK if ok else EXIT_FRAMES_LEFT)
    return code
