"""Handouts: nbgrader turns solutions into stubs; the release lint catches what must not ship."""
from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.handouts import HandoutError, run
from autograder.grading import Options, grade
from autograder.topics import get_topic

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "fixtures" / "example_topic"


@pytest.fixture
def course(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_TOPIC_PATH", str(EXAMPLE))
    solutions = tmp_path / "solutions" / "00_example"
    solutions.mkdir(parents=True)
    shutil.copy(EXAMPLE / "reference" / "example.ipynb", solutions / "example.ipynb")
    return tmp_path


def test_generation_makes_stubs_and_is_deterministic(course):
    changed = run(solutions=course / "solutions", assignments=course / "assignments")
    handout = course / "assignments" / "00_example" / "example.ipynb"
    assert changed == ["assignments/00_example/example.ipynb"]
    text = handout.read_text()
    assert "BEGIN SOLUTION" not in text and "raise NotImplementedError()" in text
    assert "a: (N, C), b: (M, C) -> (N, M)" in text, "the docstring stays in the stub"
    assert run(solutions=course / "solutions", assignments=course / "assignments") == []
    assert run(check=True, solutions=course / "solutions", assignments=course / "assignments") == []


def test_check_fails_on_a_stale_handout(course):
    run(solutions=course / "solutions", assignments=course / "assignments")
    source = course / "solutions" / "00_example" / "example.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells[0].source += "\nA new sentence."
    nbformat.write(nb, source)
    with pytest.raises(HandoutError, match="out of date"):
        run(check=True, solutions=course / "solutions", assignments=course / "assignments")


def test_a_python_file_beside_the_notebook_is_refused(course):
    (course / "solutions" / "00_example" / "helpers.py").write_text("def solution(): return 42\n")
    with pytest.raises(HandoutError, match="only notebooks"):
        run(solutions=course / "solutions", assignments=course / "assignments")


def test_solution_outside_markers_is_caught_as_a_leak(course):
    source = course / "solutions" / "00_example" / "example.ipynb"
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("diff = a[:, None, :] - b[None, :, :]  # (N, M, C)"))
    nbformat.write(nb, source)
    with pytest.raises(HandoutError, match="solution text leaked"):
        run(solutions=course / "solutions", assignments=course / "assignments")


def test_the_handout_scores_zero_and_the_solution_full(course):
    run(solutions=course / "solutions", assignments=course / "assignments")
    topic = get_topic("00_example")
    handout = grade(course / "assignments" / "00_example" / "example.ipynb", topic, Options(timeout=20))
    assert handout.score == 0 and all(t.status == "error" for t in handout.tests), \
        [(t.name, t.status, t.message) for t in handout.tests]
    assert all("not implemented yet" in t.message for t in handout.tests)


def test_a_filled_in_handout_is_never_overwritten(course):
    run(solutions=course / "solutions", assignments=course / "assignments")
    handout = course / "assignments" / "00_example" / "example.ipynb"
    nb = nbformat.read(handout, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "stable_softplus")
    cell.source = "def stable_softplus(x):\n    return x  # my work"
    nbformat.write(nb, handout)
    work = handout.read_bytes()
    with pytest.raises(HandoutError, match="stable_softplus"):
        run(solutions=course / "solutions", assignments=course / "assignments")
    assert handout.read_bytes() == work
