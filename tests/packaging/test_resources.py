"""The desktop entry and the icons in resources/: what a Linux desktop reads to put
meetcap in its menu and dock."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESOURCES = ROOT / "resources"
DESKTOP_FILE = RESOURCES / "meetcap.desktop"
# The sizes packaging/README.md installs into the hicolor theme.
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive in desktop entries
    parser.read(DESKTOP_FILE, encoding="utf-8")
    return parser["Desktop Entry"]


def project_scripts() -> set[str]:
    """The command names pyproject.toml installs (its [project.scripts] table; read as
    text: tomllib is Python 3.11+, and meetcap supports 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    table = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
    return {line.split("=")[0].strip() for line in table.splitlines() if "=" in line}


def test_the_desktop_entry_passes_desktop_file_validate():
    if shutil.which("desktop-file-validate") is None:
        pytest.skip("desktop-file-validate is not installed (bootstrap.sh test installs it)")
    checked = subprocess.run(["desktop-file-validate", str(DESKTOP_FILE)],
                             capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip(), checked.stdout


def test_the_desktop_entry_starts_the_installed_command_with_its_icon():
    entry = desktop_entry()
    scripts = project_scripts()
    assert entry["Exec"].split()[0] in scripts, "Exec runs the pip-installed command"
    assert entry["Type"] == "Application" and entry["Terminal"] == "false"
    icon = entry["Icon"]
    assert (RESOURCES / "icons" / f"{icon}.svg").is_file()
    for size in ICON_SIZES:
        assert (RESOURCES / "icons" / f"{icon}-{size}.png").is_file(), size


def test_the_icon_files_are_the_images_they_claim_to_be(qapp):
    from PySide6.QtGui import QImage

    for size in ICON_SIZES:
        image = QImage(str(RESOURCES / "icons" / f"meetcap-{size}.png"))
        assert (image.width(), image.height()) == (size, size)
        assert image.hasAlphaChannel()  # round icon on any panel colour
    assert (RESOURCES / "icons" / "meetcap.ico").read_bytes()[:4] == b"\x00\x00\x01\x00"
    assert (RESOURCES / "icons" / "meetcap.icns").read_bytes()[:4] == b"icns"
