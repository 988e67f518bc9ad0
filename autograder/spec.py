"""How a topic describes its tests: the only API a topic module needs.

A test is split in two halves so that student code never judges itself:

* ``probe(ctx) -> dict`` runs **in the sandboxed child**, once against the student's loaded notebook
  and once against the reference (same seed, so the same inputs). It calls the function under test
  and returns plain data: tensors, numpy arrays, numbers, strings, bools, lists of those.
* ``judge(student, reference, ctx) -> Verdict`` runs **in the parent** on those plain outputs.
  ``reference`` is ``None`` for reference-free checks (``needs_reference=False``); those are the
  only ones a student can run locally (``--public-only``), since students have no reference.

Everything a student probe returns is the student's word: student code runs in the same process and
can patch anything there (``gen3d.metrics`` included). So a probe returns *raw outputs* (tensors,
samples) and the judge computes every figure that decides a score, in the parent. A quality probe
returns the samples of the trained model; the judge scores them with ``gen3d.metrics``/``gen3d.features``.

A topic module in ``autograder/topics/`` defines ``TOPIC = Topic(...)``; the registry finds it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

KINDS = ("shape", "value", "gradient", "device", "robustness", "quality")
STATUSES = ("passed", "failed", "error", "timeout", "skipped")


@dataclass
class Verdict:
    """What a judge decides. ``fraction`` in [0, 1] gives partial credit (default: all or none)."""

    passed: bool
    message: str = ""
    fraction: Optional[float] = None

    def score_fraction(self) -> float:
        if self.fraction is None:
            return 1.0 if self.passed else 0.0
        return float(min(1.0, max(0.0, self.fraction)))


@dataclass
class ProbeContext:
    """What a probe sees in the child.

    ns:      the loaded notebook (student or reference) as a module; ``ctx.ns.volume_render``.
    seed:    this run's seed (fresh each grading run, identical for student and reference).
    device:  the ``torch.device`` the test runs on.
    deps:    namespace of earlier topics' pieces this topic builds on (reference versions).
    workdir: a scratch folder the probe may write to.
    """

    ns: Any
    seed: int
    device: Any
    deps: Any = None
    workdir: str = "."

    def generator(self, offset: int = 0):
        """A CPU ``torch.Generator`` seeded from this run's seed (plus ``offset``)."""
        import torch

        return torch.Generator().manual_seed((self.seed + 7919 * offset) % (2**63 - 1))

    def fn(self, name: str):
        """The graded object ``name`` from the notebook, with a clear error if it is missing."""
        obj = getattr(self.ns, name, None)
        if obj is None:
            raise MissingDefinition(name)
        return obj


class MissingDefinition(LookupError):
    """Raised by a probe when the notebook does not define a graded name."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


@dataclass
class JudgeContext:
    """What a judge sees in the parent: the test, the seed and the device name."""

    test: "Check"
    seed: int
    device: str


@dataclass
class Check:
    """One graded test.

    name:            unique within the topic, ``<function>.<what>``, e.g. ``volume_render.weights_sum``.
    function:        the graded function or class it exercises (``--only`` selects on this).
    kind:            one of KINDS.
    points:          its weight in the score.
    probe, judge:    see the module docstring.
    needs_reference: False for checks that judge against hand-computed cases or invariants only;
                     those are public (students can run them). Checks that compare with the
                     reference, and quality checks, are hidden.
    cuda_only:       run only where CUDA is available; elsewhere reported ``skipped`` (0 of 0).
    timeout:         seconds for the probe (per side); a student probe over it is ``timeout``.
    fixed_seed:      quality checks train with a fixed seed so the reference's figure can be cached.
    figure:          optional ``figure(student, reference, ctx) -> [(title, matplotlib Figure), ...]``, run
                     in the parent on the same plain data as the judge, for the HTML report (e.g. the
                     student's samples beside the reference's). Never affects the score.
    """

    name: str
    function: str
    kind: str
    probe: Callable[[ProbeContext], Mapping[str, Any]]
    judge: Callable[[Mapping[str, Any], Optional[Mapping[str, Any]], JudgeContext], Verdict]
    points: float = 1.0
    needs_reference: bool = True
    cuda_only: bool = False
    timeout: float = 60.0
    fixed_seed: Optional[int] = None
    figure: Optional[Callable[..., list]] = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Check {self.name!r}: kind {self.kind!r} not in {KINDS}")
        if not self.name.startswith(self.function + "."):
            raise ValueError(f"Check {self.name!r} must be named '{self.function}.<what>'")
        if self.points <= 0:
            raise ValueError(f"Check {self.name!r}: points must be positive")

    @property
    def public(self) -> bool:
        return not self.needs_reference


class ForbiddenCall(RuntimeError):
    """Student code called a kit function that does the graded function's job."""


