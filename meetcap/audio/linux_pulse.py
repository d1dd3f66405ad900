"""Linux: PulseAudio / PipeWire sources, opened through PortAudio's ALSA host API.

Debian's PortAudio sees only the ``pulse`` and ``default`` ALSA devices, which capture
the default source. But an ALSA PCM of ``type pulse`` with ``device "<source>"`` opens
any PulseAudio source, and PortAudio lists every PCM in ALSA's configuration. So we
write one such PCM per source into a private file and point ALSA at it with
``ALSA_CONFIG_PATH`` (ALSA's own config first, ours after), without touching the user's
``~/.asoundrc`` or ``/etc``. Every sink's ``.monitor`` source is what that output plays:
the system audio.

PortAudio enumerates devices only when it initialises, and re-initialising it kills
every open stream. So a source that appears while a stream is open (a headset plugged
in mid-meeting) has no PortAudio device yet. For that case the file also holds one
*dynamic* PCM whose ``device`` is read from an environment variable when ALSA opens it
(``@func getenv`` is evaluated at every ``snd_pcm_open``): we set the variable and open
that PCM, holding a lock so no other open can change it in between.

Sources are listed with ``pactl -f json`` (PulseAudio >= 16), else by parsing
``pactl list sources`` in the C locale; without pactl, :func:`list_devices` falls back to
whatever PortAudio itself offers.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from meetcap.audio.base import AudioDevice
from meetcap.audio.portaudio_list import list_portaudio_devices
from meetcap.errors import DeviceError

HOST_API = "PulseAudio"
ID_PREFIX = "pulse:"
ALSA_BASE_CONFIG = "/usr/share/alsa/alsa.conf"
CONFIG_FILE_NAME = "alsa-pulse.conf"
PCM_PREFIX = "meetcap_"
DYNAMIC_PCM = "meetcap_dynamic"
DYNAMIC_ENV = "MEETCAP_PULSE_SOURCE"
PACTL_TIMEOUT_S = 5.0
# PipeWire (WirePlumber) moves a stream whose source went away to another source at
# once, with no gap in the blocks (measured here: another sink's monitor 0.09 s after
# the unplug), so "system audio" would record another device until the watcher closes
# it. With this property it ends the stream instead, and the capture is lost at once.
# libpulse reads PULSE_PROP into every context the ALSA pulse plugin opens; PulseAudio
# ignores the property (it moves such a stream to the default source ~1.4 s later).
NO_MOVE_PROPERTY = "node.dont-reconnect=true"

# Guards the ALSA config, PortAudio re-initialisation and every stream open/close: a
# re-scan must never run while another thread is between "resolve the device" and
# "stream counted as open", and the dynamic PCM's variable must not change under an open.
_lock = threading.RLock()
_installed_config: str | None = None
# Every source seen in this process keeps its PCM, so a device that is unplugged and
# comes back is still known to PortAudio and can be reopened without a re-scan.
_known_sources: set[str] = set()
_open_streams = 0
_rescan_pending = False
_pactl_has_json: bool | None = None  # learnt on the first call
_fallback_dir: Path | None = None  # the private config dir when there is no XDG_RUNTIME_DIR
_user_alsa_config_path: str | None = None  # ALSA_CONFIG_PATH as it was before ours


def pcm_name(source_name: str) -> str:
    """A safe ALSA identifier for a PulseAudio source name, stable for the same name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source_name).strip("_")[:40]
    digest = hashlib.sha1(source_name.encode()).hexdigest()[:8]
    return f"{PCM_PREFIX}{slug}_{digest}"


def source_name_of(device: AudioDevice) -> str:
    """The PulseAudio source name behind a ``pulse:`` device id."""
    return device.id.removeprefix(ID_PREFIX)


# --- listing ---------------------------------------------------------------------------


def _pactl(*args: str) -> str:
    """Run pactl in the C locale (its text output is translated otherwise)."""
    proc = subprocess.run(
        ["pactl", *args], capture_output=True, text=True, timeout=PACTL_TIMEOUT_S,
        env={**os.environ, "LC_ALL": "C"},
    )
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, proc.args, proc.stdout, proc.stderr)
    return proc.stdout


