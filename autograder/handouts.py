"""Generate the student handouts (``assignments/``) from the solutions with nbgrader, and lint them.

``python -m autograder handouts``          regenerate every topic's handout (atomic, deterministic)
``python -m autograder handouts --check``  fail if a committed handout differs from a fresh one
Both lint what students receive: no solution text or markers, every stub parses and still defines its
name, unique grade_ids, no outputs, nothing but notebooks (nbgrader copies any other file verbatim,
so a solution in a ``.py`` beside a notebook would ship to students).
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from autograder.nbtools import notebook_text
from gen3d.notebook import load_notebook

REPO = Path(__file__).resolve().parents[1]
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
ALLOWED_SUFFIXES = {".ipynb", ".md"}


class HandoutError(RuntimeError):
    """The handouts could not be generated, are stale, or fail the release lint."""


def topic_folders(solutions: Path = REPO / "solutions") -> list[Path]:
    return sorted(p for p in solutions.iterdir() if p.is_dir() and p.name[:2].isdigit()) if solutions.is_dir() else []


def _nbgrader(args: list[str], course: Path) -> None:
    command = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={course}",
               "--CourseDirectory.source_directory=source", "--CourseDirectory.release_directory=release",
               f"--db=sqlite:///{course / 'gradebook.db'}", "--log-level=WARN"]
    # nbgrader runs `alembic` from PATH: make the interpreter's own bin folder (the venv's) come first
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run(command, cwd=course, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise HandoutError(f"nbgrader {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")


def _normalise(path: Path) -> str:
    """Canonical handout text: no outputs, no execution counts, stable metadata and key order."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    nb.metadata.pop("widgets", None)
    return notebook_text(nb)


def generate(folder: Path) -> dict[str, str]:
    """Run nbgrader on one topic folder; return ``{file name: handout text}`` (nothing written)."""
    for path in folder.iterdir():
        if path.suffix not in ALLOWED_SUFFIXES or path.is_dir():
            raise HandoutError(f"{path}: only notebooks (and .md notes) may live in {folder}; nbgrader would "
                               "copy this file to students as it is")
    with tempfile.TemporaryDirectory(prefix="gen3d-handouts-") as tmp:
        course = Path(tmp)
        shutil.copytree(folder, course / "source" / folder.name)
        _nbgrader(["db", "assignment", "add", folder.name], course)
        _nbgrader(["generate_assignment", folder.name, "--force"], course)
        release = course / "release" / folder.name
        out = {}
        for path in sorted(release.iterdir()):
            if path.suffix == ".ipynb":
                out[path.name] = _normalise(path)
            elif path.suffix == ".md":
                out[path.name] = path.read_text(encoding="utf-8")
        return out


def solution_lines(folder: Path) -> set[str]:
    """Distinctive lines between the solution markers of a topic's notebooks (for the leak check)."""
    lines = set()
    for path in folder.glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            inside = False
            for line in cell.source.splitlines():
                text = line.strip()
                if "BEGIN SOLUTION" in text:
                    inside = True
                elif "END SOLUTION" in text:
                    inside = False
                elif inside and len(text) >= 30 and not text.startswith("#"):
                    lines.add(text)
    return lines


