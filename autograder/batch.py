"""Grade a folder of submissions into a CSV gradebook; a re-run resumes (keyed by content hash).

Every ``*.ipynb`` under the folder is a submission (any layout nbgrader or an LMS export produces);
its student id is the path relative to the folder, without the suffix. One crashing or hostile
submission only affects its own row.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from pathlib import Path
from typing import Optional

from autograder.grading import Options, grade
from autograder.report import result_json, write_atomic
from autograder.sandbox import GraderError

COLUMNS = ["student", "topic", "score", "max_score", "passed", "failed", "errors", "timeouts", "sha256", "status"]


def find_submissions(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.ipynb")
                  if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_gradebook(path: Path) -> dict[str, dict]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="utf-8") as handle:
        return {row["student"]: row for row in csv.DictReader(handle) if row.get("student")}


def _write_gradebook(path: Path, rows: dict[str, dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for student in sorted(rows):
        writer.writerow(rows[student])
    write_atomic(path, buffer.getvalue())


def run_batch(folder: Path, out: Path, options: Options, topic_name: str = "auto",
              json_dir: Optional[Path] = None) -> int:
    from tqdm import tqdm

    from autograder.topics import detect_topic, get_topic

    if not folder.is_dir():
        print(f"error: {folder}: not a folder", file=sys.stderr)
        return 2
    json_dir = json_dir or out.parent / (out.stem + "_results")
    rows = _read_gradebook(out)
    submissions = find_submissions(folder)
    options = Options(**{**options.__dict__, "hide": (*options.hide, str(folder.resolve()))})
    for path in tqdm(submissions, desc="grading", unit="nb"):
        student = str(path.relative_to(folder).with_suffix(""))
        digest = _digest(path)
        if rows.get(student, {}).get("sha256") == digest and rows[student].get("status") == "graded":
            continue
        row = {"student": student, "sha256": digest}
        try:
            topic = detect_topic(path) if topic_name == "auto" else get_topic(topic_name)
            result = grade(path, topic, options)
        except KeyError as err:
            row.update(status=f"unknown topic: {err.args[0]}", score=0, max_score=0)
        except GraderError:
            raise
        except Exception as err:  # noqa: BLE001 - an unreadable file is that student's problem
            row.update(status=f"unreadable: {type(err).__name__}: {err}"[:200], score=0, max_score=0)
        else:
            counts = {s: sum(t.status == s for t in result.tests) for s in ("passed", "failed", "error", "timeout")}
            row.update(topic=result.topic, score=round(result.score, 4), max_score=round(result.max_score, 4),
                       passed=counts["passed"], failed=counts["failed"], errors=counts["error"],
                       timeouts=counts["timeout"], status="graded")
            write_atomic(json_dir / f"{student.replace('/', '__')}.json", json.dumps(result_json(result), indent=2))
        rows[student] = row
        _write_gradebook(out, rows)
    _write_gradebook(out, rows)
    print(f"gradebook: {out} ({len(rows)} submissions)")
    return 0
