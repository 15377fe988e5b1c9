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
    "fomm_lab.engine": 2, "fomm_lab.faces": 2,
    "fomm_lab.hub": 3,
    "fomm_lab.io": 4,
    "fomm_lab.errors": 5, "fomm_lab.geometry": 5, "fomm_lab.device": 5,
}
ALLOWED_UPWARDS = {
    # (importer, imported): a deliberate, lazy exception, with the reason
    ("fomm_lab.hub.download", "fomm_lab.engine.checkpoint"): "verifying a downloaded checkpoint reads it",
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


def imports(path: Path, module: str) -> set[str]:
    """fomm_lab modules imported by ``path`` (relative imports resolved), anywhere in the file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("fomm_lab"):
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("fomm_lab"))
    known = set(modules())
    return {name for name in found if name in known}


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
            if layer(target) < layer(module) and (module, target) not in ALLOWED_UPWARDS and module != "fomm_lab":
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
