"""The grader survives broken and hostile submissions; each loses only its own points."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest

from autograder.grading import Options, grade
from autograder.mutants import Alternative, apply_patch
from autograder.topics import get_topic

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "fixtures" / "example_topic"
DIST_BODY = "    diff = a[:, None, :] - b[None, :, :]  # (N, M, C)\n    return (diff ** 2).sum(-1)"


@pytest.fixture(autouse=True)
def example_topic(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_TOPIC_PATH", str(EXAMPLE))


def submission(tmp_path: Path, new_body: str, function: str = "pairwise_sq_dist",
               old: str = DIST_BODY) -> Path:
    nb = nbformat.read(EXAMPLE / "reference" / "example.ipynb", as_version=4)
    nb = apply_patch(nb, Alternative("variant", function, old, new_body))
    path = tmp_path / "student" / "example.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def run(path: Path, **kw):
    options = Options(timeout=kw.pop("timeout", 8), **kw)
    return grade(path, get_topic("00_example"), options)


def by_name(result):
    return {t.name: t for t in result.tests}


def test_reference_scores_full_marks():
    result = run(EXAMPLE / "reference" / "example.ipynb")
    assert result.score == result.max_score == 3.0, [t.message for t in result.tests]


@pytest.mark.parametrize("body, status, words", [
    ("    raise ValueError('boom')", "error", "ValueError: boom"),
    ("    while True:\n        pass", "timeout", "did not finish"),
    ("    import sys\n    sys.exit(0)", "error", "tried to exit"),
    ("    import os\n    os._exit(3)", "error", "exited with status 3"),
    ("    import ctypes\n    ctypes.string_at(0)", "error", "SIGSEGV"),
    ("    import torch\n    return torch.ones(50_000_000_000, dtype=torch.uint8) ", "error", "allocate"),
    ("    return (a[:, None] - b[None]).sum(-1) * float('nan')", "failed", "NaN"),
])
def test_a_broken_function_loses_only_its_own_points(tmp_path, body, status, words):
    result = run(submission(tmp_path, body))
    tests = by_name(result)
    dist = tests["pairwise_sq_dist.matches_reference"]
    assert dist.status == status, dist.message
    assert words in dist.message, dist.message
    assert tests["stable_softplus.extremes"].status == "passed", "the other function must still be graded"
    assert result.score == 1.0


def test_monkeypatching_and_fake_scores_do_not_help(tmp_path):
    body = ("    import torch, numpy\n"
            "    torch.allclose = lambda *a, **k: True\n"
            "    numpy.allclose = lambda *a, **k: True\n"
            "    print('score 3.00 / 3.00'); print('{\"score\": 3.0, \"max_score\": 3.0}')\n"
            "    return torch.zeros(a.shape[0], b.shape[0], dtype=a.dtype)")
    result = run(submission(tmp_path, body))
    assert by_name(result)["pairwise_sq_dist.matches_reference"].status == "failed"
    assert result.score == 1.0


def test_the_reference_is_not_readable_from_student_code(tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    body = ("    import glob, os\n"
            "    found = glob.glob(%r + '/solutions/**/*.ipynb', recursive=True)\n"
            "    found += glob.glob(%r + '/**/example.ipynb', recursive=True)\n"
            "    if found:\n"
            "        raise RuntimeError('LEAK ' + ' '.join(found))\n"
            "    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)") % (repo, repo)
    result = run(submission(tmp_path, body))
    dist = by_name(result)["pairwise_sq_dist.matches_reference"]
    isolated = any("hidden" in n for n in result.isolation)
    if not isolated:
        pytest.skip("namespaces unavailable here: " + "; ".join(result.isolation))
    # the only notebook the student can see is its own copy (submission.ipynb), never example.ipynb
    assert dist.status == "passed", dist.message


def test_student_code_runs_unprivileged_with_a_whole_standard_library(tmp_path):
    """The child's interpreter starts as ``nobody`` (not root dropping privileges mid-way), so a standard
    module that nothing imported before is still found, and root-only files stay closed."""
    body = ("    import os, sqlite3, wave, colorsys  # stdlib modules the kit never imports\n"
            "    if os.geteuid() == 0:\n"
            "        raise RuntimeError('running as root')\n"
            "    try:\n"
            "        open('/etc/shadow').read()\n"
            "        raise RuntimeError('read /etc/shadow')\n"
            "    except PermissionError:\n"
            "        pass\n"
            "    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)")
    result = run(submission(tmp_path, body))
    if not any("running as user nobody" in n for n in result.isolation):
        pytest.skip("no unprivileged child here: " + "; ".join(result.isolation))
    dist = by_name(result)["pairwise_sq_dist.matches_reference"]
    assert dist.status == "passed", dist.message


def test_deleting_files_and_writing_the_submission_changes_nothing(tmp_path):
    path = submission(tmp_path, "    import os, shutil\n"
                                "    for p in os.listdir('.'):\n"
                                "        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)\n"
                                "    try:\n"
                                "        open(%r, 'w').write('hacked')\n"
                                "    except OSError:\n"
                                "        pass\n"
                                "    return (a[:, None, :] - b[None, :, :]).pow(2).sum(-1)" % "PLACEHOLDER")
    text = path.read_text().replace("PLACEHOLDER", str(path))
    path.write_text(text)
    before = path.read_bytes()
    result = run(path)
    assert path.read_bytes() == before, "the submission file must never be modified"
    assert result.max_score == 3.0


def test_a_notebook_that_is_not_json_is_a_clear_error(tmp_path):
    from gen3d.notebook import NotebookError, load_notebook

    bad = tmp_path / "bad.ipynb"
    bad.write_text("{ not json")
    with pytest.raises(NotebookError, match="not valid notebook JSON"):
        load_notebook(bad)


def test_missing_function_is_named(tmp_path):
    nb = nbformat.read(EXAMPLE / "reference" / "example.ipynb", as_version=4)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != "stable_softplus"]
    path = tmp_path / "example.ipynb"
    nbformat.write(nb, path)
    result = run(path)
    soft = by_name(result)["stable_softplus.extremes"]
    assert soft.status == "error" and "does not define `stable_softplus`" in soft.message


def test_public_only_needs_no_reference(tmp_path):
    result = run(EXAMPLE / "reference" / "example.ipynb", public_only=True, reference=tmp_path / "absent.ipynb")
    assert [t.name for t in result.tests] == ["pairwise_sq_dist.hand_computed"]
    assert result.score == 1.0


def test_cli_writes_json_and_exits_zero_for_a_bad_score(tmp_path):
    import subprocess
    import sys

    path = submission(tmp_path, "    raise NotImplementedError()")
    out = tmp_path / "r.json"
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(path), "--topic", "00_example",
                           "--json", str(out), "--timeout", "8"], capture_output=True, text=True,
                          env={**os.environ, "AUTOGRADER_TOPIC_PATH": str(EXAMPLE)})
    assert done.returncode == 0, done.stderr
    data = json.loads(out.read_text())
    assert data["score"] == 1.0 and data["max_score"] == 3.0
    stub = next(t for t in data["tests"] if t["name"] == "pairwise_sq_dist.matches_reference")
    assert "not implemented yet" in stub["message"]
