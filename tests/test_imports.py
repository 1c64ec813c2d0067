"""How the package's modules import each other: no cycles, downward only, and a command line without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mmolre_cli"

#: The package's rooms from the top down; a module may import its own room's modules and those below it.
LAYERS = (
    ("__main__", "cli"),
    ("tuning",),
    ("ablation", "profiling"),
    ("executors",),
    ("training",),
    ("plugins",),
    ("model",),
    ("data",),
    ("config",),
    ("metrics",),
    ("atomic", "state_files"),
    ("errors",),
)

#: What ``mmolre --help`` must not import: each costs from a tenth of a second to seconds at every keystroke
#: of tab completion.
HEAVY = ("torch", "sklearn", "scipy", "mlflow", "matplotlib", "h5py", "optuna", "ray", "transformers", "soundfile")


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, package: Path, modules: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere: at the top, inside functions, or for type checking.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module, else ``a.b``; the package root
    and a module's own parent packages (which Python has loaded before it) are left out."""
    name = module_name(path, package)
    parent = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                anchor = parent.split(".")[: len(parent.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and target != package.name and not name.startswith(target + "."):
                found.add(target)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module → the package's modules it imports, for every module of ``package``."""
    paths = {module_name(path, package): path for path in package.rglob("*.py")}
    return {name: imports_of(path, package, set(paths)) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every import cycle, as the path from a module back to itself (depth-first; one per back edge)."""
    found, state = [], {}  # state: 1 on the current path, 2 done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                found.append([*path[path.index(target) :], module, target] if target in path else [module, target])
            elif target not in state:
                visit(target, [*path, module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    return found


def layer(module: str) -> int:
    room = module.split(".")[1]
    for depth, rooms in enumerate(LAYERS):
        if room in rooms:
            return depth
    raise AssertionError(f"{module}: mmolre_cli.{room} is in no layer; add it to LAYERS in {Path(__file__).name}")


def test_cycles_finds_a_cycle_through_three_modules():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_of_sees_lazy_type_checking_and_relative_imports(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    for name in ("__init__.py", "a.py", "sub/__init__.py", "sub/b.py"):
        (package / name).write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.sub import b\n"
        "def f():\n    from .sub.b import x\n    import pkg\n"
    )
    assert import_graph(package)["pkg.a"] == {"pkg.sub.b"}


def test_no_module_imports_a_module_that_imports_it_back():
    assert cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    graph = import_graph()
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module != PACKAGE.name  # the root re-exports hookimpl for plugin authors
        for target in targets
        if layer(target) < layer(module)
    )
    assert upward == []


def test_the_command_line_loads_without_heavy_modules():
    """``mmolre --help`` (and a command's help) in a fresh interpreter leaves torch and the rest unimported."""
    script = (
        "import sys\n"
        "from mmolre_cli.cli.app import app\n"
        "for args in (['--help'], ['train', '--help'], ['ablate', '--help'], ['prepare', 'synthetic', '--help']):\n"
        "    try:\n"
        "        app(args, prog_name='mmolre')\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=PACKAGE.parent, check=True
    )
    assert "Usage: mmolre ablate" in result.stdout
    assert result.stdout.splitlines()[-1] == "[]"


def test_a_default_read_in_the_command_body_is_the_one_help_states():
    """``prepare synthetic --emotion-labels`` defaults to None so that its module need not import data.synthetic
    (h5py); its help states the default the command then applies."""
    from typer.testing import CliRunner

    from mmolre_cli.cli.app import app
    from mmolre_cli.data.synthetic import EMOTION_LABELS

    shown = " ".join(CliRunner().invoke(app, ["prepare", "synthetic", "--help"], terminal_width=200).stdout.split())
    assert f"default {EMOTION_LABELS}," in shown
