"""The app's icons, drawn with QPainter: one drawing for the window, the tray, the
device list, and the files in resources/ (exported from the same code, so they can
never drift apart).

Regenerate resources/icons/ with ``python -m meetcap.gui.icons resources/icons``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QIcon,
    QImage,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

from meetcap.gui import theme

Draw = Callable[[QPainter, QRectF], None]

# Sizes rendered into a QIcon: the tray picks 16-32, the window 32-256.
_ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)
PNG_SIZES = (16, 32, 48, 64, 128, 256, 512)


def _mic(p: QPainter, r: QRectF, color: QColor, stroke: float) -> None:
    """A microphone glyph in ``r`` (capsule, cradle, stand)."""
    w, h = r.width(), r.height()
    cx = r.center().x()
    capsule = QRectF(cx - 0.17 * w, r.top() + 0.06 * h, 0.34 * w, 0.52 * h)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(color)
    p.drawRoundedRect(capsule, 0.17 * w, 0.17 * w)
    pen = QPen(color, stroke, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap)
    p.setPen(pen)
    p.setBrush(Qt.BrushStyle.NoBrush)
    cradle = QRectF(cx - 0.29 * w, r.top() + 0.22 * h, 0.58 * w, 0.50 * h)
    p.drawArc(cradle, 180 * 16, 180 * 16)
    p.drawLine(QPointF(cx, r.top() + 0.72 * h), QPointF(cx, r.top() + 0.88 * h))
    p.drawLine(QPointF(cx - 0.18 * w, r.top() + 0.9 * h), QPointF(cx + 0.18 * w, r.top() + 0.9 * h))


def _speaker(p: QPainter, r: QRectF, color: QColor, stroke: float) -> None:
    """A loudspeaker with two sound waves (system audio)."""
    w, h = r.width(), r.height()
    x0, cy = r.left() + 0.08 * w, r.center().y()
    body = QPainterPath()
    body.moveTo(x0, cy - 0.14 * h)
    body.lineTo(x0 + 0.18 * w, cy - 0.14 * h)
    body.lineTo(x0 + 0.42 * w, cy - 0.34 * h)
    body.lineTo(x0 + 0.42 * w, cy + 0.34 * h)
    body.lineTo(x0 + 0.18 * w, cy + 0.14 * h)
    body.lineTo(x0, cy + 0.14 * h)
    body.closeSubpath()
    p.setPen(QPen(color, stroke * 0.6, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                  Qt.PenJoinStyle.RoundJoin))
    p.setBrush(color)
    p.drawPath(body)
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.setPen(QPen(color, stroke, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
    for radius in (0.2, 0.36):
        arc = QRectF(x0 + 0.42 * w - radius * w, cy - radius * h, 2 * radius * w, 2 * radius * h)
        p.drawArc(arc, -50 * 16, 100 * 16)


def draw_app(p: QPainter, r: QRectF) -> None:
    """The application icon: a white microphone and level bars on a blue tile."""
    side = min(r.width(), r.height())
    tile = QRectF(r.center().x() - side / 2, r.center().y() - side / 2, side, side)
    tile.adjust(side * 0.04, side * 0.04, -side * 0.04, -side * 0.04)
    gradient = QLinearGradient(tile.topLeft(), tile.bottomRight())
    gradient.setColorAt(0.0, QColor("#4d8dff"))
    gradient.setColorAt(1.0, QColor("#6a3df0"))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(QBrush(gradient))
    p.drawRoundedRect(tile, side * 0.22, side * 0.22)
    s = tile.width()
    _mic(p, QRectF(tile.left() + 0.10 * s, tile.top() + 0.17 * s, 0.44 * s, 0.66 * s),
         QColor("white"), max(1.0, 0.05 * s))
    # Three level bars to the right: "it measures what it records".
    bar_w = 0.065 * s
    p.setPen(Qt.PenStyle.NoPen)
    for i, height in enumerate((0.20, 0.46, 0.30)):
        x = tile.left() + (0.60 + i * 0.115) * s
        bar = QRectF(x, tile.center().y() - height * s / 2, bar_w, height * s)
        p.setBrush(QColor(255, 255, 255, 235 if i != 1 else 255))
        p.drawRoundedRect(bar, bar_w / 2, bar_w / 2)


def _tray(dot: QColor | None) -> Draw:
    def draw(p: QPainter, r: QRectF) -> None:
        side = min(r.width(), r.height())
        _mic(p, QRectF(r.left() + 0.12 * side, r.top() + 0.04 * side, 0.76 * side, 0.92 * side),
             QColor("#e7e9ee"), max(1.0, 0.09 * side))
        if dot is not None:
            p.setPen(QPen(QColor(theme.WINDOW), max(1.0, 0.06 * side)))
            p.setBrush(dot)
            d = 0.44 * side
            p.drawEllipse(QRectF(r.right() - d, r.bottom() - d, d, d))
    return draw


def _glyph(glyph: Callable[[QPainter, QRectF, QColor, float], None], color: str) -> Draw:
    def draw(p: QPainter, r: QRectF) -> None:
        glyph(p, r, QColor(color), max(1.0, 0.08 * min(r.width(), r.height())))
    return draw


DRAWINGS: dict[str, Draw] = {
    "meetcap": draw_app,
    "tray-idle": _tray(None),
    "tray-recording": _tray(QColor(theme.RECORD)),
    "tray-warning": _tray(QColor(theme.WARNING)),
    "mic": _glyph(_mic, theme.TEXT_DIM),
    "speaker": _glyph(_speaker, theme.TEXT_DIM),
}


def render(name: str, size: int) -> QImage:
    """Draw icon ``name`` into a transparent square image of ``size`` pixels."""
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    DRAWINGS[name](painter, QRectF(0, 0, size, size))
    painter.end()
    return image


_cache: dict[str, QIcon] = {}


def icon(name: str) -> QIcon:
    """The icon ``name`` (see :data:`DRAWINGS`) at every usual size. Needs a QGuiApplication."""
    cached = _cache.get(name)
    if cached is None:
        cached = QIcon()
        for size in _ICON_SIZES:
            cached.addPixmap(QPixmap.fromImage(render(name, size)))
        _cache[name] = cached
    return cached


def export(directory: Path) -> list[Path]:
    """Write the app icon as SVG and PNGs (for the .desktop entry, PyInstaller, macOS)."""
    from PySide6.QtSvg import QSvgGenerator

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    svg_path = directory / "meetcap.svg"
    generator = QSvgGenerator()
    generator.setFileName(str(svg_path))
    generator.setSize(QSize(256, 256))
    generator.setViewBox(QRectF(0, 0, 256, 256))
    generator.setTitle("meetcap")
    generator.setDescription("meetcap application icon")
    painter = QPainter(generator)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    draw_app(painter, QRectF(0, 0, 256, 256))
    painter.end()
    written.append(svg_path)
    for size in PNG_SIZES:
        path = directory / f"meetcap-{size}.png"
        render("meetcap", size).save(str(path))
        written.append(path)
    for name, size in (("meetcap.ico", 256), ("meetcap.icns", 512)):  # Windows, macOS
        path = directory / name
        if not render("meetcap", size).save(str(path)):
            raise OSError(f"Qt could not write {path} (image format plugin missing?)")
        written.append(path)
    for name in ("tray-idle", "tray-recording", "tray-warning"):
        path = directory / f"{name}.png"
        render(name, 64).save(str(path))
        written.append(path)
    return written


if __name__ == "__main__":  # pragma: no cover - a developer's tool
    from PySide6.QtGui import QGuiApplication

    _app = QGuiApplication(sys.argv[:1])
    for written_path in export(Path(sys.argv[1] if len(sys.argv) > 1 else "resources/icons")):
        print(written_path)
