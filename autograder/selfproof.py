"""The kit proves itself: planted bugs are caught by the checks that name them; alternatives pass.

Used by ``python -m autograder mutants TOPIC`` and by the pytest suite (``tests/test_selfproof.py``).
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import nbformat

from autograder.grading import REPO, GradeResult, Options, grade
from autograder.mutants import Alternative, Mutant, apply_patch, catalogue
from autograder.topics import get_topic


@dataclass
class Outcome:
    name: str
    kind: str  # mutant | alternative
    ok: bool
    detail: str


def grade_patched(topic_name: str, patch: Mutant | Alternative, options: Options) -> GradeResult:
    """Grade the reference notebook with ``patch`` applied: a mutant against the checks that should
    catch it, an alternative against every check of its function."""
    topic = get_topic(topic_name)
    nb = apply_patch(nbformat.read(REPO / topic.notebook, as_version=4), patch)
    with tempfile.TemporaryDirectory(prefix="gen3d-mutant-") as tmp:
        path = Path(tmp) / Path(topic.notebook).name
        nbformat.write(nb, path)
        checks = tuple(patch.caught_by) if isinstance(patch, Mutant) else ()
        opts = Options(**{**options.__dict__, "only": (patch.function,), "checks": checks, "keep_reference": True})
        return grade(path, topic, opts)


def judge_mutant(mutant: Mutant, result: GradeResult) -> Outcome:
    """A mutant is caught when every check in ``caught_by`` did not pass and explained why."""
    by_name = {t.name.split("@")[0]: t for t in result.tests if t.status != "skipped"}
    missing = [n for n in mutant.caught_by if n not in by_name]
    if missing:
        return Outcome(mutant.name, "mutant", False, f"caught_by names unknown checks {missing}")
    escaped = [n for n in mutant.caught_by if by_name[n].status == "passed"]
    silent = [n for n in mutant.caught_by if by_name[n].status != "passed" and len(by_name[n].message) < 20]
    if escaped:
        return Outcome(mutant.name, "mutant", False, f"NOT caught by {escaped}")
    if silent:
        return Outcome(mutant.name, "mutant", False, f"caught by {silent} but without a useful message")
    first = by_name[mutant.caught_by[0]]
    return Outcome(mutant.name, "mutant", True, f"caught by {', '.join(mutant.caught_by)}: {first.message[:160]}")


def judge_alternative(alternative: Alternative, result: GradeResult) -> Outcome:
    failed = [f"{t.name}: {t.message[:120]}" for t in result.tests if t.status not in ("passed", "skipped")]
    if failed:
        return Outcome(alternative.name, "alternative", False, "rejected: " + " | ".join(failed))
    return Outcome(alternative.name, "alternative", True, f"passes {len(result.tests)} checks")


def run_mutants(topic_name: str, options: Options, names: Optional[Sequence[str]] = None,
                echo=print) -> bool:
    """Grade every mutant and alternative of a topic; print one line each; True when all behave."""
    mutants, alternatives = catalogue(topic_name)
    if not mutants and not alternatives:
        echo(f"{topic_name}: no mutants or alternatives registered")
        return False
    good = True
    for patch in [*mutants, *alternatives]:
        if names and patch.name not in names:
            continue
        result = grade_patched(topic_name, patch, options)
        outcome = judge_mutant(patch, result) if isinstance(patch, Mutant) else judge_alternative(patch, result)
        good &= outcome.ok
        echo(f"{'ok  ' if outcome.ok else 'FAIL'} {outcome.kind:<11} {outcome.name}: {outcome.detail}")
    return good
