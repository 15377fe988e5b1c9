"""The package layout shows the stages and its imports point one way; lint and types are clean."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fomm_lab"

LAYERS = {
    # a module may import from its own layer and the layers below it (higher number = lower layer)
    "fomm_lab.cli": 0, "fomm_lab.lab": 0, "fomm_lab.train": 0, "fomm_lab.__main__": 0,
    "fomm_lab.pipeline": 1, "fomm_lab.live": 1,
    "fomm_lab.engine": 2, "fomm_lab.faces": 2, "fomm_lab.enhance": 2, "fomm_lab.swap": 2,
    "fomm_lab.hub": 3,
    "fomm_lab.io": 4,
    "fomm_lab.errors": 5, "fomm_lab.geometry": 5, "fomm_lab.device": 5,
}
FORBIDDEN = {
    # (importer prefix, imported prefix): imports that the layers above allow but the design does not, with why
    ("fomm_lab.engine.nets", "fomm_lab.engine.fast"):
        "the networks as the papers define them know nothing of the speed rewrites (engine.fast rewrites them)",
}


def modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def layer(module: str) -> int:
    best = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len,
               default=None)
    if best is None:
        return 1 if module == "fomm_lab" else 5
    return LAYERS[best]


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST, *, runtime: bool) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under ``tree``, at any depth (functions included); ``runtime``: without those
    under ``if TYPE_CHECKING:``, which never run."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        children = list(ast.iter_child_nodes(node))
        if runtime and _is_type_checking(node):
            assert isinstance(node, ast.If)
            children = list(node.orelse)
        pending.extend(children)
    return found


def imports(path: Path, module: str, *, runtime: bool = False) -> set[str]:
    """fomm_lab modules imported by ``path`` (relative imports resolved), anywhere in the file (``runtime``: only
    the imports that can run, i.e. not those under ``if TYPE_CHECKING:``)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    known = set(modules())
    found = set()
    for node in _import_nodes(ast.parse(path.read_text()), runtime=runtime):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("fomm_lab"):
                submodules = {f"{target}.{alias.name}" for alias in node.names} & known
                found.update(submodules)
                if len(submodules) < len(node.names):  # names defined by the module (or package file) itself
                    found.add(target)
        else:
            found.update(alias.name for alias in node.names if alias.name.startswith("fomm_lab"))
    return {name for name in found if name in known}


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def import_graph(*, runtime: bool) -> dict[str, set[str]]:
    """module -> the fomm_lab modules it imports (top level and inside functions). The package files Python runs on
    the way to a module are not edges of their own: a package importing its submodules is the normal case."""
    return {module: imports(path, module, runtime=runtime) - {module} for module, path in module_files().items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as its path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def test_find_cycle_reports_the_path():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycles_function_level_ones_included():
    """No module imports, at top level or inside a function, one that imports it back (directly or further
    round). Imports under ``if TYPE_CHECKING:`` never run, so they are left out: they only name types."""
    cycle = find_cycle(import_graph(runtime=True))
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_forbidden_imports_inside_a_layer():
    wrong = [f"{module} imports {target}: {why}" for module, targets in import_graph(runtime=False).items()
             for target in targets for (importer, imported), why in FORBIDDEN.items()
             if (module + ".").startswith(importer + ".") and (target + ".").startswith(imported + ".")]
    assert wrong == []


def test_every_module_imports_in_a_fresh_interpreter():
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    for name in modules():  # one interpreter per module: an import cycle cannot hide behind another import
        result = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
        assert result.returncode == 0, f"{name}: {result.stderr[-800:]}"


def test_imports_point_from_shells_to_stages_to_the_base():
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        for target in imports(path, module):
            if layer(target) < layer(module) and module != "fomm_lab":
                wrong.append(f"{module} imports {target}")
    assert wrong == []


def test_the_command_line_starts_without_torch():
    code = "import sys\nimport fomm_lab, fomm_lab.cli, fomm_lab.pipeline\nprint('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.strip() == "False", result.stderr


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: it comes with the test extras (pip install -e '.[test]')")
    return found


def test_ruff_is_clean():
    result = subprocess.run([tool("ruff"), "check", "fomm_lab", "tests", "benchmarks"], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_is_clean():
    result = subprocess.run([tool("mypy"), "fomm_lab"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