def parse_pactl_sources_text(text: str) -> list[dict]:
    """``pactl list sources`` (C locale) as the same dicts ``pactl -f json`` gives.

    Only the fields meetcap reads: name, description, sample_specification, properties
    (and ``monitor_source``, the sink a monitor belongs to).
    """
    sources: list[dict] = []
    current: dict | None = None
    in_properties = False
    for line in text.splitlines():
        if line.startswith("Source #"):
            current = {"properties": {}}
            sources.append(current)
            in_properties = False
        elif current is None or not line.strip():
            continue
        elif line.startswith("\t\t") and in_properties:
            key, _, value = line.strip().partition(" = ")
            current["properties"][key] = value.strip('"')
        elif line.startswith("\t") and not line.startswith("\t\t"):
            key, _, value = line.strip().partition(":")
            key = key.strip().lower().replace(" ", "_")
            in_properties = key == "properties"
            if in_properties:
                continue
            if key == "monitor_of_sink":
                key = "monitor_source"
            current[key] = value.strip()
    return sources


def parse_pactl_info_text(text: str) -> dict[str, str]:
    """``pactl info`` (C locale) as the two keys of ``pactl -f json info`` we read."""
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Default Source":
            info["default_source_name"] = value.strip()
        elif key == "Default Sink":
            info["default_sink_name"] = value.strip()
    return info


def pactl_sources() -> tuple[list[dict], str, str]:
    """Sources as pactl's JSON (or parsed text), plus the default source and sink names.

    Raises DeviceError when the sound server cannot be reached.
    """
    global _pactl_has_json
    try:
        if _pactl_has_json is not False:
            try:
                sources = json.loads(_pactl("-f", "json", "list", "sources"))
                info = json.loads(_pactl("-f", "json", "info"))
                _pactl_has_json = True
            except (subprocess.CalledProcessError, ValueError):
                if _pactl_has_json:  # JSON worked before: the server is the problem
                    raise
                _pactl_has_json = False  # pactl < 16 has no -f json; read its text
        if _pactl_has_json is False:
            sources = parse_pactl_sources_text(_pactl("list", "sources"))
            info = parse_pactl_info_text(_pactl("info"))
    except (subprocess.SubprocessError, ValueError, OSError) as exc:
        detail = getattr(exc, "stderr", "") or exc
        raise DeviceError(
            f"cannot list audio sources: the PulseAudio/PipeWire sound server did not answer "
            f"({str(detail).strip()}); is it running? (`pactl info` should work)"
        ) from exc
    return sources, info.get("default_source_name", ""), info.get("default_sink_name", "")


def _rate_and_channels(spec: str) -> tuple[int, int]:
    """Parse a sample spec such as 's16le 2ch 44100Hz' (we capture at most 2 channels)."""
    channels = re.search(r"(\d+)ch", spec)
    rate = re.search(r"(\d+)Hz", spec)
    return (
        int(rate.group(1)) if rate else 48_000,
        min(int(channels.group(1)), 2) if channels else 1,
    )


def _is_monitor(source: dict) -> bool:
    monitor_of = source.get("monitor_source") or ""
    return (
        source["name"].endswith(".monitor")
        or source.get("properties", {}).get("device.class") == "monitor"
        or monitor_of not in ("", "n/a")
    )


def devices_from_pactl(
    sources: list[dict], default_source: str, default_sink: str
) -> list[AudioDevice]:
    """Turn pactl's source list into devices (pure, so it is testable without a server).

    Monitors are system audio (``loopback``), everything else a microphone. Two sources
    with the same description (two "Monitor of Null Output") get their source name
    added, so a person can tell them apart.
    """
    descriptions = [s.get("description") or s["name"] for s in sources]
    devices = []
    for source, description in zip(sources, descriptions, strict=True):
        name = source["name"]
        monitor = _is_monitor(source)
        rate_hz, channels = _rate_and_channels(source.get("sample_specification", ""))
        devices.append(
            AudioDevice(
                id=f"{ID_PREFIX}{name}",
                name=description if descriptions.count(description) == 1
                else f"{description} ({name})",
                kind="loopback" if monitor else "mic",
                default=name == (f"{default_sink}.monitor" if monitor else default_source),
                host_api=HOST_API,
                portaudio_name=pcm_name(name),
                rate_hz=rate_hz,
                channels=channels,
            )
        )
    return devices


