"""Work around a reference-count bug of PySide6 6.12.0 on Python < 3.12.

Measured here (PySide6-Essentials 6.12.0 abi3 wheel, CPython 3.11.7): every call of a
Qt method that returns nothing (``QPainter.setBrush``, ``QTimer.setInterval``,
``QSize.setWidth``, ...) *decrements* the reference count of ``None`` instead of leaving
it alone: the binding returns ``None`` without taking a reference, which is only
harmless where ``None`` is immortal (PEP 683, Python 3.12+). On 3.11 the count reaches
zero after a few thousand calls and the interpreter aborts ("Fatal Python error:
none_dealloc"): a meter repainting at 60 fps killed the app within ~10 s.

The fix does what Python 3.12 does: it makes ``None`` effectively immortal in this
process, by adding 2**40 to its reference count once (``None`` is a static singleton
that is never freed anyway; the bug would need ~10**12 more calls to matter). It is
applied only when the leak is measured, so on fixed versions it does nothing.
Installing a PySide6 without the bug (or Python >= 3.12) is the real cure; see
packaging/README.md.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_PROBE_CALLS = 64
_PIN = 1 << 40
_applied = False


def leaks_none_references() -> bool:
    """True when void Qt calls drop references to ``None`` (measured, not guessed)."""
    if sys.version_info >= (3, 12):
        return False  # None is immortal there: nothing can go wrong
    from PySide6.QtCore import QSize

    size = QSize()
    before = sys.getrefcount(None)
    for _ in range(_PROBE_CALLS):
        size.setWidth(1)
    # Other threads may move the count a little; the bug moves it by one per call.
    return sys.getrefcount(None) <= before - _PROBE_CALLS // 2


def apply() -> bool:
    """Protect this process from the bug if this PySide6 has it; True if applied."""
    global _applied
    if _applied:
        return True
    if not leaks_none_references():
        return False
    ctypes.c_ssize_t.from_address(id(None)).value += _PIN
    _applied = True
    import PySide6

    log.info("PySide6 %s leaks references to None on Python %d.%d: None pinned "
             "(see meetcap/gui/qt_compat.py)", PySide6.__version__, *sys.version_info[:2])
    return True
