"""Grade one notebook: run each check's probe on the reference and on the submission, judge in here.

The reference runs in its own (trusted) child; the submission in a sandboxed one. Seeds are fresh
for every grading run (the same for both sides), except for quality checks, which train with a fixed
seed so the reference's figures can be cached in ``.cache/reference/``.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import secrets
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from autograder.sandbox import Child, ChildStartError, GraderError, ProbeResult
from autograder.spec import Check, JudgeContext, Topic, Verdict

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "reference"


@dataclass
class TestResult:
    name: str
    function: str
    kind: str
    score: float
    max_score: float
    status: str
    message: str
    device: str = "cpu"
    public: bool = True
    seconds: float = 0.0
    figures: list = field(default_factory=list)  # [{"title": str, "png": base64 str}] for the HTML report


@dataclass
class GradeResult:
    topic: str
    notebook: str
    score: float = 0.0
    max_score: float = 0.0
    tests: list = field(default_factory=list)
    isolation: list = field(default_factory=list)
    load_report: dict = field(default_factory=dict)
    seed: int = 0
    device: str = "cpu"
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["score"] = round(self.score, 4)
        data["max_score"] = round(self.max_score, 4)
        return data


@dataclass
class Options:
    device: str = "cpu"
    public_only: bool = False
    only: Sequence[str] = ()          # function names: run only their checks
    checks: Sequence[str] = ()        # check names: run only these (the mutant self-tests use it)
    timeout: Optional[float] = None
    isolation: str = "auto"
    memory_mb: int = 6144
    threads: int = 0
    use_cache: bool = True
    hide: Sequence[str] = ()
    reference: Optional[Path] = None
    figures: bool = False             # draw the checks' figures (for the HTML report)
    keep_reference: bool = False      # keep the (trusted) reference child alive for the next grading of
                                      # the same topic: the self-proof grades hundreds of mutants


def available_devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def plan(topic: Topic, options: Options) -> list[tuple[Check, str]]:
    """The (check, device) pairs to run. Device checks run on every available device."""
    devices = available_devices()
    selected = [c for c in topic.checks
                if (not options.only or c.function in options.only)
                and (not options.checks or c.name in options.checks)
                and (not options.public_only or c.public)]
    runs = []
    for check in selected:
        targets = ["cpu", "cuda"] if check.kind == "device" else [options.device]
        if check.cuda_only:
            targets = ["cuda"]
        runs.extend((check, device) for device in dict.fromkeys(targets))
    del devices
    return runs


def _display_name(check: Check, device: str, options: Options) -> str:
    return f"{check.name}@{device}" if (check.kind == "device" or device != options.device) else check.name


def _check_seed(base: int, check: Check) -> int:
    if check.fixed_seed is not None:
        return int(check.fixed_seed)
    digest = hashlib.sha256(f"{base}:{check.name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _cache_key(topic: Topic, check: Check, device: str, reference: Path) -> str:
    import torch

    from gen3d.notebook import read_code_cells

    graded = "".join(c.source for c in read_code_cells(reference) if c.graded or c.helper)
    probe_src = inspect.getsource(inspect.getmodule(check.probe))
    kit_src = "".join(p.read_text(encoding="utf-8") for p in sorted((REPO / "gen3d").glob("*.py")))  # training loops
    # what quality runs read besides code: the run mode, the dataset manifest and the trained priors' metadata
    data = "".join(p.read_text(encoding="utf-8", errors="replace") for p in
                   [REPO / "data" / "manifest.json", *sorted((REPO / "data" / "priors").glob("*.json"))] if p.is_file())
    text = "|".join([topic.name, check.name, device, torch.__version__, str(check.fixed_seed), graded, probe_src,
                     kit_src, os.environ.get("GEN3D_MODE", ""), data])
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _cache_load(key: str) -> Optional[dict]:
    path = CACHE / f"{key}.npz"
    meta = CACHE / f"{key}.json"
    if not (path.is_file() and meta.is_file()):
        return None
    data = json.loads(meta.read_text())
    with np.load(path, allow_pickle=False) as arrays:
        data.update({k: arrays[k] for k in arrays.files})
    return data


def _cache_store(key: str, data: dict) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in data.items() if isinstance(v, np.ndarray)}
    plain = {k: v for k, v in data.items() if not isinstance(v, np.ndarray)}
    tmp = CACHE / f".{key}.{os.getpid()}.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, CACHE / f"{key}.npz")
    tmp_json = CACHE / f".{key}.{os.getpid()}.json"
    tmp_json.write_text(json.dumps(plain, default=str))
    os.replace(tmp_json, CACHE / f"{key}.json")


def explain_error(error: dict, check: Check, load_report: dict) -> str:
    """A teaching message for a probe that raised in the student's code."""
    kind = error.get("type", "Error")
    message = error.get("message", "")
    where = f" ({error['where']})" if error.get("where") else ""
    if error.get("missing") or kind == "MissingDefinition":
        name = error.get("missing") or check.function
        extra = ""
        if load_report.get("errors"):
            extra = " The loader reported: " + "; ".join(load_report["errors"][:3])
        return (f"the notebook does not define `{name}`: no graded cell with grade_id '{name}' and no "
                f"`def {name}`/`class {name}` in any code cell.{extra}")
    if kind == "NotImplementedError":
        return f"`{check.function}` is not implemented yet (it still raises NotImplementedError){where}."
    if kind == "Crash":
        output = error.get("output", "").strip()
        return f"`{check.function}` crashed the grading process: {message}." + (
            f" Last output: {output[-300:]}" if output else "")
    if kind in ("SystemExit", "KeyboardInterrupt"):
        return f"`{check.function}` tried to exit the interpreter ({kind}{': ' + message if message else ''}){where}."
    return f"`{check.function}` raised {kind}: {message}{where}"