def list_devices() -> list[AudioDevice]:
    """Every PulseAudio/PipeWire source, each made openable through PortAudio.

    Without pactl, the devices PortAudio itself lists (usually just ``pulse`` and
    ``default``: the default source).
    """
    if shutil.which("pactl") is None:
        return list_portaudio_devices(id_prefix="alsa:", loopback_hints=("monitor", "loopback"))
    sources, default_source, default_sink = pactl_sources()
    install_alsa_config([s["name"] for s in sources])
    return devices_from_pactl(sources, default_source, default_sink)


# --- the private ALSA config -----------------------------------------------------------


def _alsa_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def alsa_config_text(source_names: list[str]) -> str:
    """The private ALSA config: one ``type pulse`` PCM per source, plus the dynamic one."""
    parts = [
        "# Written by meetcap: one ALSA PCM per PulseAudio source. Safe to delete.\n",
        f"pcm.{DYNAMIC_PCM} {{\n  type pulse\n"
        f"  device {{ @func getenv vars [ {DYNAMIC_ENV} ] default \"@DEFAULT_SOURCE@\" }}\n"
        f'  hint {{ show on description "meetcap: the source named in ${DYNAMIC_ENV}" }}\n}}\n',
    ]
    for name in source_names:
        parts.append(
            f"pcm.{pcm_name(name)} {{\n  type pulse\n  device {_alsa_string(name)}\n"
            f"  hint {{ show on description {_alsa_string('meetcap ' + name)} }}\n}}\n"
        )
    return "".join(parts)


def _config_dir() -> Path:
    """A directory only we can write: under $XDG_RUNTIME_DIR, else a fresh temp dir."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        path = Path(runtime) / f"meetcap-{os.getuid()}"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_uid == os.getuid():
            return path
    # A shared /tmp: a fixed name could be pre-created by someone else.
    global _fallback_dir
    if _fallback_dir is None:
        _fallback_dir = Path(tempfile.mkdtemp(prefix="meetcap-alsa-"))
    return _fallback_dir


def install_alsa_config(source_names: list[str]) -> bool:
    """Make every source openable by PortAudio; True when the config file changed.

    PortAudio enumerates ALSA devices only when it initialises, so a changed source list
    means re-initialising it, which is only safe with no stream open: it happens now if
    none is, else before the first stream opened once all are closed.
    """
    global _installed_config, _rescan_pending
    with _lock:
        _add_dynamic_env()
        _known_sources.update(source_names)
        text = alsa_config_text(sorted(_known_sources))
        if text == _installed_config:
            return False
        path = _config_dir() / CONFIG_FILE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        os.environ["ALSA_CONFIG_PATH"] = f"{base_alsa_config()}:{path}"
        _installed_config = text
        # sounddevice initialises PortAudio when it is imported: if that happened before
        # our config existed, PortAudio has to read it again.
        _rescan_pending = _rescan_pending or _portaudio_initialized()
        _rescan_if_idle()
    return True


def _add_dynamic_env() -> None:
    """Add the dynamic PCM's variable to the environment (under ``_lock``), before the
    first PCM of ours exists, so before any stream is open: every later open only
    *replaces* the value, which glibc does in place (no realloc of the environment), so a
    concurrent getenv() elsewhere stays safe. Not done on import: importing this module
    changes nothing. The stream property (:data:`NO_MOVE_PROPERTY`) is added then too,
    and never changed after."""
    os.environ.setdefault(DYNAMIC_ENV, "@DEFAULT_SOURCE@")
    properties = os.environ.get("PULSE_PROP", "")
    if NO_MOVE_PROPERTY not in properties:
        os.environ["PULSE_PROP"] = f"{properties} {NO_MOVE_PROPERTY}".strip()


def base_alsa_config() -> str:
    """ALSA's own configuration (which loads /etc/asound.conf and ~/.asoundrc): the
    user's ALSA_CONFIG_PATH if they set one before we did, else the standard file."""
    global _user_alsa_config_path
    if _user_alsa_config_path is None:
        # A meetcap started by meetcap inherits the parent's value: drop its private file.
        inherited = [
            part for part in os.environ.get("ALSA_CONFIG_PATH", "").split(":")
            if part and not (Path(part).name == CONFIG_FILE_NAME
                             and Path(part).parent.name.startswith("meetcap"))
        ]
        _user_alsa_config_path = ":".join(inherited) or ALSA_BASE_CONFIG
    return _user_alsa_config_path


