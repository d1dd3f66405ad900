"""The mix strip: the meter of what is sent, the speech light, VAD and normalisation."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from meetcap.gui import theme
from meetcap.gui.level_meter import LevelMeter
from meetcap.gui.status_text import describe_mix
from meetcap.gui.widgets import Card, Dot, StatusLabel
from meetcap.levels import SourceLevels


class MixStrip(Card):
    """``vad_toggled(bool)`` / ``normalize_toggled(bool)`` carry a person's changes."""

    vad_toggled = Signal(bool)
    normalize_toggled = Signal(bool)
    tracks_toggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Mix (what is sent)", parent)
        self.status = StatusLabel(self)
        self.header.addWidget(self.status)
        self.meter = LevelMeter(self)
        self.body.addWidget(self.meter)

        row = QHBoxLayout()
        row.setSpacing(18)
        self.speech_light = Dot(self, diameter=11)
        self.speech_label = QLabel("Speech", self)
        self.speech_label.setObjectName("dim")
        speech = QHBoxLayout()
        speech.setSpacing(6)
        speech.addWidget(self.speech_light, 0, Qt.AlignmentFlag.AlignVCenter)
        speech.addWidget(self.speech_label)
        row.addLayout(speech)
        row.addStretch(1)
        self.vad_box = QCheckBox("Detect speech (VAD)", self)
        self.vad_box.setToolTip("Mark each frame as speech or not (Silero VAD)")
        self.normalize_box = QCheckBox("Normalise level", self)
        self.normalize_box.setToolTip("Slow automatic gain towards a steady speech level "
                                      "(the limiter always stays on)")
        self.tracks_box = QCheckBox("Two tracks", self)
        self.tracks_box.setToolTip("The local copy gets two channels: 1 your microphone, 2 the "
                                   "system audio, and so does a server that accepts two "
                                   "tracks (from the next Start)")
        row.addWidget(self.vad_box)
        row.addWidget(self.normalize_box)
        row.addWidget(self.tracks_box)
        self.body.addLayout(row)
        self.vad_box.toggled.connect(self.vad_toggled)
        self.normalize_box.toggled.connect(self.normalize_toggled)
        self.tracks_box.toggled.connect(self.tracks_toggled)
        self.speech = False
        self.refresh_text(SourceLevels("mix"), recording=False)

    def apply_settings(self, vad: bool, normalize: bool, tracks: bool = False) -> None:
        for box, value in (
            (self.vad_box, vad), (self.normalize_box, normalize), (self.tracks_box, tracks)
        ):
            box.blockSignals(True)
            box.setChecked(value)
            box.blockSignals(False)

    def show_levels(self, levels: SourceLevels, now_s: float) -> None:
        self.meter.show_levels(levels, now_s)
        speech = levels.speech and self.vad_box.isChecked()
        if speech != self.speech:
            self.speech = speech
            self.speech_light.set_color(theme.OK if speech else theme.SPEECH_OFF)
            self.speech_label.setObjectName("" if speech else "dim")
            self.speech_label.setStyleSheet(f"color: {theme.OK};" if speech else "")

    def refresh_text(self, levels: SourceLevels, *, recording: bool) -> None:
        self.speech_light.setVisible(self.vad_box.isChecked())
        self.speech_label.setVisible(self.vad_box.isChecked())
        if not self.speech:
            self.speech_light.set_color(theme.SPEECH_OFF)
        self.status.show_line(describe_mix(levels, recording=recording,
                                           vad=self.vad_box.isChecked()))
