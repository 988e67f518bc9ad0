"""Planted bugs (mutants) and valid alternative implementations, for the kit's self-proof.

A mutant is a small patch of one graded cell of a reference notebook: ``old`` must occur exactly once
in the cell whose grade_id is ``function``; it is replaced by ``new``. ``make test`` grades each mutant
with ``--only function`` and requires every check named in ``caught_by`` to fail with a message.
An alternative is a patch that stays correct (a different valid formula): it must pass every check.

This folder is hidden from student code during grading (it holds fragments of the reference).
"""
from __future__ import annotations

import copy
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Sequence

import nbformat


@dataclass(frozen=True)
class Mutant:
    name: str
    function: str
    old: str
    new: str
    caught_by: Sequence[str]
    why: str = ""


@dataclass(frozen=True)
class Alternative:
    name: str
    function: str
    old: str
    new: str
    why: str = ""


class PatchError(ValueError):
    """A mutant's ``old`` snippet no longer matches the reference notebook."""


def apply_patch(nb: nbformat.NotebookNode, patch: Mutant | Alternative) -> nbformat.NotebookNode:
    """A copy of ``nb`` with ``patch`` applied to the graded cell ``patch.function``."""
    patched = copy.deepcopy(nb)
    cells = [c for c in patched.cells
             if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade_id") == patch.function]
    if len(cells) != 1:
        raise PatchError(f"{patch.name}: expected one graded cell with grade_id {patch.function!r}, "
                         f"found {len(cells)}")
    source = cells[0].source
    count = source.count(patch.old)
    if count != 1:
        raise PatchError(f"{patch.name}: the snippet to replace occurs {count} times in the cell "
                         f"{patch.function!r} (expected exactly once); update the mutant:\n{patch.old}")
    cells[0].source = source.replace(patch.old, patch.new, 1)
    return patched


def catalogue(topic: str) -> tuple[list[Mutant], list[Alternative]]:
    """The mutants and alternatives of a topic (module ``m<topic>`` in this package)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name == f"m{topic}":
            module = importlib.import_module(f"{__name__}.{info.name}")
            return list(getattr(module, "MUTANTS", [])), list(getattr(module, "ALTERNATIVES", []))
    return [], []
