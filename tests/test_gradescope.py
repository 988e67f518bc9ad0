"""The Gradescope bundle: its run_autograder, pointed at a fake submission/ + results/ tree, always
writes a valid results.json (a solution, a handout, a broken notebook, no notebook)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.gradescope import build

REPO = Path(__file__).resolve().parents[1]
TOPIC = "02_pigan"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The topic's bundle, unpacked where Gradescope puts it (<root>/source)."""
    root = tmp_path_factory.mktemp("gradescope")
    archive = build(TOPIC, root / "dist")
    with zipfile.ZipFile(archive) as handle:
        names = set(handle.namelist())
        handle.extractall(root / "source")
    assert {"setup.sh", "run_autograder", "requirements.txt", "solutions/02_pigan/pigan.ipynb"} <= names
    assert not any("mutants" in n for n in names), "the planted bugs do not ship"
    assert "torch==" in (root / "source" / "requirements.txt").read_text()
    return root


def run_autograder(root: Path, notebook_text: str | None, name: str = "pigan.ipynb") -> dict:
    submission, results = root / "submission", root / "results"
    for folder in (submission, results):
        if folder.exists():
            for path in folder.iterdir():
                path.unlink()
        folder.mkdir(exist_ok=True)
    if notebook_text is not None:
        (submission / name).write_text(notebook_text)
    env = dict(os.environ, GRADESCOPE_ROOT=str(root), GRADESCOPE_PYTHON=sys.executable,
               GEN3D_DATA=str(REPO / "data"), OMP_NUM_THREADS="1")
    script = root / "source" / "run_autograder"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((results / "results.json").read_text())
    assert isinstance(data["score"], (int, float)) and isinstance(data["tests"], list)
    for test in data["tests"]:
        assert {"name", "score", "max_score", "output", "visibility"} <= set(test)
        assert test["visibility"] in ("visible", "after_published")
    return data


@pytest.mark.slow
def test_solution_gets_full_marks(bundle):
    data = run_autograder(bundle, (REPO / "solutions" / TOPIC / "pigan.ipynb").read_text())
    assert data["score"] == sum(t["max_score"] for t in data["tests"]) > 0
    assert {t["visibility"] for t in data["tests"]} == {"visible", "after_published"}


@pytest.mark.slow
def test_handout_gets_zero(bundle):
    data = run_autograder(bundle, (REPO / "assignments" / TOPIC / "pigan.ipynb").read_text())
    assert data["score"] == 0 and data["tests"]


def test_broken_and_missing_notebooks_get_a_message(bundle):
    broken = run_autograder(bundle, "{ not a notebook")
    assert broken["score"] == 0 and "not valid notebook JSON" in broken["output"] + json.dumps(broken["tests"])
    missing = run_autograder(bundle, None)
    assert missing["score"] == 0 and "no notebook" in missing["output"]
