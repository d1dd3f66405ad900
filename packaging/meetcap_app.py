"""Entry point of the packaged app (PyInstaller): the same routing as the ``meetcap``
command. ``meetcap`` opens the window (``--smoke-test`` and the other app options work
too); ``meetcap devices`` / ``meetcap record ...`` run the command-line tools from the
same bundle.
"""

import sys

from meetcap.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