def _judge(check: Check, student: dict, reference: Optional[dict], ctx: JudgeContext) -> Verdict:
    try:
        verdict = check.judge(student, reference, ctx)
        if not isinstance(verdict, Verdict):
            raise GraderError(f"judge of {check.name} returned {type(verdict).__name__}, not Verdict")
        return verdict
    except GraderError:
        raise
    except Exception as err:  # noqa: BLE001 - garbage student outputs can trip a judge
        return Verdict(False, f"`{check.function}` returned outputs the check could not read "
                              f"({type(err).__name__}: {err})")


def _check_topic_module_visible(topic: Topic, hide: Sequence[str]) -> None:
    """The student's child imports the topic's checks after the hidden folders are mounted over, so the
    topic module must not live in one of them (e.g. beside its reference notebook)."""
    module = next((m for m in list(sys.modules.values()) if getattr(m, "TOPIC", None) is topic), None)
    path = Path(getattr(module, "__file__", "") or "").resolve()
    for folder in hide:
        if path.is_file() and path.is_relative_to(Path(folder).resolve()):
            raise GraderError(f"topic module {path} lies in {folder}, which is hidden from the student's "
                              "process: keep reference notebooks in a folder of their own")


def grade(notebook: Path, topic: Topic, options: Options) -> GradeResult:
    """Grade ``notebook`` against ``topic``. Raises GraderError only for failures of the grader."""
    started = time.monotonic()
    runs = plan(topic, options)
    base_seed = secrets.randbelow(2**31)
    devices = available_devices()
    result = GradeResult(topic=topic.name, notebook=str(notebook), seed=base_seed, device=options.device)
    reference_path = Path(options.reference) if options.reference else REPO / topic.notebook
    needs_ref = any(c.needs_reference for c, d in runs if d in devices)
    if needs_ref and not reference_path.is_file():
        raise GraderError(f"reference notebook {reference_path} not found: hidden checks need it "
                          "(students: use --public-only)")
    hide = [str(REPO / "solutions"), str(REPO / "autograder" / "mutants"), str(REPO / ".cache"),
            str(reference_path.resolve().parent), *[str(h) for h in options.hide]]
    hide = [h for h in dict.fromkeys(hide) if not Path(REPO).resolve().is_relative_to(Path(h).resolve())]
    _check_topic_module_visible(topic, hide)
    CACHE.mkdir(parents=True, exist_ok=True)  # exists before the child starts, so it is hidden too
    cuda = options.device.startswith("cuda")
    memory = 0 if cuda else options.memory_mb
    student = Child(notebook, topic.name, REPO, mode=options.isolation, hide=tuple(hide), memory_mb=memory,
                    threads=options.threads, watch_rss=cuda, guard=True)
    reference = _reference_child(topic, reference_path, options) if needs_ref else None
    student_dead: Optional[str] = None
    try:
        # the reference runs first and exits before the student's child starts: one child at a time keeps
        # the peak memory of a grading at (parent + one child), which small graders (Gradescope) need
        ref_outputs = {}
        if reference is not None:
            for check, device in runs:
                if check.needs_reference and device in devices:
                    ref_outputs[check.name, device] = _reference_outputs(
                        reference, topic, check, _check_seed(base_seed, check), device, reference_path, options)
            if not options.keep_reference:
                reference.close()
        try:
            student.start()
        except ChildStartError as err:
            student_dead = f"the notebook could not be loaded at all: {err}"
        result.isolation = list(student.isolation)
        result.load_report = dict(student.load_report)
        for check, device in runs:
            name = _display_name(check, device, options)
            test = TestResult(name, check.function, check.kind, 0.0, float(check.points), "failed", "",
                              device=device, public=check.public)
            if device not in devices:
                test.status, test.max_score = "skipped", 0.0
                test.message = f"needs {device.upper()}, which is not available on this machine"
                result.tests.append(test)
                continue
            seed = _check_seed(base_seed, check)
            timeout = options.timeout or check.timeout
            ref_data = ref_outputs.get((check.name, device))
            if student_dead:
                test.status, test.message = "error", student_dead
            else:
                outcome = student.run(check.name, seed, device, timeout)
                test.seconds = round(outcome.seconds, 3)
                _score(test, check, outcome, ref_data, JudgeContext(check, seed, device), result.load_report,
                       timeout)
                if options.figures and check.figure is not None and outcome.status == "ok":
                    test.figures = _figures(check, outcome.data, ref_data, JudgeContext(check, seed, device))
            result.tests.append(test)
    finally:
        student.close()
        if reference is not None and not options.keep_reference:
            reference.close()
    result.score = sum(t.score for t in result.tests)
    result.max_score = sum(t.max_score for t in result.tests)
    result.seconds = round(time.monotonic() - started, 2)
    return result


