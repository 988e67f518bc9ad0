"""Reports of a grading run: a terminal table, the JSON of DESIGN.md, and Gradescope's results.json.

Every file is written atomically (temp file in the same folder, then rename), so a crash never
leaves a half-written report.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import textwrap
import time
from pathlib import Path

from autograder.grading import GradeResult

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "error": "ERR ", "timeout": "TIME", "skipped": "skip"}


def write_atomic(path: Path | str, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a notebook or report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def result_json(result: GradeResult) -> dict:
    """The DESIGN.md JSON: {topic, score, max_score, tests: [...]} plus provenance fields."""
    data = result.to_dict()
    data["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    keys = ("name", "function", "kind", "score", "max_score", "status", "message", "device", "public", "seconds")
    data["tests"] = [{**{k: t[k] for k in keys}, **({"figures": t["figures"]} if t.get("figures") else {})}
                     for t in data["tests"]]
    return data


def gradescope_json(result: GradeResult) -> dict:
    """Gradescope's results.json: reference-free (public) checks visible, the rest after publication."""
    tests = []
    for test in result.tests:
        tests.append({
            "name": test.name,
            "score": test.score,
            "max_score": test.max_score,
            "status": "passed" if test.status == "passed" else "failed",
            "output": f"[{test.status}] {test.message}",
            "tags": [test.kind, test.function],
            "visibility": "visible" if test.public else "after_published",
        })
    return {"score": round(result.score, 4), "tests": tests, "visibility": "visible",
            "stdout_visibility": "hidden",
            "output": f"Isolation: {'; '.join(result.isolation) or 'none reported'}"}


def table(result: GradeResult, width: int | None = None) -> str:
    """A plain-text table a terminal shows well (no colour codes: it also goes into logs)."""
    width = width or min(shutil.get_terminal_size((110, 20)).columns, 140)
    lines = [f"{result.topic}: {result.notebook}", "-" * width]
    name_w = min(48, max([len(t.name) for t in result.tests] + [10]))
    for test in result.tests:
        head = f"{STATUS_MARK.get(test.status, test.status):4} {test.name:<{name_w}} {test.kind:<10} " \
               f"{test.score:>5.2f}/{test.max_score:<5.2f}"
        lines.append(head)
        if test.status != "passed" and test.message:
            for part in textwrap.wrap(test.message, width - 7)[:6]:
                lines.append("       " + part)
    lines.append("-" * width)
    counts = {s: sum(t.status == s for t in result.tests) for s in STATUS_MARK}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    lines.append(f"score {result.score:.2f} / {result.max_score:.2f}   ({summary}; {result.seconds:.1f} s on "
                 f"{result.device})")
    if result.load_report.get("errors"):
        lines.append("notebook problems: " + "; ".join(result.load_report["errors"][:5]))
    lines.append("isolation: " + ("; ".join(result.isolation) or "none reported"))
    return "\n".join(lines)


def save(result: GradeResult, json_path=None, gradescope_path=None) -> None:
    if json_path:
        write_atomic(json_path, json.dumps(result_json(result), indent=2) + "\n")
    if gradescope_path:
        write_atomic(gradescope_path, json.dumps(gradescope_json(result), indent=2) + "\n")
