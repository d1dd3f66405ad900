"""Entry point of the packaged app (PyInstaller): the window, or a CLI subcommand.

``meetcap`` opens the app (``--smoke-test`` and the other app options work too);
``meetcap devices`` / ``meetcap record ...`` run the command-line tools from the same
bundle.
"""

from __future__ import annotations

import sys

CLI_COMMANDS = ("devices", "record", "-h", "--help")


def run() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] in CLI_COMMANDS:
        from meetcap.cli.main import main as cli_main

        return cli_main(argv)
    from meetcap.gui.app import main as app_main

    return app_main(argv)


if __name__ == "__main__":
    sys.exit(run())
