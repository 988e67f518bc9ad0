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
import os
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


def _student_id(path: Path, folder: Path) -> str:
    return str(path.relative_to(folder).with_suffix(""))


def grade_one(path: Path, folder: Path, options: Options, topic_name: str, json_dir: Path,
              html_dir: Optional[Path]) -> dict:
    """Grade one submission; write its JSON (and HTML) result; return its gradebook row. A file the grader
    cannot read costs only this row; a failure of the grader itself (``GraderError``) propagates."""
    from autograder.topics import detect_topic, get_topic

    student = _student_id(path, folder)
    row = {"student": student, "sha256": _digest(path)}
    try:
        topic = detect_topic(path) if topic_name == "auto" else get_topic(topic_name)
        result = grade(path, topic, options)
    except KeyError as err:
        row.update(status=f"unknown topic: {err.args[0]}", score=0, max_score=0)
        return row
    except GraderError:
        raise
    except Exception as err:  # noqa: BLE001 - an unreadable file is that student's problem
        row.update(status=f"unreadable: {type(err).__name__}: {err}"[:200], score=0, max_score=0)
        return row
    counts = {s: sum(t.status == s for t in result.tests) for s in ("passed", "failed", "error", "timeout")}
    row.update(topic=result.topic, score=round(result.score, 4), max_score=round(result.max_score, 4),
               passed=counts["passed"], failed=counts["failed"], errors=counts["error"],
               timeouts=counts["timeout"], status="graded")
    stem = student.replace("/", "__")
    data = result_json(result)
    write_atomic(json_dir / f"{stem}.json", json.dumps(data, indent=2))
    if html_dir is not None:
        from autograder.html_report import write_html

        write_html(data, html_dir / f"{stem}.html")
    return row


def _already_graded(row: dict, path: Path) -> bool:
    """Is the gradebook ``row`` a finished grading of this very file (same content hash)?"""
    return row.get("status") == "graded" and row.get("sha256") == _digest(path)


def _assign_gpu(counter, gpus: int) -> None:
    """Worker initialiser: give each worker its own GPU (round robin) before CUDA is initialised."""
    import os

    with counter.get_lock():
        index = counter.value
        counter.value += 1
    if gpus > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = str(index % gpus)


def _cuda_count(options: Options) -> int:
    if not options.device.startswith("cuda"):
        return 0
    import torch

    return torch.cuda.device_count()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(threads: int, workers: int, cpus: int) -> int:
    """Torch threads for each grading child: ``threads`` when given (> 0); with several workers, the
    cores shared out (each torch process otherwise takes every core: on 2 cores beside other torch
    jobs, a training check that takes 12 s alone ran past its 240 s timeout); 0 (torch's default)
    for one worker."""
    if threads > 0 or workers == 1:
        return threads
    return max(1, cpus // workers)


def run_batch(folder: Path, out: Path, options: Options, topic_name: str = "auto",
              json_dir: Optional[Path] = None, workers: int = 1, html_dir: Optional[Path] = None) -> int:
    """Grade every new or changed submission under ``folder`` with ``workers`` parallel graders (one GPU
    per worker when several are present and ``options.device`` is cuda); the gradebook ``out`` is
    rewritten atomically after every submission, so an interrupted run resumes where it stopped."""
    import concurrent.futures as futures
    import multiprocessing

    from tqdm import tqdm

    if not folder.is_dir():
        print(f"error: {folder}: not a folder", file=sys.stderr)
        return 2
    if workers < 1:
        print(f"error: --workers must be at least 1, got {workers}", file=sys.stderr)
        return 2
    json_dir = json_dir or out.parent / (out.stem + "_results")
    rows = _read_gradebook(out)
    options = Options(**{**options.__dict__, "hide": (*options.hide, str(folder.resolve())),
                         "figures": options.figures or html_dir is not None,
                         "threads": threads_per_worker(options.threads, workers, _cpu_count())})
    submissions = find_submissions(folder)
    pending = [p for p in submissions if not _already_graded(rows.get(_student_id(p, folder), {}), p)]
    skipped = len(submissions) - len(pending)
    progress = tqdm(total=len(pending), desc=f"grading ({workers} worker{'s' * (workers > 1)})", unit="nb")
    if skipped:
        progress.write(f"{skipped} unchanged submissions already graded: kept")
    args = (folder, options, topic_name, json_dir, html_dir)
    if workers == 1:
        for path in pending:
            rows[_student_id(path, folder)] = grade_one(path, *args)
            _write_gradebook(out, rows)
            progress.update()
    else:
        context = multiprocessing.get_context("spawn")  # CUDA and fork do not mix
        counter = context.Value("i", 0)
        with futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_assign_gpu,
                                         initargs=(counter, _cuda_count(options))) as pool:
            jobs = {pool.submit(grade_one, path, *args): path for path in pending}
            for job in futures.as_completed(jobs):
                row = job.result()  # a GraderError (the grader itself is broken) stops the batch
                rows[row["student"]] = row
                _write_gradebook(out, rows)
                progress.update()
    progress.close()
    _write_gradebook(out, rows)
    print(f"gradebook: {out} ({len(rows)} submissions)")
    return 0