_KEPT_REFERENCES: dict = {}


def _reference_child(topic: Topic, reference_path: Path, options: Options) -> Child:
    """A child for the reference (trusted: no sandbox); with ``keep_reference`` one per (topic, notebook,
    threads) lives on between gradings, until the process exits."""
    if not options.keep_reference:
        return Child(reference_path, topic.name, REPO, mode="off", threads=options.threads)
    key = (topic.name, str(reference_path.resolve()), reference_path.stat().st_mtime_ns, options.threads)
    if key not in _KEPT_REFERENCES:
        if not _KEPT_REFERENCES:
            import atexit

            atexit.register(lambda: [child.close() for child in _KEPT_REFERENCES.values()])
        _KEPT_REFERENCES[key] = Child(reference_path, topic.name, REPO, mode="off", threads=options.threads)
    return _KEPT_REFERENCES[key]


def _reference_outputs(reference: Child, topic: Topic, check: Check, seed: int, device: str,
                       reference_path: Path, options: Options) -> dict:
    key = None
    if check.fixed_seed is not None and options.use_cache:
        key = _cache_key(topic, check, device, reference_path)
        cached = _cache_load(key)
        if cached is not None:
            return cached
    outcome = reference.run(check.name, seed, device, max(300.0, 5 * check.timeout))
    if outcome.status != "ok":
        raise GraderError(f"the reference failed check {check.name} on {device} ({outcome.status}): "
                          f"{outcome.error.get('type', '')}: {outcome.error.get('message', '')}\n"
                          f"{outcome.error.get('traceback', '')}")
    if key is not None:
        _cache_store(key, outcome.data)
    return outcome.data


def _figures(check: Check, student: dict, reference: Optional[dict], ctx: JudgeContext) -> list[dict]:
    """The check's figures as base64 PNGs; a figure that cannot be drawn is replaced by a note."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    try:
        for title, fig in check.figure(student, reference, ctx):
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
            plt.close(fig)
            drawn.append({"title": str(title), "png": base64.b64encode(buffer.getvalue()).decode("ascii")})
    except Exception as err:  # noqa: BLE001 - a figure never costs points or stops grading
        drawn.append({"title": f"(figure not drawn: {type(err).__name__}: {err})"[:300], "png": ""})
    return drawn


def _score(test: TestResult, check: Check, outcome: ProbeResult, ref_data: Optional[dict],
           ctx: JudgeContext, load_report: dict, timeout: float) -> None:
    if outcome.status == "timeout":
        test.status = "timeout"
        test.message = f"`{check.function}` did not finish within {timeout:g} s: an infinite loop, or far too slow?"
        return
    if outcome.status != "ok":
        test.status = "error"
        test.message = explain_error(outcome.error, check, load_report)
        return
    verdict = _judge(check, outcome.data, ref_data, ctx)
    test.score = round(float(check.points) * verdict.score_fraction(), 4)
    test.status = "passed" if verdict.passed else "failed"
    test.message = verdict.message or ("ok" if verdict.passed else "failed")