@dataclass
class Topic:
    """A graded topic.

    name:      folder name, e.g. ``01_voxel_gan``.
    notebook:  path of the reference notebook relative to the repo root.
    functions: graded names the notebook must define (grade_ids of its graded cells).
    checks:    the tests.
    depends:   ``{topic_name: [names]}`` of earlier topics' reference pieces given to probes as
               ``ctx.deps`` (graded with the reference versions, so one bug is charged once).
    forbidden: dotted names of kit functions that do a graded function's job (e.g. the dataset
               renderer's ``gen3d.render_data.camera_rays`` for 02's ``get_rays``): called from the
               student's own code they raise :class:`ForbiddenCall`; the kit's loops may still use them.
    """

    name: str
    notebook: str
    functions: Sequence[str]
    checks: Sequence[Check]
    depends: Mapping[str, Sequence[str]] = field(default_factory=dict)
    forbidden: Sequence[str] = ()

    def __post_init__(self):
        names = [c.name for c in self.checks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"Topic {self.name}: duplicate check names {dupes}")
        unknown = sorted({c.function for c in self.checks} - set(self.functions))
        if unknown:
            raise ValueError(f"Topic {self.name}: checks name functions not in `functions`: {unknown}")


# ----------------------------------------------------------------------------------------------
# Judge helpers: small, composable comparisons that write teaching messages.
# ----------------------------------------------------------------------------------------------

def as_array(value: Any, what: str) -> np.ndarray:
    """``value`` as a numpy array, or a ``Verdict``-friendly ``ValueError`` naming ``what``."""
    if value is None:
        raise ValueError(f"{what} is missing (the function returned None?)")
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError(f"{what} is not numeric data")
    return array


def describe(array: np.ndarray) -> str:
    """A short human description of an array: shape, dtype and range."""
    array = np.asarray(array)
    if array.size == 0:
        return f"empty array of shape {tuple(array.shape)}"
    if np.issubdtype(array.dtype, np.number) or array.dtype == bool:
        finite = np.isfinite(array.astype(np.float64))
        rng = ""
        if finite.any():
            vals = array.astype(np.float64)[finite]
            rng = f", range [{vals.min():.4g}, {vals.max():.4g}]"
        nonfinite = int((~finite).sum())
        extra = f", {nonfinite} non-finite" if nonfinite else ""
        return f"shape {tuple(array.shape)}, dtype {array.dtype}{rng}{extra}"
    return f"shape {tuple(array.shape)}, dtype {array.dtype}"


def expect_shape(student: Mapping[str, Any], key: str, shape: Sequence[int], label: str,
                 hint: str = "") -> Verdict:
    """Pass when ``student[key]`` has exactly ``shape``."""
    try:
        got = as_array(student.get(key), f"{label}")
    except ValueError as err:
        return Verdict(False, str(err))
    if tuple(got.shape) != tuple(shape):
        return Verdict(False, f"{label}: expected shape {tuple(shape)}, got {tuple(got.shape)}. {hint}".strip())
    return Verdict(True, f"{label}: shape {tuple(shape)}")