def _portaudio_initialized() -> bool:
    sd = sys.modules.get("sounddevice")
    return bool(sd is not None and sd._initialized)  # noqa: SLF001


def _rescan_if_idle() -> None:
    global _rescan_pending
    if not _rescan_pending or _open_streams > 0:
        return
    import sounddevice as sd

    _rescan_pending = False
    from meetcap.stderr_lock import STDERR_LOCK

    while sd._initialized:  # noqa: SLF001 - sounddevice's documented way to re-scan
        sd._terminate()  # noqa: SLF001
    with STDERR_LOCK:  # fd 2 goes to /dev/null meanwhile: no line may be printed then
        sd._initialize()  # noqa: SLF001


@contextmanager
def stream_slot(device: AudioDevice) -> Iterator[int]:
    """Hold while opening a PortAudio stream on a PulseAudio device.

    Yields the PortAudio device index to open. If the body returns, the stream counts
    as open until :func:`release_stream`; if it raises, nothing is counted. The caller
    must create the stream inside the ``with`` (the dynamic PCM reads its variable then).
    """
    global _open_streams
    import sounddevice as sd

    with _lock:
        _add_dynamic_env()
        _rescan_if_idle()
        names = {info["name"]: index for index, info in enumerate(sd.query_devices())
                 if info["max_input_channels"] > 0}
        if device.portaudio_name in names:
            index = names[device.portaudio_name]
        elif DYNAMIC_PCM in names:
            # The source appeared after PortAudio was initialised and streams are open.
            os.environ[DYNAMIC_ENV] = source_name_of(device)
            index = names[DYNAMIC_PCM]
        else:
            raise DeviceError(
                f"PortAudio does not offer {device.name!r} ({device.id}): "
                "close other audio captures and try again"
            )
        yield index
        _open_streams += 1


@contextmanager
def output_slot() -> Iterator[None]:
    """Hold while opening a PortAudio output stream (playback of a stored session). If
    the body returns, the stream counts as open until :func:`release_stream`, so no
    device re-scan terminates PortAudio under it."""
    global _open_streams
    with _lock:
        _rescan_if_idle()
        yield
        _open_streams += 1


def release_stream() -> None:
    """A stream opened under :func:`stream_slot` or :func:`output_slot` was closed."""
    global _open_streams
    with _lock:
        _open_streams -= 1
        _rescan_if_idle()


# --- change notifications --------------------------------------------------------------


class PulseEvents:
    """Calls ``on_change`` (on its own thread) soon after a source or sink comes or goes,
    or the server's defaults change: ``pactl subscribe``, read line by line.

    Far quicker than polling: PulseAudio moves the stream of a removed source to the
    default source about 1.5 s later (measured here), and from then on that stream
    delivers the wrong device's audio; the watcher must close it before.
    Call :meth:`stop` to end the pactl process.
    """

    _INTERESTING = re.compile(r"Event '(new|remove)' on (source|sink) |Event 'change' on server")

    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._proc = subprocess.Popen(
            ["pactl", "subscribe"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, env={**os.environ, "LC_ALL": "C"},
        )
        self._thread = threading.Thread(target=self._read, name="meetcap-pactl-events",
                                         daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            if self._INTERESTING.search(line):
                self._on_change()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.terminate()
        self._proc.wait(timeout=5)
        self._thread.join(timeout=5)  # the pipe is at EOF now
        if self._proc.stdout is not None:
            self._proc.stdout.close()
