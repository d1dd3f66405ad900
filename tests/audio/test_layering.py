"""The audio package's floors: the imports between meetcap/audio/*.py, read with ast.

The shared types sit at the bottom (base.py), the platform modules import only them,
and the dispatch (devices.py, capture.py) sits on top: no module can be reached from
itself, so no import has to hide inside a function to keep a circle from breaking.
No sound server needed: the source is parsed, and imports run in fresh interpreters.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import meetcap.audio

PACKAGE = "meetcap.audio"
AUDIO_DIR = Path(meetcap.audio.__file__).parent
MODULES = sorted(p.stem for p in AUDIO_DIR.glob("*.py") if p.stem != "__init__")
PLATFORM_MODULES = {"linux_pulse", "windows_wasapi", "macos", "portaudio_list"}
# What a platform module may import from the package: the shared types, the ring, and
# the PortAudio listing (itself a platform module that imports only base), which macOS
# and Linux without pactl list their devices with.
PLATFORM_MAY_IMPORT = {"base", "ringbuffer", "portaudio_list"}


def audio_imports(module: str) -> list[tuple[str, bool]]:
    """The meetcap.audio modules ``module`` imports, each with True when the import sits
    inside a function (module level includes ``if`` blocks such as platform guards)."""
    tree = ast.parse((AUDIO_DIR / f"{module}.py").read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name.removeprefix(f"{PACKAGE}."), nested)
                             for alias in child.names if alias.name.startswith(f"{PACKAGE}."))
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{module}: relative import"
                if child.module == PACKAGE:  # from meetcap.audio import linux_pulse
                    found.extend((alias.name, nested) for alias in child.names)
                elif child.module and child.module.startswith(f"{PACKAGE}."):
                    found.append((child.module.removeprefix(f"{PACKAGE}."), nested))
            visit(child, nested)

    visit(tree, False)
    return found


def import_graph() -> dict[str, set[str]]:
    return {m: {target for target, _ in audio_imports(m)} for m in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that comes back to its start, or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def walk(node: str, path: list[str]) -> list[str] | None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target):], target]
            if target not in state and (cycle := walk(target, [*path, target])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state and (cycle := walk(start, [start])):
            return cycle
    return None


def test_every_import_names_a_module_of_the_package():
    for module, targets in import_graph().items():
        assert targets <= set(MODULES), (module, targets - set(MODULES))


def test_the_audio_package_has_no_import_cycle():
    graph = import_graph()
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    # The check itself finds a circle when there is one.
    assert find_cycle({**graph, "base": {*graph["base"], "devices"}}) is not None


def test_platform_modules_import_only_the_shared_types():
    graph = import_graph()
    for module in PLATFORM_MODULES:
        assert graph[module] <= PLATFORM_MAY_IMPORT, (module, graph[module])
    assert graph["portaudio_list"] <= {"base"}
    assert graph["base"] <= {"ringbuffer"}, "base is the bottom floor"
    assert graph["events"] == set() and graph["ringbuffer"] == set()


def test_no_module_of_the_package_is_imported_inside_a_function():
    late = {(m, target) for m in MODULES for target, nested in audio_imports(m) if nested}
    assert not late, f"imports hidden in functions: {sorted(late)}"


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_every_module_imports_on_its_own():
    for module in ["", *MODULES]:
        run_python(f"import {PACKAGE}{'.' + module if module else ''}")


def test_importing_linux_pulse_leaves_the_environment_alone():
    out = run_python(
        "import os\n"
        "before = dict(os.environ)\n"
        f"import {PACKAGE}.linux_pulse, {PACKAGE}.capture, {PACKAGE}.manager\n"
        "print(dict(os.environ) == before)\n"
    )
    assert out.strip() == "True"


def test_other_systems_import_everything_but_linux_pulse_without_pyaudiowpatch():
    # Everything the audio package imports from outside is loaded first, with the real
    # platform; then sys.platform pretends to be Windows / macOS for the package itself.
    modules = ", ".join(f"{PACKAGE}.{m}" for m in MODULES if m != "linux_pulse")
    for platform in ("win32", "darwin"):
        out = run_python(
            "import sys\n"
            "import numpy, soxr, meetcap.dsp.chain, meetcap.errors, meetcap.levels\n"
            "sys.modules['pyaudiowpatch'] = None  # not installed: any import would fail\n"
            f"sys.platform = {platform!r}\n"
            f"import {modules}\n"
            f"print('{PACKAGE}.linux_pulse' in sys.modules)\n"
        )
        assert out.strip() == "False", platform
