"""Seed sweeps: does a check's verdict depend on the run's seed?

Each grading run draws a fresh seed (so no submission can special-case the probe's inputs), which means
one mutant run proves a check for one seed only. A check that catches a planted bug for most seeds but
not all (``q_sample.statistics`` once drew a t so near 0 that x_t ~ x0 with or without the square roots),
or an oracle that rejects the reference for a rare seed (float32 round-off), fails CI now and then and
grades students by luck. This module replays the probes and judges of the cheap checks for many seeds,
in this process (no sandbox: only the reference and the kit's own patched copies run), and lists every
seed on which

* the reference fails a check (``reference`` sweep);
* a mutant escapes a check named in its ``caught_by``;
* an alternative valid implementation fails a check of its function.

Used by ``python -m autograder seeds TOPIC`` and ``tests/test_selfproof.py``. Quality checks train with a
fixed seed and CUDA-only checks need a GPU; both are left to ``mutants``.
"""
from __future__ import annotations

import contextlib
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

import nbformat
import numpy as np

from autograder.grading import REPO, _judge
from autograder.mutants import Mutant, apply_patch, catalogue
from autograder.spec import Check, JudgeContext, ProbeContext, Topic
from autograder.topics import get_topic

PATCHED_MARK = "gen3d-seeds-"  # starts the file name of each patched notebook: code from there is the "student's"


@dataclass
class SweepLine:
    """One (implementation, check) pair: the seeds tried and those on which the verdict was wrong."""

    topic: str
    subject: str  # "reference", or the mutant / alternative name
    kind: str  # reference | mutant | alternative
    check: str
    tried: int = 0
    bad_seeds: list = field(default_factory=list)
    first_error: str = ""  # the message of the first wrong verdict

    @property
    def ok(self) -> bool:
        return not self.bad_seeds

    def describe(self) -> str:
        head = f"{'ok  ' if self.ok else 'FAIL'} {self.kind:<11} {self.subject} / {self.check}: {self.tried} seeds"
        if self.ok:
            return head
        return f"{head}, wrong on {len(self.bad_seeds)}: {self.bad_seeds[:8]} ({self.first_error[:200]})"


def sweep_seeds(count: int, base: Optional[int] = None) -> list[int]:
    """``count`` run seeds, drawn as the grader draws them (below 2**31); reproducible from ``base``."""
    rng = random.Random(base) if base is not None else random.SystemRandom()
    return [rng.randrange(2**31) for _ in range(count)]


def sweepable(check: Check) -> bool:
    """Checks whose inputs come from the run seed, and that run on the CPU."""
    return not check.cuda_only and check.fixed_seed is None and check.kind != "quality"


def _plain(output) -> dict:
    """A probe's output as the judge sees it after the child -> parent round trip."""
    from autograder.child import to_plain

    plain, arrays = to_plain(output)
    return {**plain, **{key: np.array(value) for key, value in arrays.items()}}


def _probe(check: Check, ns, seed: int, deps, workdir: str):
    import torch

    ctx = ProbeContext(ns=ns, seed=seed, device=torch.device("cpu"), deps=deps, workdir=workdir)
    return _plain(check.probe(ctx))


def _verdict(check: Check, student_ns, reference_ns, seed: int, deps, workdir: str) -> tuple[bool, str]:
    """(passed, message) of one check for one seed; a probe that raises is a failure."""
    try:
        student = _probe(check, student_ns, seed, deps, workdir)
    except Exception as err:  # noqa: BLE001 - a mutant may crash the probe; that counts as caught
        return False, f"probe raised {type(err).__name__}: {err}"
    reference = _probe(check, reference_ns, seed, deps, workdir) if check.needs_reference else None
    verdict = _judge(check, student, reference, JudgeContext(check, seed, "cpu"))
    return verdict.passed, verdict.message


@contextlib.contextmanager
def _guarded(topic: Topic, marker: str) -> Iterator[None]:
    """The child's guard on the kit functions a student may not call, for code loaded from a notebook whose
    name contains ``marker``; undone afterwards (this process may be pytest)."""
    from autograder.child import _forbid

    originals = _forbid(topic.forbidden, marker)
    try:
        yield
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """One torch thread, as the graders' children on a shared machine; restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _subjects(topic_name: str, reference: bool, names: Optional[Sequence[str]]):
    """(subject, kind, patch or None, the names of the checks it is judged on)."""
    topic = get_topic(topic_name)
    if reference:
        yield "reference", "reference", None, [c.name for c in topic.checks]
    mutants, alternatives = catalogue(topic_name)
    for patch in [*mutants, *alternatives]:
        if names and patch.name not in names:
            continue
        if isinstance(patch, Mutant):
            yield patch.name, "mutant", patch, list(patch.caught_by)
        else:
            yield patch.name, "alternative", patch, [c.name for c in topic.checks if c.function == patch.function]


def sweep_topic(topic_name: str, seeds: Sequence[int], names: Optional[Sequence[str]] = None,
                reference: bool = True, seconds_per_check: float = 30.0, echo=print) -> list[SweepLine]:
    """Replay every sweepable check of the reference (when ``reference``) and of the named mutants and
    alternatives (all when ``names`` is empty) for ``seeds``; at most ``seconds_per_check`` per pair
    (the seeds are tried in order, so the first ones always run)."""
    from autograder.child import _load_deps
    from gen3d.notebook import load_notebook

    topic = get_topic(topic_name)
    checks = {c.name: c for c in topic.checks}
    deps = _load_deps(topic, str(REPO), None) if topic.depends else None
    solution = nbformat.read(REPO / topic.notebook, as_version=4)
    lines = []
    with tempfile.TemporaryDirectory(prefix="gen3d-sweep-") as tmp, _guarded(topic, PATCHED_MARK), _one_thread():
        reference_ns = load_notebook(REPO / topic.notebook, names=list(topic.functions))
        for subject, kind, patch, check_names in _subjects(topic_name, reference, names):
            if patch is None:
                student_ns = reference_ns
            else:
                path = Path(tmp) / f"{PATCHED_MARK}{patch.name}.ipynb"
                nbformat.write(apply_patch(solution, patch), path)
                student_ns = load_notebook(path, names=list(topic.functions))
            for check_name in check_names:
                check = checks[check_name]
                if not sweepable(check):
                    continue
                line = SweepLine(topic_name, subject, kind, check_name)
                started = time.monotonic()
                for seed in seeds:
                    passed, message = _verdict(check, student_ns, reference_ns, seed, deps, tmp)
                    line.tried += 1
                    if passed == (kind == "mutant"):
                        line.first_error = line.first_error or message
                        line.bad_seeds.append(seed)
                    if time.monotonic() - started > seconds_per_check:
                        break
                lines.append(line)
                echo(line.describe())
    return lines
