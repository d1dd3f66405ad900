"""Linux: PulseAudio / PipeWire sources, opened through PortAudio's ALSA host API.

Debian's PortAudio sees only the ``pulse`` and ``default`` ALSA devices, which capture
the default source. But an ALSA PCM of ``type pulse`` with ``device "<source>"`` opens
any PulseAudio source, and PortAudio lists every PCM in ALSA's configuration. So we
write one such PCM per source into a private file and point ALSA at it with
``ALSA_CONFIG_PATH`` (ALSA's own config first, ours after), without touching the user's
``~/.asoundrc`` or ``/etc``. Every sink's ``.monitor`` source is what that output plays:
the system audio.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from meetcap.audio.devices import AudioDevice
from meetcap.errors import DeviceError

ALSA_BASE_CONFIG = "/usr/share/alsa/alsa.conf"
PCM_PREFIX = "meetcap_"
_lock = threading.Lock()
_installed_config: str | None = None
# Every source seen in this process keeps its PCM, so a device that is unplugged and
# comes back is still known to PortAudio, and can be reopened without a re-scan.
_known_sources: set[str] = set()
# Streams open right now: PortAudio cannot be re-scanned under them (capture.py counts).
open_streams = 0
_rescan_pending = False


def pcm_name(source_name: str) -> str:
    """A safe ALSA identifier for a PulseAudio source name, stable for the same name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", source_name).strip("_")[:40]
    digest = hashlib.sha1(source_name.encode()).hexdigest()[:8]
    return f"{PCM_PREFIX}{slug}_{digest}"


def _pactl_sources() -> tuple[list[dict], str, str]:
    """Sources as pactl's JSON, plus the default source and sink names."""
    if shutil.which("pactl") is None:
        raise DeviceError(
            "pactl is not installed, so meetcap cannot list PulseAudio/PipeWire sources; "
            "install pulseaudio-utils (Debian/Ubuntu: sudo apt-get install pulseaudio-utils)"
        )
    try:
        out = subprocess.run(
            ["pactl", "-f", "json", "list", "sources"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
        info = json.loads(
            subprocess.run(
                ["pactl", "-f", "json", "info"], capture_output=True, text=True, timeout=5, check=True
            ).stdout
        )
    except (subprocess.SubprocessError, ValueError) as exc:
        raise DeviceError(
            "cannot talk to the PulseAudio/PipeWire sound server (is it running?): "
            f"{exc}"
        ) from exc
    return json.loads(out), info.get("default_source_name", ""), info.get("default_sink_name", "")


def _rate_and_channels(spec: str) -> tuple[int, int]:
    """Parse a sample spec such as 's16le 2ch 44100Hz'."""
    channels = re.search(r"(\d+)ch", spec)
    rate = re.search(r"(\d+)Hz", spec)
    return (int(rate.group(1)) if rate else 48_000, min(int(channels.group(1)), 2) if channels else 1)


def devices_from_pactl(sources: list[dict], default_source: str, default_sink: str) -> list[AudioDevice]:
    """Turn pactl's source list into devices (pure, so it is testable without a server)."""
    devices = []
    for source in sources:
        name = source["name"]
        is_monitor = name.endswith(".monitor") or source.get("properties", {}).get(
            "device.class"
        ) == "monitor"
        rate_hz, channels = _rate_and_channels(source.get("sample_specification", ""))
        devices.append(
            AudioDevice(
                id=f"pulse:{name}",
                name=source.get("description") or name,
                kind="loopback" if is_monitor else "mic",
                default=(name == f"{default_sink}.monitor") if is_monitor else name == default_source,
                host_api="PulseAudio",
                portaudio_name=pcm_name(name),
                rate_hz=rate_hz,
                channels=channels,
            )
        )
    return devices


def alsa_config_text(source_names: list[str]) -> str:
    lines = ["# Written by meetcap: one ALSA PCM per PulseAudio source. Safe to delete.\n"]
    for name in source_names:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(
            f'pcm.{pcm_name(name)} {{\n  type pulse\n  device "{quoted}"\n'
            f'  hint {{ show on description "meetcap {quoted}" }}\n}}\n'
        )
    return "".join(lines)


def _config_dir() -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    path = Path(runtime) / f"meetcap-{os.getuid()}"
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def install_alsa_config(source_names: list[str]) -> bool:
    """Make every source openable by PortAudio; True when PortAudio had to be re-read.

    PortAudio enumerates ALSA devices only when it initialises, so a changed source list
    means re-initialising it. That is only safe with no stream open; callers
    (AudioManager) do it between sessions or when opening a stream.
    """
    global _installed_config, _rescan_pending
    with _lock:
        _known_sources.update(source_names)
        text = alsa_config_text(sorted(_known_sources))
        if text == _installed_config:
            return False
        path = _config_dir() / "alsa-pulse.conf"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        os.environ["ALSA_CONFIG_PATH"] = f"{ALSA_BASE_CONFIG}:{path}"
        first = _installed_config is None
        _installed_config = text
        _rescan_pending = not first or _portaudio_initialized()
    rescan_if_idle()
    return True


def _portaudio_initialized() -> bool:
    import sounddevice as sd

    return bool(sd._initialized)  # noqa: SLF001


def rescan_if_idle() -> None:
    """Re-scan PortAudio's devices if new ones were configured and no stream is open.

    Re-initialising PortAudio under an open stream would kill it, so with streams open
    the re-scan waits for the next call (capture.py calls this before opening a stream).
    """
    global _rescan_pending
    import sounddevice as sd

    with _lock:
        if not _rescan_pending or open_streams > 0:
            return
        _rescan_pending = False
        while sd._initialized:  # noqa: SLF001 - sounddevice's documented way to re-scan
            sd._terminate()  # noqa: SLF001
        sd._initialize()  # noqa: SLF001


def list_devices() -> list[AudioDevice]:
    sources, default_source, default_sink = _pactl_sources()
    devices = devices_from_pactl(sources, default_source, default_sink)
    install_alsa_config([s["name"] for s in sources])
    return devices
