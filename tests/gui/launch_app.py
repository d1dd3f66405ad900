"""Run the real app (``meetcap --smoke-test``) with the device watcher forced to be
faster or slower than the window, for tests/gui/test_app_launch.py.

    python tests/gui/launch_app.py fast|slow [meetcap app options...]

fast: the watcher has listed the devices, and its thread runs, before the window is
      built (the order that crashed one launch in eight: issue 8).
slow: every listing waits SLOW_LISTING_S first, so the devices arrive long after the
      window is shown.

Only the order is forced: the app, the watcher and PulseAudio are the real ones. At the
end of the smoke test it prints what each device picker holds.
"""

from __future__ import annotations

import sys
import time

SLOW_LISTING_S = 0.8


def main() -> int:
    order, argv = sys.argv[1], sys.argv[2:]
    from meetcap.audio.watcher import DeviceWatcher
    from meetcap.cli.main import main as meetcap_main
    from meetcap.gui import app
    from meetcap.gui.session_controller import SessionController

    if order == "fast":
        original_init = SessionController.__init__

        def init_then_list(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            self.watcher.poll()  # the list is there before the window exists
            self.start_services()  # and the watcher thread signals into an unbuilt window

        SessionController.__init__ = init_then_list
    elif order == "slow":
        original_poll = DeviceWatcher.poll

        def slow_poll(self):
            time.sleep(SLOW_LISTING_S)
            return original_poll(self)

        DeviceWatcher.poll = slow_poll
    else:
        raise SystemExit(f"order must be fast or slow, not {order!r}")

    original_end = app._end_smoke_test

    def report_devices_then_end(window):
        for source, strip in window.strips.items():
            print(f"picker {source}: {strip.picker.current_id()} "
                  f"({strip.picker.count()} entries)", flush=True)
        original_end(window)

    app._end_smoke_test = report_devices_then_end
    return meetcap_main(argv)


if __name__ == "__main__":
    sys.exit(main())
