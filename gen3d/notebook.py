"""Load the definitions of a notebook (a solution or a student's handout) into a fresh module.

The autograder and later topics both use this: 05_sds loads *your own* 02_pigan renderer and
04_diffusion prior with ``load_notebook("assignments/02_pigan/pigan.ipynb", names=["volume_render"])``.

What runs, so that loading is quick and safe even when a notebook holds training loops:

* from every code cell, only top-level ``import``/``from ... import``, ``def``, ``class``, assignments
  to UPPER_CASE names (constants), and ``try`` blocks made only of those; everything else (calls,
  loops, plots, lower-case assignments) is skipped and listed in the report;
* IPython magics (``%...``, ``!...``) are ignored;
* cells that are not graded run first, in document order; graded cells (nbgrader "autograded
  answer" cells) run last, so a graded definition wins over a scratch copy elsewhere;
* a cell that does not parse or raises while defining is reported (with its cell number and
  grade_id) and skipped; the others still load.

Metadata may be lost (a notebook re-saved by another tool): the loader then still finds
``def name`` / ``class Name`` in any code cell.
"""
from __future__ import annotations

import ast
import itertools
import json
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

__all__ = ["load_notebook", "NotebookError", "LoadReport", "read_code_cells", "CodeCell"]

_counter = itertools.count()


class NotebookError(ValueError):
    """The file is not a notebook we can read (not JSON, not nbformat 4, no cells)."""


@dataclass
class CodeCell:
    """One code cell: its position, source and what nbgrader says about it."""

    index: int
    source: str
    grade_id: Optional[str]
    graded: bool
    helper: bool

    @property
    def label(self) -> str:
        where = f"cell {self.index}"
        return f"{where} (grade_id={self.grade_id})" if self.grade_id else where


@dataclass
class LoadReport:
    """What the loader found, skipped and failed on."""

    path: str
    defined: dict = field(default_factory=dict)      # name -> cell label that defined it
    graded_ids: list = field(default_factory=list)   # grade_ids of graded cells found
    missing: list = field(default_factory=list)      # requested names not defined
    skipped: list = field(default_factory=list)      # "cell 7 line 3: for-loop" (not executed)
    errors: list = field(default_factory=list)       # "cell 4 (grade_id=x): SyntaxError ..."

    def summary(self) -> str:
        lines = [f"loaded {len(self.defined)} definitions from {self.path}"]
        if self.missing:
            lines.append("missing: " + ", ".join(self.missing))
        lines.extend("error: " + e for e in self.errors)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"path": self.path, "defined": dict(self.defined), "graded_ids": list(self.graded_ids),
                "missing": list(self.missing), "skipped": list(self.skipped), "errors": list(self.errors)}


def read_code_cells(path: str | Path) -> list[CodeCell]:
    """The code cells of the notebook at ``path``, with clear errors for files that are not notebooks."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise NotebookError(f"{path}: not a text file ({err})") from None
    except json.JSONDecodeError as err:
        raise NotebookError(f"{path}: not valid notebook JSON (line {err.lineno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError(f"{path}: not an nbformat 4 notebook (no 'cells' list)")
    if data.get("nbformat", 4) != 4:
        raise NotebookError(f"{path}: nbformat {data.get('nbformat')} is not supported (need 4)")
    cells = []
    for index, cell in enumerate(data["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        if isinstance(source, list):
            source = "".join(str(s) for s in source)
        meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
        nbg = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
        grade_id = nbg.get("grade_id") if isinstance(nbg.get("grade_id"), str) else None
        graded = bool(nbg.get("solution")) and grade_id is not None
        helper = "helper" in tags or bool(grade_id and grade_id.startswith("helper_"))
        cells.append(CodeCell(index, str(source), grade_id, graded, helper))
    return cells


def _strip_magics(source: str) -> str:
    """Blank out IPython magics and shell escapes, keeping line numbers."""
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        lines.append("" if stripped.startswith(("%", "!")) else line)
    return "\n".join(lines)


def _is_constant_target(target: ast.expr) -> bool:
    if isinstance(target, ast.Name):
        return target.id.isupper() or (target.id.startswith("_") and target.id[1:].isupper())
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(_is_constant_target(t) for t in target.elts)
    return False


def _keep(node: ast.stmt) -> bool:
    """Is this top-level statement a definition we execute?"""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, ast.Assign):
        return all(_is_constant_target(t) for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return node.value is not None and _is_constant_target(node.target)
    if isinstance(node, ast.Try):
        body = node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
        return all(_keep(s) or isinstance(s, ast.Pass) for s in body)
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return True  # a bare string (docstring-like) is harmless
    return False


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _describe_skipped(node: ast.stmt) -> str:
    kind = type(node).__name__
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        kind = "call " + ast.unparse(node.value.func)[:40]
    elif isinstance(node, ast.Assign):
        kind = "assignment to " + ", ".join(ast.unparse(t) for t in node.targets)[:40]
    return f"line {node.lineno}: {kind}"


def _run_cell(cell: CodeCell, module: types.ModuleType, report: LoadReport, path: Path) -> None:
    try:
        tree = ast.parse(_strip_magics(cell.source), filename=f"{path.name} {cell.label}")
    except SyntaxError as err:
        report.errors.append(f"{cell.label}: SyntaxError at line {err.lineno}: {err.msg}")
        return
    kept = []
    for node in tree.body:
        if _keep(node):
            kept.append(node)
        else:
            report.skipped.append(f"{cell.label} {_describe_skipped(node)}")
    for node in kept:  # one statement at a time, so one failing import does not hide the rest
        code = compile(ast.Module(body=[node], type_ignores=[]), f"<{path.name} {cell.label}>", "exec")
        try:
            exec(code, module.__dict__)  # noqa: S102 - executing definitions is the loader's job
        except Exception as err:  # noqa: BLE001 - a student's error is reported, not raised
            last = traceback.extract_tb(err.__traceback__)[-1]
            report.errors.append(f"{cell.label} line {last.lineno}: {type(err).__name__}: {err}")
            continue
        for name in _defined_names(node):
            report.defined[name] = cell.label


def load_notebook(path: str | Path, names: Optional[Sequence[str]] = None,
                  module_name: Optional[str] = None) -> types.ModuleType:
    """Load a notebook's definitions into a new module.

    path:  the ``.ipynb`` file.
    names: graded names you need; those not defined are listed in ``module.__load_report__.missing``
           (no exception: the caller decides; see :func:`require`).
    Returns the module; ``module.__load_report__`` is a :class:`LoadReport`.
    Raises ``FileNotFoundError`` / :class:`NotebookError` when the file is not a readable notebook.
    """
    path = Path(path)
    cells = read_code_cells(path)
    name = module_name or f"notebook_{path.stem}_{next(_counter)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    report = LoadReport(path=str(path))
    report.graded_ids = [c.grade_id for c in cells if c.graded]
    for cell in [c for c in cells if not c.graded] + [c for c in cells if c.graded]:
        _run_cell(cell, module, report, path)
    report.missing = [n for n in (names or []) if not hasattr(module, n)]
    module.__load_report__ = report
    return module


def require(module: types.ModuleType, names: Iterable[str]) -> None:
    """Raise ``AttributeError`` naming every missing definition (with the loader's errors)."""
    missing = [n for n in names if not hasattr(module, n)]
    if missing:
        report: LoadReport = getattr(module, "__load_report__", None)
        extra = ("\n" + "\n".join(report.errors)) if report and report.errors else ""
        raise AttributeError(f"{getattr(module, '__file__', 'notebook')} does not define: "
                             f"{', '.join(missing)}{extra}")
