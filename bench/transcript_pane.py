"""What one more segment costs the transcript pane in a long meeting, beside a naive pane.

    python bench/transcript_pane.py [--lines 5000]

The pane (meetcap/gui/transcript_view.py) edits its document only at the end: a final
is one new block, a partial replaces the last block. The peer is the obvious way to
write it: keep the lines in a list and re-set the whole text on every segment. Both are
fed the same stream (a partial, another partial, then its final, per line) in the same
run, on the Qt offscreen platform, with the widget shown and laid out, and timed (wall
clock, best of 3) over the last 30 segments after 100 lines and after ``--lines``.

The last line reads ``transcript pane: <a> ms per segment at <N> lines (<b> ms at 100),
naive re-render <c> ms (<r>x slower)``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtWidgets import QApplication, QPlainTextEdit  # noqa: E402

from meetcap.gui.transcript_view import TranscriptView, segment_line  # noqa: E402
from meetcap.transcribe.segments import TranscriptSegment  # noqa: E402

MEASURED = 30


def stream(first: int, count: int):
    """Per line: two partials, then the final (as the server sends them)."""
    for i in range(first, first + count):
        text = f"line {i}: we talked about the budget and the plan for the next quarter"
        yield TranscriptSegment(i, i * 4.0, i * 4.0 + 1.0, text[:20], False)
        yield TranscriptSegment(i, i * 4.0, i * 4.0 + 2.0, text[:40], False)
        yield TranscriptSegment(i, i * 4.0, i * 4.0 + 3.5, text, True)


class NaiveView(QPlainTextEdit):
    """The peer: the whole text set again on every segment."""

    def __init__(self) -> None:
        super().__init__()
        self.setReadOnly(True)
        self.lines: list[str] = []
        self.partial = ""

    def add_segment(self, segment: TranscriptSegment) -> None:
        when, speaker, text = segment_line(segment)
        line = f"{when}  {text}"
        if segment.final:
            self.lines.append(line)
            self.partial = ""
        else:
            self.partial = line + " …"
        self.render()

    def preload(self, segments) -> None:
        """The lines before the measurement, set at once (one by one is quadratic)."""
        self.lines += [f"{w}  {t}" for w, _, t in map(segment_line, segments) if w]
        self.render()

    def render(self) -> None:
        self.setPlainText("\n".join(self.lines + ([self.partial] if self.partial else [])))
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())


def ms_per_segment(app: QApplication, make, lines: int) -> float:
    best = float("inf")
    for _ in range(3):
        view = make()
        view.resize(700, 400)
        view.show()
        history = [s for s in stream(0, lines) if s.final]
        if isinstance(view, NaiveView):
            view.preload(history)
        else:
            for segment in history:
                view.add_segment(segment)
        app.processEvents()
        segments = list(stream(lines, MEASURED // 3))
        start = time.perf_counter()
        for segment in segments:
            view.add_segment(segment)
            app.processEvents()  # layout and paint, as the event loop would
        best = min(best, (time.perf_counter() - start) * 1000 / len(segments))
        view.close()
        view.deleteLater()
        app.processEvents()
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=5000)
    args = parser.parse_args()
    app = QApplication.instance() or QApplication([])
    pane_small = ms_per_segment(app, TranscriptView, 100)
    pane_big = ms_per_segment(app, TranscriptView, args.lines)
    naive_small = ms_per_segment(app, NaiveView, 100)
    naive_big = ms_per_segment(app, NaiveView, args.lines)
    print(f"  naive re-render: {naive_big:.2f} ms per segment at {args.lines} lines "
          f"({naive_small:.2f} ms at 100)")
    print(f"transcript pane: {pane_big:.2f} ms per segment at {args.lines} lines "
          f"({pane_small:.2f} ms at 100), naive re-render {naive_big:.2f} ms "
          f"({naive_big / max(pane_big, 1e-6):.0f}x slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
