"""The meetcap desktop app (PySide6). The only package of meetcap that imports Qt.

Modules, one job each:

* :mod:`.app` - ``main()``: the QApplication, the window, the tray icon.
* :mod:`.session_controller` - owns the AudioManager, the Streamer and the built-in
  server; runs every blocking step off the GUI thread; no widgets.
* :mod:`.local_server` - the built-in server the app streams to when no URL is set.
* :mod:`.main_window` - lays out the panels and drives the two refresh timers.
* :mod:`.source_strip`, :mod:`.mix_strip`, :mod:`.connection_panel`,
  :mod:`.session_panel`, :mod:`.banner` - the panels.
* :mod:`.level_meter`, :mod:`.gain_control`, :mod:`.device_picker` - widgets.
* :mod:`.ballistics`, :mod:`.status_text` - what the widgets show, without Qt.
* :mod:`.settings`, :mod:`.settings_dialog` - QSettings persistence and the dialog.
* :mod:`.icons`, :mod:`.theme` - drawn icons and the dark theme.
"""

from meetcap.gui import qt_compat as _qt_compat

# Before any widget exists: PySide6 6.12.0 on Python < 3.12 would otherwise abort the
# app after a few thousand Qt calls (see qt_compat).
_qt_compat.apply()
