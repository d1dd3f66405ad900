"""Start-up of the simulated-platform tests (tests/platform/simulate.py): with
MEETCAP_SIMULATE_OS set and this folder on PYTHONPATH, Python simulates that system
before it runs anything else. Outside those tests this file is never on the path."""

import os

if os.environ.get("MEETCAP_SIMULATE_OS"):
    from tests.platform.simulate import simulate

    simulate(os.environ["MEETCAP_SIMULATE_OS"])
