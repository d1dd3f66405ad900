"""The app's dark theme: one palette, one style sheet, named colours for painted widgets."""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

# Named colours: painted widgets (meters, LEDs, icons) use these, so the look is one.
WINDOW = "#15171c"
CARD = "#1e222a"
CARD_BORDER = "#2a303b"
TROUGH = "#0f1115"
TEXT = "#e7e9ee"
TEXT_DIM = "#97a0b0"
ACCENT = "#4d8dff"
OK = "#3ccf8e"
INFO = "#7aa7ff"
WARNING = "#f4b63f"
ERROR = "#f05252"
RECORD = "#e5484d"
METER_LOW = "#35c97a"  # up to -12 dBFS: a healthy speaking level
METER_MID = "#e9c93b"  # -12 .. -3 dBFS: loud
METER_HIGH = "#ef5350"  # above -3 dBFS: too hot
PEAK_HOLD = "#ffffff"  # the peak-hold line and a lit clip light's "C"
SCALE_TICK = "#4a5160"  # dBFS ticks under a meter
LIGHT_OFF = "#2a2f39"  # an unlit clip light
LIGHT_OFF_TEXT = "#5f6675"  # the "C" on an unlit clip light; disabled text
SPEECH_OFF = "#3a404c"  # the speech light when nobody speaks

SEVERITY_COLORS = {
    "idle": TEXT_DIM,
    "ok": OK,
    "info": INFO,
    "warning": WARNING,
    "error": ERROR,
}

_STYLE_SHEET = f"""
QWidget {{ color: {TEXT}; }}
QMainWindow, QDialog {{ background: {WINDOW}; }}
QFrame#card {{
    background: {CARD}; border: 1px solid {CARD_BORDER}; border-radius: 10px;
}}
QLabel#cardTitle {{
    color: {TEXT_DIM}; font-size: 8.5pt; font-weight: 600; letter-spacing: 1px;
}}
QLabel#dim {{ color: {TEXT_DIM}; }}
QLabel#numbers {{ color: {TEXT_DIM}; font-family: "DejaVu Sans Mono", monospace; }}
QLabel#elapsed {{
    font-family: "DejaVu Sans Mono", monospace; font-size: 17pt; font-weight: 600;
}}
QLabel#appTitle {{ font-size: 14pt; font-weight: 700; }}
QComboBox, QLineEdit {{
    background: {TROUGH}; border: 1px solid {CARD_BORDER}; border-radius: 6px;
    padding: 5px 8px; selection-background-color: {ACCENT};
}}
QComboBox:focus, QLineEdit:focus {{ border-color: {ACCENT}; }}
QComboBox::drop-down {{ border: none; width: 22px; }}
QComboBox QAbstractItemView {{
    background: {CARD}; border: 1px solid {CARD_BORDER}; selection-background-color: {ACCENT};
    outline: none;
}}
QPushButton {{
    background: #2a303b; border: 1px solid #353c49; border-radius: 6px; padding: 6px 14px;
}}
QPushButton:hover {{ background: #323947; }}
QPushButton:pressed {{ background: #252a34; }}
QPushButton:disabled {{ color: #5f6675; background: #22262e; }}
QPushButton:checked {{ background: #4a2a2d; border-color: {ERROR}; color: #ffd9d9; }}
QPushButton#record {{
    background: {RECORD}; border: none; color: white; font-weight: 700; font-size: 11pt;
    padding: 9px 22px; border-radius: 8px;
}}
QPushButton#record:hover {{ background: #f0595e; }}
QPushButton#record[recording="true"] {{ background: #3a3f4b; color: {TEXT}; }}
QPushButton#record[recording="true"]:hover {{ background: #454b59; }}
QPushButton#record:disabled {{ background: #3a3f4b; color: #8a91a0; }}
QSlider::groove:horizontal {{ height: 4px; background: {TROUGH}; border-radius: 2px; }}
QSlider::sub-page:horizontal {{ background: {ACCENT}; border-radius: 2px; }}
QSlider::handle:horizontal {{
    background: {TEXT}; width: 14px; height: 14px; margin: -6px 0; border-radius: 7px;
}}
QSlider::handle:horizontal:hover {{ background: white; }}
QCheckBox {{ spacing: 7px; }}
QToolTip {{ background: {CARD}; color: {TEXT}; border: 1px solid {CARD_BORDER}; }}
"""


def apply_theme(app: QApplication) -> None:
    """Fusion style with the dark palette and style sheet (same look on every OS)."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, color in (
        (QPalette.ColorRole.Window, WINDOW),
        (QPalette.ColorRole.WindowText, TEXT),
        (QPalette.ColorRole.Base, TROUGH),
        (QPalette.ColorRole.AlternateBase, CARD),
        (QPalette.ColorRole.Text, TEXT),
        (QPalette.ColorRole.Button, "#2a303b"),
        (QPalette.ColorRole.ButtonText, TEXT),
        (QPalette.ColorRole.Highlight, ACCENT),
        (QPalette.ColorRole.HighlightedText, "#ffffff"),
        (QPalette.ColorRole.ToolTipBase, CARD),
        (QPalette.ColorRole.ToolTipText, TEXT),
        (QPalette.ColorRole.PlaceholderText, TEXT_DIM),
    ):
        palette.setColor(role, QColor(color))
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(LIGHT_OFF_TEXT))
    palette.setColor(
        QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(LIGHT_OFF_TEXT)
    )
    app.setPalette(palette)
    font = QFont(app.font())
    font.setPointSizeF(max(font.pointSizeF(), 9.5))
    app.setFont(font)
    app.setStyleSheet(_STYLE_SHEET)
