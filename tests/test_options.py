"""The one table of options: every remedy names a field of it, the job's defaults are its defaults, and the
``animate`` flags are generated from it."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from fomm_lab import options
from fomm_lab.cli.parser import build_parser
from fomm_lab.errors import FommLabError, Remedy, python_words
from fomm_lab.pipeline import AnimateJob, CropOptions, MotionOptions, OutputOptions, RuntimeOptions

PACKAGE = Path(__file__).resolve().parents[1] / "fomm_lab"


def remedy_fields() -> list[tuple[str, str]]:
    """(file:line, field) of every ``Remedy(text, "field", ...)`` written in the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Remedy" and len(node.args) >= 2:
                field = node.args[1]
                assert isinstance(field, ast.Constant), f"{path}:{node.lineno}: a remedy's field must be a literal"
                found.append((f"{path.name}:{node.lineno}", field.value))
    return found


def test_every_remedy_names_an_option_of_the_table():
    fields = remedy_fields()
    assert len(fields) > 20  # the scan finds the package's remedies
    unknown = [(where, field) for where, field in fields if field not in {o.field for o in options.OPTIONS}]
    assert unknown == []


def test_a_typo_in_a_remedy_fails_where_it_is_written():
    with pytest.raises(KeyError, match="crop.sorce"):
        Remedy("use the whole photo ({})", "crop.sorce", False)


@pytest.mark.parametrize("cls,owner", [(MotionOptions, "motion"), (CropOptions, "crop"), (OutputOptions, "output"),
                                       (RuntimeOptions, "runtime")])
def test_the_job_takes_its_defaults_from_the_table(cls, owner):
    for f in dataclasses.fields(cls):
        assert f.default == options.default(f"{owner}.{f.name}"), f.name


def test_job_level_defaults_come_from_the_table():
    job = AnimateJob(source=Path("a.png"), driving=Path("b.mp4"))
    for name in ("model", "checkpoint", "random_weights", "cache_dir", "strict"):
        assert getattr(job, name) == options.default(name)


def test_the_animate_flags_are_the_tables():
    parser = build_parser()
    animate = parser._subparsers._group_actions[0].choices["animate"]
    flags = {s for action in animate._actions for s in action.option_strings}
    ours = options.options_of("animate")
    table = {o.flag for o in ours} | {flag for o in ours for flag, _ in o.extra_flags}
    negations = {"--no-" + o.flag[2:] for o in ours if o.negatable and o.flag}
    own = {"-h", "--help", "--debug", "-v", "--verbose", "-q", "--quiet", "--source", "--driving"}
    assert flags == table | negations | own


@pytest.mark.parametrize("field,value,cli,notebook,python", [
    ("crop.source", False, "--no-crop-source", "set CROP_SOURCE = False in the parameters cell",
     "CropOptions(source=False)"),
    ("motion.best_frame", 3, "--best-frame 3", "set BEST_FRAME = 3 in the parameters cell",
     "MotionOptions(best_frame=3)"),
    ("runtime.compile", False, "without --compile", None, "RuntimeOptions(compile=False)"),
    ("crop.faces", "all", "--multi-face", None, "CropOptions(faces='all')"),
    ("model", "vox-256", "--config vox-256", "set CONFIG = 'vox-256' in the parameters cell",
     "load_model('vox-256'), or AnimateJob(model='vox-256')"),
])
def test_each_shell_words_an_option_from_the_one_table(field, value, cli, notebook, python):
    assert options.cli_words(field, value) == cli
    assert options.notebook_words(field, value) == notebook
    assert options.python_words(field, value) == python


def test_an_error_renders_its_remedy_in_each_shells_words():
    from fomm_lab.cli import render_error
    from fomm_lab.lab.notebook import notebook_words

    error = FommLabError("no face in photo.png", remedies=[Remedy("animate the whole photo ({})", "crop.source", False)])
    assert "--no-crop-source" in render_error(error)
    assert "CROP_SOURCE = False" in error.render(notebook_words)
    assert "CropOptions(source=False)" in error.render(python_words)


def test_every_notebook_word_is_a_parameter_of_the_notebook():
    import json
    import re

    notebook = json.loads((PACKAGE.parent / "notebooks" / "demo.ipynb").read_text())
    code = "\n".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    parameters = set(re.findall(r"^([A-Z_]+)\s*=", code, re.MULTILINE))
    assert {o.notebook for o in options.OPTIONS if o.notebook} <= parameters


def test_the_animator_has_the_tables_defaults():
    import inspect

    from fomm_lab.engine.animator import Animator

    parameters = inspect.signature(Animator).parameters
    for field in ("motion.relative", "motion.adapt_scale", "motion.avd", "motion.smoothing", "runtime.batch_size",
                  "runtime.dtype", "runtime.compile", "runtime.backend"):
        assert parameters[field.rpartition(".")[2]].default == options.default(field), field
