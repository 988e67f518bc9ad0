"""The similarity check on planted pairs (tests/fixtures/similarity/, built from the example topic).

submissions/alice:   the reference's own code;
submissions/bob:     alice's code with names, comments, docstrings and layout changed (a copy);
submissions/carol_*: written independently, correct (not a copy);
submissions/dave/hw: alice's pairwise_sq_dist renamed, his own stable_softplus (one function copied);
submissions/erin, frank: the untouched handout (nothing of their own to compare);
submissions/grace:   a .ipynb that is not a notebook, and a .txt beside it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import nbformat
import pytest

from autograder.similarity import (find_notebooks, find_similar, normalise_source, read_submission, register)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "similarity"
HANDOUT = FIXTURES / "handout" / "homework.ipynb"
SUBMISSIONS = FIXTURES / "submissions"


def _student(path: Path) -> str:
    return path.relative_to(SUBMISSIONS).parts[0].split("_")[0]


def _pairs_by_students(pairs) -> dict:
    return {tuple(sorted((_student(p.a), _student(p.b)))): p for p in pairs}


@pytest.fixture(scope="module")
def planted():
    notebooks, _ = find_notebooks(SUBMISSIONS)
    skipped = []
    pairs = find_similar(notebooks, handout=HANDOUT, threshold=0.8, skipped=skipped)
    return _pairs_by_students(pairs), skipped


def test_renamed_reformatted_copy_is_flagged_on_both_functions(planted):
    pairs, _ = planted
    pair = pairs[("alice", "bob")]
    assert pair.flagged_functions == ["pairwise_sq_dist", "stable_softplus"]
    assert pair.similarity >= 0.8
    softplus = next(m for m in pair.functions if m.function == "stable_softplus")
    assert softplus.similarity == pytest.approx(1.0)
    left, right = softplus.shared[0]  # shown in the original text of both sides
    assert "torch.clamp(x, min=0)" in left and "torch.clamp(t, min = 0)" in right


def test_copy_of_one_function_is_flagged_for_that_function_only(planted):
    pairs, _ = planted
    for other in ("alice", "bob"):
        pair = pairs[tuple(sorted((other, "dave")))]
        assert pair.flagged_functions == ["pairwise_sq_dist"], other
        softplus = next(m for m in pair.functions if m.function == "stable_softplus")
        assert softplus.similarity < 0.8 and not softplus.flagged and not softplus.shared
    shared = next(m for m in pairs[("alice", "dave")].functions if m.function == "pairwise_sq_dist").shared
    assert ("diff = a[:, None, :] - b[None, :, :]  # (N, M, C)", "d = a[:, None, :] - b[None, :, :]") in shared


def test_independent_solution_and_handout_stubs_are_not_flagged(planted):
    pairs, _ = planted
    assert set(pairs) == {("alice", "bob"), ("alice", "dave"), ("bob", "dave")}
    assert not any(name in pair for pair in pairs for name in ("carol", "erin", "frank"))


def test_pairs_come_most_similar_first():
    notebooks, _ = find_notebooks(SUBMISSIONS)
    pairs = find_similar(notebooks, handout=HANDOUT)
    assert [p.similarity for p in pairs] == sorted((p.similarity for p in pairs), reverse=True)
    assert _pairs_by_students(pairs[:1]).keys() == {("alice", "bob")}


def test_a_file_that_is_not_a_notebook_is_reported_and_skipped(planted):
    _, skipped = planted
    assert [(_student(path), "not valid notebook JSON" in reason) for path, reason in skipped] == [("grace", True)]
    notebooks, others = find_notebooks(SUBMISSIONS)
    assert [p.name for p in others] == ["comments.txt"]


def test_without_a_handout_lines_every_student_shares_are_ignored():
    notebooks, _ = find_notebooks(SUBMISSIONS)
    pairs = _pairs_by_students(find_similar(notebooks, handout=None))
    assert ("erin", "frank") not in pairs and ("alice", "bob") in pairs


def test_identical_stubs_alone_are_not_flagged_when_the_handout_is_given(tmp_path):
    for name in ("erin", "frank"):
        shutil.copy(SUBMISSIONS / name / "homework.ipynb", tmp_path / f"{name}.ipynb")
    assert find_similar(sorted(tmp_path.glob("*.ipynb")), handout=HANDOUT) == []


def test_normalising_ignores_names_comments_docstrings_and_layout():
    a = normalise_source('def f(x, y):\n    """Doc."""\n    total = x + y  # add\n    return total * 2\n')
    b = normalise_source("def f(p,q):\n    # sum\n    s = (p\n         + q)\n    return s*2\n")
    assert [line.text for line in a] == [line.text for line in b] == [
        "def f(v0, v1):", "v2 = v0 + v1", "return v2 * 2"]
    assert a[1].original == "total = x + y  # add" and b[1].original == "s = (p\n     + q)"


def test_globals_attributes_and_keywords_keep_their_names():
    lines = normalise_source("def g(self, x):\n    global SCALE\n    SCALE = 2\n"
                             "    return torch.clamp(self.w * x, min=0)\n")
    assert [line.text for line in lines][-1] == "return torch.clamp(v0.w * v1, min=0)"
    assert "global SCALE" in lines[1].text and lines[2].text == "SCALE = 2"


@pytest.mark.parametrize("source", [
    "def f(:\n    return 1  # broken\n",                                  # does not parse
    "%timeit f()\n!ls\ndef f(x):\n    return x\n",                       # magics
    "async def f(x):\n    async with x as y:\n        return [z async for z in y]\n",
    "def f(v):\n    match v:\n        case [a, *rest]:\n            return a\n"
    "        case _:\n            return None\n",
    "def f(x):\n    def g(y):\n        nonlocal x\n        x = y\n    h = lambda q: q + x\n    return g, h\n",
    "x = 1\0\n", "", "\n\n# only a comment\n",
])
def test_normalising_never_raises(source):
    lines = normalise_source(source)
    assert all(isinstance(line.text, str) and line.text for line in lines)


def test_a_notebook_without_nbgrader_metadata_still_yields_its_functions(tmp_path):
    nb = nbformat.read(SUBMISSIONS / "bob" / "homework.ipynb", as_version=4)
    for cell in nb.cells:
        cell.metadata = {}
    path = tmp_path / "resaved.ipynb"
    nbformat.write(nb, path)
    assert read_submission(path).units == {}
    units = read_submission(path, ["pairwise_sq_dist", "stable_softplus"]).units
    assert set(units) == {"pairwise_sq_dist", "stable_softplus"}
    pairs = find_similar([SUBMISSIONS / "alice" / "homework.ipynb", path], handout=HANDOUT)
    assert len(pairs) == 1 and pairs[0].flagged_functions == ["pairwise_sq_dist", "stable_softplus"]


def test_threshold_outside_zero_one_is_a_named_error():
    with pytest.raises(ValueError, match="threshold"):
        find_similar([], threshold=80)


def _run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_command_prints_pairs_with_shared_lines_and_writes_json(tmp_path, capsys):
    shutil.copytree(SUBMISSIONS, tmp_path / "class")
    checkpoint = tmp_path / "class" / "alice" / ".ipynb_checkpoints"
    checkpoint.mkdir()
    shutil.copy(SUBMISSIONS / "alice" / "homework.ipynb", checkpoint / "example-checkpoint.ipynb")
    out = tmp_path / "pairs.json"
    status = _run_cli(["similarity", str(tmp_path / "class"), "--handout", str(HANDOUT), "--json", str(out)])
    printed = capsys.readouterr().out
    assert status == 0
    assert "skipped grace/homework.ipynb: " in printed and "ignored 1 files that are not .ipynb" in printed
    assert "3 pairs with a graded function at or above 0.80 (6 notebooks, 15 pairs compared)" in printed
    assert "A: alice/homework.ipynb   B: bob/homework.ipynb" in printed
    assert "A| diff = a[:, None, :] - b[None, :, :]  # (N, M, C)" in printed and "B| d = a[:, None, :]" in printed
    data = json.loads(out.read_text())
    assert len(data["pairs"]) == 3 and data["skipped"][0]["path"].endswith("grace/homework.ipynb")
    assert data["pairs"][0]["flagged_functions"] == ["pairwise_sq_dist", "stable_softplus"]


def test_command_rejects_a_missing_folder(tmp_path, capsys):
    assert _run_cli(["similarity", str(tmp_path / "nowhere")]) == 2
    assert "no such folder" in capsys.readouterr().err


def _one_cell_notebook(path: Path, source: str) -> Path:
    """A notebook whose only graded cell (grade_id 'scale') holds ``source``."""
    cell = nbformat.v4.new_code_cell(source, metadata={"nbgrader": {"grade_id": "scale", "solution": True}})
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), path)
    return path


def test_handout_lines_after_the_students_part_are_ignored_whatever_the_locals_numbering(tmp_path):
    stub = "def scale(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n    out = y * 2\n    return out\n"
    given = "    out = y * 2\n    return out\n"  # the stub's given last lines, after the student's own locals
    handout = _one_cell_notebook(tmp_path / "handout.ipynb", stub)
    students = [_one_cell_notebook(tmp_path / f"s{i}.ipynb", f"def scale(x):\n{body}{given}") for i, body in
                enumerate(["    m = x.mean()\n    y = x - m\n", "    s = x.std() + 1e-8\n    y = x / s\n"])]
    units = read_submission(students[0]).units["scale"]
    assert [line.text for line in units][-2:] == ["v3 = v2 * 2", "return v3"]  # the handout: v1 = v2 * 2
    pairs = find_similar(students, handout=handout, threshold=0.0, min_tokens=0)
    assert len(pairs) == 1 and pairs[0].functions[0].shared == []  # only the students' own lines are compared