def lint(name: str, text: str, leaks: set[str], functions: list[str] | None = None) -> list[str]:
    """Problems with one handout file's text, as readable strings (empty = clean)."""
    problems = [f"{name}: contains the marker '{m}'" for m in MARKERS if m in text]
    if not name.endswith(".ipynb"):
        return problems
    nb = nbformat.reads(text, as_version=4)
    ids = []
    for index, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count")):
            problems.append(f"{name} cell {index}: has outputs")
        if meta.get("grade_id"):
            ids.append(meta["grade_id"])
        for line in cell.source.splitlines():
            if line.strip() in leaks:
                problems.append(f"{name} cell {index}: solution text leaked: {line.strip()[:60]!r}")
        if meta.get("solution") and cell.cell_type == "code":
            try:
                tree = ast.parse(cell.source)
            except SyntaxError as err:
                problems.append(f"{name} cell {index} ({meta.get('grade_id')}): stub does not parse: {err.msg}")
                continue
            defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            if meta.get("grade_id") not in defined:
                problems.append(f"{name} cell {index}: graded cell does not define {meta.get('grade_id')!r}")
            if "NotImplementedError" not in cell.source:
                problems.append(f"{name} cell {index} ({meta.get('grade_id')}): no stub (raise NotImplementedError)")
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        problems.append(f"{name}: duplicate grade_id(s) {dupes}")
    if functions:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(name).name
            path.write_text(text, encoding="utf-8")
            module = load_notebook(path, names=functions)
            report = module.__load_report__
            sys.modules.pop(module.__name__, None)
        problems += [f"{name}: stub for {n!r} missing after loading" for n in report.missing]
        problems += [f"{name}: {e}" for e in report.errors]
    return problems


def _topic_functions(folder: Path) -> list[str] | None:
    from autograder.topics import all_topics

    topic = all_topics().get(folder.name)
    return list(topic.functions) if topic else None


def filled_in_cells(path: Path) -> list[str]:
    """grade_ids of graded cells that no longer hold a stub: someone's work, never to be overwritten."""
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable file is treated as someone's work too
        return ["<unreadable notebook>"]
    return [c.metadata["nbgrader"].get("grade_id", "?") for c in nb.cells
            if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
            and "NotImplementedError" not in c.source]


def run(check: bool = False, solutions: Path = REPO / "solutions", assignments: Path = REPO / "assignments",
        force: bool = False, only: list[str] | None = None) -> list[str]:
    """Regenerate (or, with ``check``, compare) every handout. Returns what changed / is stale.

    ``only`` restricts the run to these topic folders (e.g. ``["03_vq_prior"]``); the orphan check is
    then skipped, since the other topics are not looked at.
    A handout whose graded cells have been filled in (a student's work) is never overwritten unless
    ``force`` is given: the run stops with an error naming the file and the cells."""
    changed, problems, writes = [], [], []
    folders = topic_folders(solutions)
    if only:
        unknown = sorted(set(only) - {f.name for f in folders})
        if unknown:
            raise HandoutError(f"no solution folder for {unknown}; topics: {[f.name for f in folders]}")
        folders = [f for f in folders if f.name in only]
    for folder in folders:
        fresh = generate(folder)
        leaks = solution_lines(folder)
        functions = _topic_functions(folder)
        target = assignments / folder.name
        for name, text in fresh.items():
            problems += lint(f"{folder.name}/{name}", text, leaks, functions)
            current = target / name
            if not current.is_file() or current.read_text(encoding="utf-8") != text:
                changed.append(str(current.relative_to(assignments.parent)))
                edited = filled_in_cells(current) if current.is_file() and not check else []
                if edited and not force:
                    problems.append(f"{current} holds work in graded cells {edited}; it is not overwritten. "
                                    "Move it elsewhere (or pass --force to discard it).")
                writes.append((current, text))
        extra = sorted(p.name for p in target.iterdir() if p.name not in fresh) if target.is_dir() else []
        if extra:
            problems.append(f"assignments/{folder.name} holds files nbgrader did not produce: {extra}")
    orphans = sorted(p.name for p in assignments.iterdir() if p.is_dir() and
                     p.name not in {f.name for f in folders}) if assignments.is_dir() and not only else []
    if orphans:
        problems.append(f"assignments/ has folders with no solution: {orphans}")
    if problems:  # nothing is written unless every handout is clean
        raise HandoutError("release lint failed (nothing written):\n  " + "\n  ".join(problems))
    if check and changed:
        raise HandoutError("handouts are out of date (run `make handouts`): " + ", ".join(changed))
    if not check:
        for path, text in writes:
            _write(path, text)
    return changed


def _write(path: Path, text: str) -> None:
    from autograder.report import write_atomic

    write_atomic(path, text)
