"""Grading at class scale (``make bench``; never a timed test).

1. Grading time per submission for each topic on this machine's CPU (the solution notebook, every check,
   reference figures cached as in a real batch after its first submission).
2. Batch throughput: the same class folder (copies of the solutions) graded with 1 and with 2 workers.
3. Gradescope's default machine (half a vCPU, 768 MB): ``run_autograder`` of each topic's bundle on its
   solution, inside a cgroup with those limits (cgroup v1, when this process may create one; otherwise
   the figure is reported as not measured). Wall time against Gradescope's 10 minute limit,
   peak memory of the whole tree against 768 MB.

    python -m bench grading
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRADESCOPE_MEMORY = 768 * 2**20
GRADESCOPE_CPU_QUOTA = 50_000  # microseconds per 100 ms period: half a CPU


def _grade_seconds(notebook: Path) -> tuple[float, str]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(notebook), "--device", "cpu"],
                          capture_output=True, text=True, cwd=REPO)
    last = (done.stdout.strip().splitlines() or ["?"])
    score = next((line for line in reversed(last) if line.startswith("score")), "no score line")
    return time.monotonic() - started, score


def per_topic() -> None:
    for notebook in sorted(REPO.glob("solutions/*/*.ipynb")):
        _grade_seconds(notebook)  # warm the reference cache, as a batch's first submission does
        seconds, score = _grade_seconds(notebook)
        print(f"grade {notebook.parent.name}: {seconds:.1f} s per submission ({score})")


def throughput(students: int = 4, topic: str = "02_pigan") -> None:
    """Submissions per hour for a class of ``students`` copies of ``topic``'s solution, 1 vs 2 workers."""
    solutions = sorted(REPO.glob(f"solutions/{topic}/*.ipynb"))
    if not solutions:
        return
    notebook = solutions[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        for i in range(students):
            (folder / f"s{i}").mkdir(parents=True)
            shutil.copy(notebook, folder / f"s{i}" / notebook.name)
        rates = {}
        for workers in (1, 2):
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "autograder", "batch", str(folder), "--out",
                            str(Path(tmp) / f"book{workers}.csv"), "--workers", str(workers), "--device", "cpu"],
                           capture_output=True, cwd=REPO, check=True)
            rates[workers] = students / (time.monotonic() - started) * 3600
            print(f"batch {notebook.parent.name}, {students} submissions, {workers} worker(s): "
                  f"{rates[workers]:.0f} submissions/hour")
        print(f"batch speed-up with 2 workers: {rates[2] / rates[1]:.2f}x")


def _cgroup_v1(name: str) -> tuple[Path, Path] | None:
    memory, cpu = Path("/sys/fs/cgroup/memory") / name, Path("/sys/fs/cgroup/cpu") / name
    try:
        memory.mkdir(exist_ok=True)
        cpu.mkdir(exist_ok=True)
        (memory / "memory.limit_in_bytes").write_text(str(GRADESCOPE_MEMORY))
        (cpu / "cpu.cfs_period_us").write_text("100000")
        (cpu / "cpu.cfs_quota_us").write_text(str(GRADESCOPE_CPU_QUOTA))
        return memory, cpu
    except OSError:
        return None


def gradescope_limits(topic: str) -> None:
    """``run_autograder`` of ``topic``'s bundle on its solution under Gradescope's default limits, after a
    warm-up run outside the limits that plays ``setup.sh``'s part (it caches the reference's figures)."""
    from autograder.gradescope import build

    groups = _cgroup_v1(f"gen3d-gradescope-{os.getpid()}")
    if groups is None:
        print("gradescope: cannot create a cgroup here (needs root and cgroup v1): not measured")
        return
    memory, cpu = groups
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with zipfile.ZipFile(build(topic, root / "dist")) as handle:
            handle.extractall(root / "source")
        (root / "submission").mkdir()
        (root / "results").mkdir()
        notebook = next((REPO / "solutions" / topic).glob("*.ipynb"))
        shutil.copy(notebook, root / "submission" / notebook.name)
        env = dict(os.environ, GRADESCOPE_ROOT=str(root), GRADESCOPE_PYTHON=sys.executable,
                   GEN3D_DATA=str(REPO / "data"))
        subprocess.run(["bash", "run_autograder"], cwd=root / "source", env=env, capture_output=True)  # setup.sh
        enter = f"echo $$ > {memory}/cgroup.procs && echo $$ > {cpu}/cgroup.procs && exec bash run_autograder"
        (memory / "memory.max_usage_in_bytes").write_text("0")
        started = time.monotonic()
        subprocess.run(["bash", "-c", enter], cwd=root / "source", env=env, capture_output=True)
        seconds = time.monotonic() - started
        peak = int((memory / "memory.max_usage_in_bytes").read_text()) / 2**20
        hits = int((memory / "memory.failcnt").read_text())
        data = json.loads((root / "results" / "results.json").read_text())
        total = sum(t["max_score"] for t in data["tests"])
        print(f"gradescope {topic} (a finished notebook) under 0.5 CPU + 768 MB: {seconds:.0f} s (limit 600 s), "
              f"peak {peak:.0f} MB (limit 768; {hits} allocations refused), score {data['score']}/{total}")
    for group in (memory, cpu):
        group.rmdir()


def main() -> None:
    per_topic()
    throughput()
    for notebook in sorted(REPO.glob("solutions/*/*.ipynb")):
        gradescope_limits(notebook.parent.name)


if __name__ == "__main__":
    main()
