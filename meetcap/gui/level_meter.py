"""A horizontal level meter: RMS bar, instantaneous peak, peak hold, clip light, dBFS scale.

The widget never reads audio itself. The window's display timer calls
:meth:`LevelMeter.show_levels` with the latest :class:`~meetcap.levels.SourceLevels`
and :meth:`LevelMeter.tick` once per frame; the meter repaints only when something it
shows moved (an idle meter costs nothing). The trough, the scale, the lit bar and the
clip light are drawn once per resize into cached pixmaps, so a repaint is a few blits.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QLinearGradient,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QPixmap,
    QResizeEvent,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from meetcap.gui import theme
from meetcap.gui.ballistics import (
    METER_FLOOR_DBFS,
    SCALE_TICKS_DBFS,
    BallisticsConfig,
    MeterBallistics,
    dbfs_to_fraction,
)
from meetcap.levels import SourceLevels

_CLIP_W = 38
_BAR_X = 0.5
_GAP = 8
_SCALE_POINTS = 7.0  # the dBFS labels under the bar
_TICK_H = 3


class LevelMeter(QWidget):
    """See the module docstring. Click the CLIP light to clear it (``clip_cleared``)."""

    clip_cleared = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        bar_height: int = 14,
        show_scale: bool = True,
        config: BallisticsConfig | None = None,
    ) -> None:
        super().__init__(parent)
        self.ballistics = MeterBallistics(config)
        self._bar_height = bar_height
        self._show_scale = show_scale
        self._pixmaps: tuple[QPixmap, QPixmap, QPixmap, QPixmap] | None = None
        self._hold_color = QColor(theme.PEAK_HOLD)
        self._shown: tuple[int, int, int, bool] | None = None
        self._ratio = 1.0
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(220)
        # Opaque: the meter paints its own background (the card's colour), so a repaint
        # at 30 fps never makes Qt repaint the style-sheet card behind it (that cost
        # more than the meter itself; bench/app_cpu.py).
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self.setToolTip("Level in dBFS: bar = RMS, light part = peak, line = peak hold. "
                        "Click CLIP to clear it.")

    # -- feeding (the window's display timer)

    def show_levels(self, levels: SourceLevels, now_s: float) -> None:
        """Take the latest snapshot (cheap; call at display rate)."""
        self.ballistics.feed(levels.rms_dbfs, levels.peak_dbfs, levels.clip_count, now_s)

    def tick(self, now_s: float) -> bool:
        """Advance the ballistics to ``now_s``; repaints only if a pixel would change."""
        self.ballistics.advance(now_s)
        shown = self._pixels()
        if shown == self._shown:
            return False
        self._shown = shown
        self.update(0, 0, self.width(), self._bar_height + 1)  # the scale never changes
        return True

    def reset(self) -> None:
        """Empty meter, clip light off (a new session)."""
        self.ballistics.reset()
        self._shown = None
        self.update()

    # -- geometry (public for tests and for the strips' layout)

    def bar_rect(self) -> QRectF:
        return QRectF(_BAR_X, 0.5, self._bar_width(), self._bar_height)

    def clip_rect(self) -> QRectF:
        return QRectF(_BAR_X + self._bar_width() + _GAP, 0.5, _CLIP_W - 1.0, self._bar_height)

    def x_for_dbfs(self, dbfs: float) -> float:
        """Where a level ends along the bar, in widget pixels."""
        return _BAR_X + dbfs_to_fraction(dbfs) * self._bar_width()

    def _bar_width(self) -> float:
        return max(10.0, self.width() - _CLIP_W - _GAP - 1.0)

    def _pixels(self) -> tuple[int, int, int, bool]:
        """What a repaint would draw, in whole pixels: (rms end, peak end, hold, clip)."""
        b = self.ballistics
        width = self._bar_width()
        hold = (min(round(_BAR_X + dbfs_to_fraction(b.peak_hold_dbfs) * width), round(width) - 2)
                if b.peak_hold_dbfs > METER_FLOOR_DBFS else -1)
        return (round(dbfs_to_fraction(b.rms_dbfs) * width),
                round(dbfs_to_fraction(b.peak_dbfs) * width), hold, b.clipped)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(420, self._bar_height + (self._scale_height() if self._show_scale else 1))

    def minimumSizeHint(self) -> QSize:  # noqa: N802 - Qt API
        return QSize(220, self.sizeHint().height())

    # -- events

    def mousePressEvent(self, event: QMouseEvent) -> None:  # noqa: N802 - Qt API
        if self.clip_rect().adjusted(-4, -4, 4, 4).contains(event.position()):
            if self.ballistics.clipped:
                self.ballistics.clear_clip()
                self._shown = None
                self.update()
                self.clip_cleared.emit()
            event.accept()
            return
        super().mousePressEvent(event)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt API
        self._pixmaps = None
        self._shown = None
        super().resizeEvent(event)

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: N802 - Qt API
        # Everything that does not move is pre-rendered (see _build_pixmaps): a repaint
        # is a few integer blits. At 30 fps, Python-side painting was most of the GUI
        # thread's CPU (bench/app_cpu.py), so nothing here allocates Qt objects.
        if self._pixmaps is None:
            self._build_pixmaps()
        assert self._pixmaps is not None
        background, lit, dim, clip_on = self._pixmaps
        rms_px, peak_px, hold_x, clipped = self._shown or self._pixels()
        ratio = self._ratio
        height = self._bar_height + 1
        painter = QPainter(self)
        painter.drawPixmap(0, 0, background)
        for pixmap, end in ((dim, peak_px), (lit, rms_px)):
            if end > 0:
                painter.drawPixmap(0, 0, end + 1, height, pixmap, 0, 0,
                                   round((end + 1) * ratio), round(height * ratio))
        if hold_x >= 0:
            painter.fillRect(hold_x - 1, 3, 2, self._bar_height - 4, self._hold_color)
        if clipped:
            painter.drawPixmap(0, 0, clip_on)

    def _new_pixmap(self, fill: QColor | None = None) -> QPixmap:
        ratio = self.devicePixelRatioF()
        pixmap = QPixmap(self.size() * ratio)
        pixmap.setDevicePixelRatio(ratio)
        pixmap.fill(fill if fill is not None else QColor(0, 0, 0, 0))
        return pixmap

    def _build_pixmaps(self) -> None:
        self._ratio = self.devicePixelRatioF()
        bar = self.bar_rect()
        radius = bar.height() / 2
        gradient = QLinearGradient(bar.left(), 0, bar.right(), 0)
        mid = dbfs_to_fraction(-12.0)
        high = dbfs_to_fraction(-3.0)
        gradient.setColorAt(0.0, QColor(theme.METER_LOW).darker(115))
        gradient.setColorAt(mid - 0.03, QColor(theme.METER_LOW))
        gradient.setColorAt(mid + 0.02, QColor(theme.METER_MID))
        gradient.setColorAt(high - 0.01, QColor(theme.METER_MID))
        gradient.setColorAt(high + 0.02, QColor(theme.METER_HIGH))
        gradient.setColorAt(1.0, QColor(theme.METER_HIGH))

        background = self._new_pixmap(QColor(theme.CARD))
        p = QPainter(background)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(theme.CARD_BORDER), 1.0))
        p.setBrush(QBrush(QColor(theme.TROUGH)))
        p.drawRoundedRect(bar, radius, radius)
        if self._show_scale:
            self._paint_scale(p, bar)
        self._paint_clip_light(p, on=False)
        p.end()

        lit = self._new_pixmap()
        dim = self._new_pixmap()
        for pixmap, opacity in ((lit, 1.0), (dim, 0.35)):
            p = QPainter(pixmap)
            p.setRenderHint(QPainter.RenderHint.Antialiasing)
            p.setOpacity(opacity)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QBrush(gradient))
            p.drawRoundedRect(bar, radius, radius)
            p.end()

        clip_on = self._new_pixmap()
        p = QPainter(clip_on)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._paint_clip_light(p, on=True)
        p.end()
        self._pixmaps = (background, lit, dim, clip_on)

    def _scale_font(self) -> QFont:
        font = QFont(self.font())
        font.setPointSizeF(_SCALE_POINTS)
        return font

    def _scale_height(self) -> int:
        """Gap, tick and one line of labels: from the font, so no screen's DPI or font
        clips the labels."""
        return 2 + _TICK_H + QFontMetrics(self._scale_font()).height() + 1

    def _paint_scale(self, p: QPainter, bar: QRectF) -> None:
        p.setFont(self._scale_font())
        metrics = p.fontMetrics()
        top = bar.bottom() + 2
        for db in SCALE_TICKS_DBFS:
            x = self.x_for_dbfs(db)
            p.setPen(QPen(QColor(theme.SCALE_TICK), 1.0))
            p.drawLine(QPointF(x, top), QPointF(x, top + _TICK_H))
            label = f"{db}" if db else "0 dB"
            w = metrics.horizontalAdvance(label)
            lx = min(max(x - w / 2, 0.0), bar.right() - w)
            p.setPen(QColor(theme.TEXT_DIM))
            p.drawText(QPointF(lx, top + _TICK_H + metrics.ascent()), label)

    def _paint_clip_light(self, p: QPainter, *, on: bool) -> None:
        clip = self.clip_rect()
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QBrush(QColor(theme.ERROR if on else theme.LIGHT_OFF)))
        p.drawRoundedRect(clip, 4, 4)
        font = QFont(self.font())
        font.setPointSizeF(6.8)
        font.setBold(True)
        p.setFont(font)
        p.setPen(QColor(theme.PEAK_HOLD if on else theme.LIGHT_OFF_TEXT))
        p.drawText(clip, Qt.AlignmentFlag.AlignCenter, "CLIP")
