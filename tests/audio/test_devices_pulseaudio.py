"""Listing devices and noticing hot-plug on a real PulseAudio server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from meetcap.audio import linux_pulse
from meetcap.audio.devices import default_device, find_device, list_devices
from meetcap.audio.watcher import DeviceChange, DeviceWatcher
from meetcap.errors import DeviceError
from tests.support.pulse import MIC_ID, SYSTEM_ID

# Every test that uses `pulse` runs against PulseAudio and against PipeWire.
pytestmark = pytest.mark.sound_servers("pulseaudio", "pipewire")


def meetcap(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "meetcap", *args], capture_output=True, text=True, timeout=60,
        env=env,
    )


def test_devices_json_lists_virtual_mic_and_speaker_monitor(pulse):
    proc = meetcap("devices", "--json")
    assert proc.returncode == 0, proc.stderr
    devices = {d["id"]: d for d in json.loads(proc.stdout)}
    assert devices[MIC_ID]["kind"] == "mic"
    assert devices[SYSTEM_ID]["kind"] == "loopback"
    assert devices[MIC_ID]["default"] is True and devices[SYSTEM_ID]["default"] is True
    assert devices["pulse:meetcap_mic_sink.monitor"]["default"] is False
    assert all({"id", "name", "kind", "default"} <= d.keys() for d in devices.values())
    # Both null sinks are "Monitor of Null Output": the source name tells them apart.
    assert len({d["name"] for d in devices.values()}) == len(devices)


def test_devices_text_marks_defaults_and_groups_loopback_sources(pulse):
    proc = meetcap("devices")
    assert proc.returncode == 0, proc.stderr
    mics, loopbacks = proc.stdout.split("System audio (loopback):")
    assert f"id: {MIC_ID}" in mics and f"id: {SYSTEM_ID}" in loopbacks
    default_lines = [line for line in proc.stdout.splitlines() if line.startswith(" * ")]
    assert len(default_lines) == 2, proc.stdout


def test_old_pactl_text_output_gives_the_same_devices_as_json(pulse):
    # pactl < 16 has no `-f json`: its C-locale text must give the very same devices.
    def pactl(*args: str) -> str:
        return subprocess.run(["pactl", *args], capture_output=True, text=True, check=True,
                              env={**os.environ, "LC_ALL": "C"}).stdout

    json_info = json.loads(pactl("-f", "json", "info"))
    from_json = linux_pulse.devices_from_pactl(
        json.loads(pactl("-f", "json", "list", "sources")),
        json_info["default_source_name"], json_info["default_sink_name"],
    )
    text_info = linux_pulse.parse_pactl_info_text(pactl("info"))
    from_text = linux_pulse.devices_from_pactl(
        linux_pulse.parse_pactl_sources_text(pactl("list", "sources")),
        text_info["default_source_name"], text_info["default_sink_name"],
    )
    assert from_text == from_json and len(from_json) == 3


def test_without_pactl_the_devices_portaudio_offers_are_listed(pulse, tmp_path):
    # PATH without pactl (python is called by its full path): PortAudio's own ALSA
    # devices, where "pulse" and "default" capture the server's default source.
    env = {k: v for k, v in os.environ.items() if k != "ALSA_CONFIG_PATH"}  # as a fresh login
    proc = meetcap("devices", "--json", env={**env, "PATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    devices = {d["id"]: d for d in json.loads(proc.stdout)}
    assert {"alsa:pulse", "alsa:default"} <= devices.keys()
    assert all(d["kind"] == "mic" for d in devices.values())


def test_pcm_names_are_safe_identifiers_and_distinct():
    names = ['alsa_input.usb-Blue_"Yeti"-00.analog stereo', "a.b", "a_b", "x" * 200]
    pcms = [linux_pulse.pcm_name(n) for n in names]
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", p) for p in pcms)
    assert len(set(pcms)) == len(pcms)
    text = linux_pulse.alsa_config_text(names[:1])
    assert r'device "alsa_input.usb-Blue_\"Yeti\"-00.analog stereo"' in text


def test_an_unknown_device_id_names_the_id_and_how_to_list_devices(pulse):
    with pytest.raises(DeviceError) as err:
        find_device("pulse:no_such_source")
    assert "pulse:no_such_source" in str(err.value) and "meetcap devices" in str(err.value)
    assert default_device("loopback").id == SYSTEM_ID


def test_the_watcher_reports_a_device_plugged_in_and_out_within_a_second(pulse):
    changes: list[tuple[float, DeviceChange]] = []
    seen = threading.Event()

    def on_change(change: DeviceChange) -> None:
        changes.append((time.monotonic(), change))
        seen.set()

    watcher = DeviceWatcher(on_change, interval_s=30.0)  # no polling: OS events only
    watcher.start()
    try:
        assert seen.wait(5) and {d.id for d in changes[0][1].added} >= {MIC_ID, SYSTEM_ID}
        seen.clear()
        plugged_at = time.monotonic()
        pulse.load_sink("meetcap_usb_headset", description="USB_Headset")
        assert seen.wait(5)
        at, change = changes[-1]
        assert [d.id for d in change.added] == ["pulse:meetcap_usb_headset.monitor"]
        assert change.added[0].name == "Monitor of USB_Headset"
        assert change.added[0].kind == "loopback"
        assert at - plugged_at < 1.0
        seen.clear()
        unplugged_at = time.monotonic()
        pulse.unload_sink("meetcap_usb_headset")
        assert seen.wait(5)
        at, change = changes[-1]
        assert [d.id for d in change.removed] == ["pulse:meetcap_usb_headset.monitor"]
        assert at - unplugged_at < 1.0
        assert "pulse:meetcap_usb_headset.monitor" not in {d.id for d in list_devices()}
    finally:
        watcher.stop()


def test_alsa_keeps_the_users_config_and_a_child_does_not_stack_its_parents(monkeypatch):
    monkeypatch.setattr(linux_pulse, "_user_alsa_config_path", None)
    monkeypatch.setenv(
        "ALSA_CONFIG_PATH",
        "/usr/share/alsa/alsa.conf:/home/u/extra.conf:/run/user/0/meetcap-0/alsa-pulse.conf",
    )
    assert linux_pulse.base_alsa_config() == "/usr/share/alsa/alsa.conf:/home/u/extra.conf"
    monkeypatch.setattr(linux_pulse, "_user_alsa_config_path", None)
    monkeypatch.delenv("ALSA_CONFIG_PATH")
    assert linux_pulse.base_alsa_config() == "/usr/share/alsa/alsa.conf"