def expect_close(student: Mapping[str, Any], reference: Mapping[str, Any], key: str, label: str,
                 rtol: float = 1e-4, atol: float = 1e-5, hint: str = "") -> Verdict:
    """Pass when ``student[key]`` matches ``reference[key]`` in shape and value (finite, allclose)."""
    try:
        got = as_array(student.get(key), label)
        want = as_array(reference.get(key), f"reference {label}")
    except ValueError as err:
        return Verdict(False, str(err))
    if got.shape != want.shape:
        return Verdict(False, f"{label}: expected shape {want.shape}, got {got.shape}. {hint}".strip())
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    if not np.isfinite(got64).all() and np.isfinite(want64).all():
        bad = int((~np.isfinite(got64)).sum())
        return Verdict(False, f"{label}: {bad} of {got.size} values are NaN/inf, the reference has none. "
                              f"{hint}".strip())
    if np.allclose(got64, want64, rtol=rtol, atol=atol, equal_nan=True):
        return Verdict(True, f"{label} matches the reference")
    got64, want64 = np.atleast_1d(got64), np.atleast_1d(want64)  # a 0-d scalar indexes like a (1,) array
    err = np.abs(got64 - want64)
    err[~np.isfinite(err)] = np.inf
    worst = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    return Verdict(False, f"{label} differs from the reference: max |error| {float(err.max()):.3g} at index "
                          f"{tuple(int(i) for i in worst)} (got {got64[worst]:.6g}, expected {want64[worst]:.6g}; "
                          f"tolerance rtol={rtol:g}, atol={atol:g}). {hint}".strip())


def all_of(*verdicts: Verdict) -> Verdict:
    """Pass when every verdict passes; the message is the first failure's, else all passes joined."""
    for verdict in verdicts:
        if not verdict.passed:
            return verdict
    return Verdict(True, "; ".join(v.message for v in verdicts if v.message))


def scalar(student: Mapping[str, Any], key: str, label: str) -> float:
    """``student[key]`` as a finite float, or ``ValueError`` naming ``label``."""
    value = student.get(key)
    try:
        number = float(np.asarray(value).reshape(()))
    except Exception as err:  # noqa: BLE001 - any malformed value is the student's
        raise ValueError(f"{label}: expected a single number, got {value!r:.80}") from err
    if not math.isfinite(number):
        raise ValueError(f"{label} is {number}")
    return number


def replace(check: Check, **changes) -> Check:
    """A copy of ``check`` with fields changed (for building device variants of a check)."""
    return dataclasses.replace(check, **changes)


# ----------------------------------------------------------------------------------------------
# Building checks: the shared pattern of the topic modules.
# ----------------------------------------------------------------------------------------------

def reports_problems(judge: Callable) -> Callable:
    """Wrap a judge: when the probe returned ``{"problem": message}`` (the student's output was malformed,
    e.g. not a tensor), the check fails with that message instead of reaching the comparison."""
    def wrapped(student, reference, ctx):
        problem = student.get("problem") if isinstance(student, dict) else "no outputs"
        if problem:
            return Verdict(False, str(problem))
        return judge(student, reference, ctx)
    return wrapped


def make_check(name: str, kind: str, probe: Callable, judge: Callable, public: bool, **options) -> Check:
    """A ``Check`` whose function is the part of ``name`` before the dot; public checks need no reference."""
    return Check(name=name, function=name.split(".")[0], kind=kind, probe=probe, judge=reports_problems(judge),
                 needs_reference=not public, **options)


def tensor_problem(value: Any, shape: Sequence[int], label: str) -> Optional[str]:
    """A message when ``value`` is not a tensor of ``shape``, else None (for a probe's ``{"problem": ...}``)."""
    import torch

    if not torch.is_tensor(value):
        return f"{label} should be a torch.Tensor, got {type(value).__name__}"
    if tuple(value.shape) != tuple(shape):
        return f"{label}: expected shape {tuple(shape)}, got {tuple(value.shape)}"
    return None


def tensor_device_probe(run: Callable) -> Callable:
    """A device probe: ``run(ctx, torch)`` returns the output tensors; report their devices, dtypes and
    finiteness (a judge compares them with ``ctx.device``)."""
    def probe(ctx):
        import torch

        outs = run(ctx, torch)
        outs = outs if isinstance(outs, (tuple, list)) else (outs,)
        if not all(torch.is_tensor(o) for o in outs):
            return {"problem": f"{ctx.device}: expected tensors, got {[type(o).__name__ for o in outs]}"}
        return {"devices": [o.device.type for o in outs], "dtypes": [str(o.dtype) for o in outs],
                "finite": all(bool(torch.isfinite(o.float()).all()) for o in outs if o.is_floating_point()),
                "want_device": ctx.device.type}
    return probe
