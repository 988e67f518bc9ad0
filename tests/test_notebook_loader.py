"""The loader survives what students do to notebooks, and says what it could not find."""
from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pytest

from gen3d.notebook import NotebookError, load_notebook, require

EXAMPLE = Path(__file__).resolve().parent / "fixtures" / "example_topic" / "reference" / "example.ipynb"
NAMES = ["pairwise_sq_dist", "stable_softplus"]


def write(nb, tmp_path, name="nb.ipynb") -> Path:
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def example():
    return nbformat.read(EXAMPLE, as_version=4)


def test_loads_definitions_and_skips_training_loops_fast():
    started = time.monotonic()
    module = load_notebook(EXAMPLE, names=NAMES)
    assert time.monotonic() - started < 5, "the 10**9-step loop in the last cell must not run"
    report = module.__load_report__
    assert report.missing == [] and report.errors == []
    assert any("For" in s for s in report.skipped)
    assert module.EPS == 1e-12
    import torch
    assert module.pairwise_sq_dist(torch.zeros(2, 3), torch.ones(1, 3)).tolist() == [[3.0], [3.0]]


def test_reordered_cells_extra_cells_and_outputs(tmp_path):
    nb = example()
    nb.cells = list(reversed(nb.cells))
    nb.cells.insert(0, nbformat.v4.new_code_cell("print('hello')\nx = 1/0"))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="noise\n")]
            cell.execution_count = 7
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    assert module.__load_report__.missing == []


def test_lost_metadata_falls_back_to_def_names(tmp_path):
    nb = example()
    for cell in nb.cells:
        cell.metadata = {}
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    assert module.__load_report__.missing == [] and module.__load_report__.graded_ids == []


def test_graded_definition_wins_over_a_scratch_copy(tmp_path):
    nb = example()
    nb.cells.append(nbformat.v4.new_code_cell("def stable_softplus(x):\n    return 'scratch'"))
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    import torch
    assert module.stable_softplus(torch.zeros(1)).item() == pytest.approx(0.6931, abs=1e-3)


def test_stray_top_level_code_in_a_graded_cell_does_not_run(tmp_path):
    nb = example()
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "stable_softplus")
    cell.source += "\nimport time\ntime.sleep(100)\nmodel = stable_softplus(None)\n%timeit 1\n!rm -rf /\n"
    started = time.monotonic()
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    assert time.monotonic() - started < 5
    assert hasattr(module, "stable_softplus") and not hasattr(module, "model")


def test_syntax_error_is_reported_with_cell_and_grade_id(tmp_path):
    nb = example()
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "pairwise_sq_dist")
    cell.source = "def pairwise_sq_dist(a, b)\n    return a"
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    report = module.__load_report__
    assert report.missing == ["pairwise_sq_dist"]
    assert any("grade_id=pairwise_sq_dist" in e and "SyntaxError" in e for e in report.errors)
    with pytest.raises(AttributeError, match="does not define: pairwise_sq_dist"):
        require(module, NAMES)


def test_failing_import_is_reported_and_the_rest_still_loads(tmp_path):
    nb = example()
    nb.cells.insert(1, nbformat.v4.new_code_cell("import definitely_not_a_module_xyz\nCONST = 3"))
    module = load_notebook(write(nb, tmp_path), names=NAMES)
    assert module.CONST == 3 and module.__load_report__.missing == []
    assert any("definitely_not_a_module_xyz" in e for e in module.__load_report__.errors)


@pytest.mark.parametrize("text, match", [
    ("{ not json", "not valid notebook JSON"),
    ("[1, 2]", "no 'cells' list"),
    (json.dumps({"nbformat": 3, "cells": []}), "nbformat 3"),
])
def test_malformed_notebooks_raise_named_errors(tmp_path, text, match):
    path = tmp_path / "broken.ipynb"
    path.write_text(text)
    with pytest.raises(NotebookError, match=match):
        load_notebook(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.ipynb"):
        load_notebook(tmp_path / "absent.ipynb")
