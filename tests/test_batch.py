"""Batch grading of a class folder: one row per submission, atomic CSV, resumable; Gradescope JSON."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.batch import run_batch, threads_per_worker
from autograder.grading import Options, grade
from autograder.report import gradescope_json, table
from autograder.topics import get_topic

EXAMPLE = Path(__file__).resolve().parent / "fixtures" / "example_topic"


@pytest.fixture(autouse=True)
def example_topic(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_TOPIC_PATH", str(EXAMPLE))


def read_rows(path: Path) -> dict:
    with path.open() as handle:
        return {row["student"]: row for row in csv.DictReader(handle)}


def test_batch_grades_each_submission_and_resumes(tmp_path):
    subs = tmp_path / "subs"
    (subs / "alice").mkdir(parents=True)
    (subs / "bob").mkdir()
    shutil.copy(EXAMPLE / "reference" / "example.ipynb", subs / "alice" / "example.ipynb")
    (subs / "bob" / "example.ipynb").write_text("{ this is not a notebook")
    out = tmp_path / "gradebook.csv"
    options = Options(timeout=20)
    assert run_batch(subs, out, options, topic_name="00_example") == 0
    rows = read_rows(out)
    assert rows["alice/example"]["score"] == "3.0" and rows["alice/example"]["status"] == "graded"
    assert rows["bob/example"]["status"].startswith("graded") or "unreadable" in rows["bob/example"]["status"]
    assert float(rows["bob/example"]["score"]) == 0.0
    assert (tmp_path / "gradebook_results" / "alice__example.json").is_file()

    # a re-run keeps graded rows whose file did not change, and grades only the new submission
    (subs / "carol").mkdir()
    shutil.copy(EXAMPLE / "reference" / "example.ipynb", subs / "carol" / "example.ipynb")
    before = (tmp_path / "gradebook_results" / "alice__example.json").stat().st_mtime_ns
    assert run_batch(subs, out, options, topic_name="00_example") == 0
    rows = read_rows(out)
    assert set(rows) == {"alice/example", "bob/example", "carol/example"}
    assert (tmp_path / "gradebook_results" / "alice__example.json").stat().st_mtime_ns == before


def test_a_notebook_that_kills_its_loader_still_gets_a_report(tmp_path):
    nb = nbformat.read(EXAMPLE / "reference" / "example.ipynb", as_version=4)
    nb.cells.insert(1, nbformat.v4.new_code_cell("class Boom:\n    import os\n    os._exit(1)"))
    path = tmp_path / "example.ipynb"
    nbformat.write(nb, path)
    result = grade(path, get_topic("00_example"), Options(timeout=20))
    assert result.score == 0 and result.max_score == 3
    assert all(t.status == "error" and "could not be loaded" in t.message for t in result.tests)
    assert "could not be loaded" in table(result)


def test_gradescope_json_hides_reference_checks_until_published():
    result = grade(EXAMPLE / "reference" / "example.ipynb", get_topic("00_example"), Options(timeout=20))
    data = json.loads(json.dumps(gradescope_json(result)))
    assert data["score"] == 3.0
    visibility = {t["name"]: t["visibility"] for t in data["tests"]}
    assert visibility["pairwise_sq_dist.hand_computed"] == "visible"
    assert visibility["pairwise_sq_dist.matches_reference"] == "after_published"


def test_parallel_workers_give_the_same_gradebook_as_one(tmp_path):
    """Two workers grade a class with a hostile and an unreadable submission: every row matches the
    one-worker gradebook, and the hostile one costs only its own points."""
    subs = tmp_path / "subs"
    for student in ("ann", "ben", "cat", "dan"):
        (subs / student).mkdir(parents=True)
    for student in ("ann", "cat"):
        shutil.copy(EXAMPLE / "reference" / "example.ipynb", subs / student / "example.ipynb")
    nb = nbformat.read(EXAMPLE / "reference" / "example.ipynb", as_version=4)
    for cell in nb.cells:
        if "def pairwise_sq_dist" in cell.source:
            cell.source = cell.source.replace("diff = a[:, None, :]", "import os; os._exit(7)\n    diff = a[:, None, :]")
    nbformat.write(nb, subs / "ben" / "example.ipynb")
    (subs / "dan" / "example.ipynb").write_text("not json")
    serial, parallel = tmp_path / "serial.csv", tmp_path / "parallel.csv"
    options = Options(timeout=20)
    assert run_batch(subs, serial, options, topic_name="00_example") == 0
    assert run_batch(subs, parallel, options, topic_name="00_example", workers=2) == 0
    one, two = read_rows(serial), read_rows(parallel)
    assert set(one) == set(two) == {"ann/example", "ben/example", "cat/example", "dan/example"}
    for student in one:
        assert (one[student]["score"], one[student]["status"]) == (two[student]["score"], two[student]["status"])
    assert float(two["ann/example"]["score"]) == 3.0 and float(two["ben/example"]["score"]) < 3.0


@pytest.mark.parametrize("threads, workers, cpus, want", [
    (0, 1, 2, 0),   # one worker: torch's default
    (0, 2, 2, 1),   # the cores shared out
    (0, 3, 8, 2),
    (0, 4, 2, 1),   # never below one
    (3, 2, 2, 3),   # --threads given: kept
])
def test_parallel_workers_share_the_cores(threads, workers, cpus, want):
    assert threads_per_worker(threads, workers, cpus) == want
