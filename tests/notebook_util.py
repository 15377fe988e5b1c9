"""Running notebooks in tests: parameters are injected the way papermill does it."""

from __future__ import annotations

import nbformat


def inject_parameters(nb: nbformat.NotebookNode, values: dict) -> None:
    """Insert a cell assigning ``values`` right after the cell tagged ``parameters``.

    The notebook's defaults stay in place, so a parameter added to the notebook later needs no change
    here; the injected cell overrides what it names.
    """
    index = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(index) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    source = "\n".join(f"{name} = {value!r}" for name, value in values.items())
    nb.cells.insert(index[0] + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
