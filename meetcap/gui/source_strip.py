"""One capture source's strip: device picker, gain, mute, meter, numbers and health; the
microphone's strip also shows the echo score and has the echo cancellation switch."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QPushButton, QWidget

from meetcap.audio.devices import AudioDevice, DeviceKind
from meetcap.gui.device_picker import DevicePicker
from meetcap.gui.gain_control import GainControl
from meetcap.gui.level_meter import LevelMeter
from meetcap.gui.status_text import StatusLine, describe_source, format_dbfs
from meetcap.gui.widgets import Card, StatusLabel
from meetcap.levels import Health, SourceLevels

# The echo score in words (meetcap/dsp/echo_score.py verdicts).
ECHO_REACHES = "reaches the mic"
ECHO_CLEAN = "clean"
ECHO_SWITCH_TEXT = "Cancel echo"


def describe_echo(levels: SourceLevels, *, cancel_switch_on: bool) -> StatusLine:
    """The echo line of the microphone's strip: what the score says, and what to do."""
    if levels.health is Health.STOPPED or not levels.echo:
        return StatusLine("idle", "Echo: checked while capturing")
    if levels.echo == ECHO_REACHES:
        what = (f"Your speakers reach the microphone (echo {levels.echo_db:.0f} dB): "
                "use headphones, or keep echo cancellation on")
        if levels.echo_cancel:
            return StatusLine("info", what)
        return StatusLine("warning", what if cancel_switch_on else
                          what.replace("keep echo cancellation on", "turn echo cancellation on"))
    if levels.echo == ECHO_CLEAN:
        return StatusLine("ok", "Echo: clean (the speakers do not reach the microphone)")
    return StatusLine("idle", "Echo: measured once the system audio plays")


class SourceStrip(Card):
    """The controls and meter of ``source`` ("mic" or "system").

    Signals carry what a person did: ``device_picked(source, id | None)``,
    ``gain_changed(source, gain_db)``, ``mute_toggled(source, muted)``. The window feeds
    it levels: :meth:`show_levels` + :meth:`tick` at display rate, :meth:`refresh_text`
    a few times a second.
    """

    device_picked = Signal(str, object)
    gain_changed = Signal(str, float)
    mute_toggled = Signal(str, bool)
    echo_cancel_changed = Signal(str)  # "auto" (switch on) or "off"

    def __init__(self, source: str, title: str, kind: DeviceKind,
                 parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.source = source
        self.health = StatusLabel(self)
        self.header.addWidget(self.health)

        self.picker = DevicePicker(kind, self)
        self.picker.setAccessibleName(f"{title} device")
        self.mute_button = QPushButton("Mute", self)
        self.mute_button.setCheckable(True)
        self.mute_button.setFixedWidth(84)
        self.mute_button.setToolTip(f"Leave {title.lower()} out of the recording")
        row = QHBoxLayout()
        row.setSpacing(10)
        row.addWidget(self.picker, 1)
        row.addWidget(self.mute_button)
        self.body.addLayout(row)

        self.gain = GainControl(self)
        self.body.addWidget(self.gain)
        self.meter = LevelMeter(self)
        self.body.addWidget(self.meter)
        self.numbers = QLabel(self)
        self.numbers.setObjectName("numbers")
        self.numbers.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        numbers_row = QHBoxLayout()
        numbers_row.addWidget(self.numbers, 1)
        self.body.addLayout(numbers_row)
        # The microphone only: the echo score (a line of its own, the full width) and the
        # switch beside the numbers (the system audio is the reference: no echo of its own).
        self.echo_line: StatusLabel | None = None
        self.echo_switch: QCheckBox | None = None
        if source == "mic":
            self.echo_switch = QCheckBox(ECHO_SWITCH_TEXT, self)
            self.echo_switch.setChecked(True)
            self.echo_switch.setToolTip(
                "Remove the speakers' sound from the microphone, using the system audio "
                "as the reference; it runs when the speakers reach the microphone")
            self.echo_switch.toggled.connect(self._on_echo_switch)
            numbers_row.addWidget(self.echo_switch)
            self.echo_line = StatusLabel(self)
            self.body.addWidget(self.echo_line)

        self.picker.device_changed.connect(self._on_device)
        self.gain.gain_db_changed.connect(self._on_gain)
        self.mute_button.toggled.connect(self._on_mute)
        self._numbers_shown: tuple[str, str] | None = None
        self.refresh_text(SourceLevels(source), recording=False)

    # -- settings in

    def apply_settings(self, device_id: str | None, gain_db: float, muted: bool) -> None:
        """Show saved settings (emits nothing)."""
        self.picker.set_current_id(device_id)
        self.gain.set_gain_db(gain_db)
        self.mute_button.blockSignals(True)
        self.mute_button.setChecked(muted)
        self.mute_button.blockSignals(False)
        self._label_mute(muted)

    def apply_echo_cancel(self, mode: str) -> None:
        """Show the saved echo cancellation mode (emits nothing): the switch is on for
        "auto" and "on", off for "off"."""
        if self.echo_switch is not None:
            self.echo_switch.blockSignals(True)
            self.echo_switch.setChecked(mode != "off")
            self.echo_switch.blockSignals(False)

    def set_devices(self, devices: Sequence[AudioDevice]) -> None:
        self.picker.set_devices(devices)

    @property
    def muted(self) -> bool:
        return self.mute_button.isChecked()

    # -- levels in

    def show_levels(self, levels: SourceLevels, now_s: float) -> None:
        self.meter.show_levels(levels, now_s)

    def refresh_text(self, levels: SourceLevels, *, recording: bool) -> StatusLine:
        """Update the numbers and the health line (a few times a second)."""
        shown = (format_dbfs(levels.peak_dbfs), format_dbfs(levels.rms_dbfs))
        # Live numbers whenever capture runs: during a session, and before Start (the
        # preview) so the set-up can be checked.
        if not recording and levels.health is Health.STOPPED:
            shown = ("  -- ", "  -- ")
        if shown != self._numbers_shown:
            self._numbers_shown = shown
            self.numbers.setText(f"peak {shown[0]}   rms {shown[1]}  dBFS")
        line = describe_source(
            levels, user_muted=self.muted, has_device=self.picker.current_id() is not None,
            recording=recording,
        )
        self.health.show_line(line)
        if self.echo_line is not None and self.echo_switch is not None:
            self.echo_line.show_line(
                describe_echo(levels, cancel_switch_on=self.echo_switch.isChecked()))
            text = ECHO_SWITCH_TEXT + (" (cancelling)" if levels.echo_cancel else "")
            if self.echo_switch.text() != text:
                self.echo_switch.setText(text)
        return line

    def _on_device(self, device_id: str | None) -> None:
        self.device_picked.emit(self.source, device_id)

    def _on_gain(self, gain_db: float) -> None:
        self.gain_changed.emit(self.source, gain_db)

    def _on_mute(self, muted: bool) -> None:
        self._label_mute(muted)
        self.mute_toggled.emit(self.source, muted)

    def _on_echo_switch(self, on: bool) -> None:
        self.echo_cancel_changed.emit("auto" if on else "off")

    def _label_mute(self, muted: bool) -> None:
        self.mute_button.setText("Unmute" if muted else "Mute")
