"""`python -m bench [NAME ...]`: run the kit's benchmarks and print their figures.

Each ``bench/bench_*.py`` module defines ``main() -> None`` that prints its figures. Built in:
``check`` times ``make check`` (public checks) on every handout, which must stay under a minute on a
2-core CPU, and ``notebooks`` times each solution notebook in its small configuration (the budget is
10 minutes on 2 CPU cores; long: run it on its own with ``python -m bench notebooks``, and
``BENCH_TOPICS=05_sds python -m bench notebooks`` times only the named topic folders).
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_check() -> None:
    """Wall time of the public checks (``make check``) on each handout as shipped (stubs fail fast) and on its
    solution (a finished handout: every public check really runs)."""
    for handout in sorted(REPO.glob("assignments/*/*.ipynb")):
        solution = REPO / "solutions" / handout.parent.name / handout.name
        for label, path in (("handout", handout), ("finished", solution)):
            if not path.is_file():
                continue
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(path), "--public-only"],
                                  capture_output=True, text=True, cwd=REPO)
            seconds = time.monotonic() - started
            verdict = ("FAILED" if done.returncode != 0 else "ok" if seconds < 60 else "OVER BUDGET")
            print(f"check {handout.parent.name} ({label}): {seconds:.1f} s (budget 60 s) {verdict}")


def _prepare(topic: str, mode: str) -> None:
    """Build what a notebook loads that the instructor builds beforehand, outside the timing (05: ``make priors``)."""
    if topic != "05_sds":
        return
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "gen3d.hw_sds", "priors", "--mode", mode], capture_output=True,
                          text=True, cwd=REPO)
    status = "ok" if done.returncode == 0 else f"FAILED: {done.stderr.strip()[-300:]}"
    print(f"priors of {topic} [{mode}] (`make priors`, not in the notebook's time): "
          f"{time.monotonic() - started:.0f} s {status}")


def bench_notebooks(mode: str = "small") -> None:
    """Wall time of each solution notebook top to bottom (nbclient) in ``mode`` (only the topic folders named in
    the comma-separated ``BENCH_TOPICS``, when set)."""
    import nbformat
    from nbclient import NotebookClient

    topics = [t for t in os.environ.get("BENCH_TOPICS", "").split(",") if t]
    for path in sorted(REPO.glob("solutions/*/*.ipynb")):
        if topics and path.parent.name not in topics:
            continue
        os.environ["GEN3D_MODE"] = mode
        _prepare(path.parent.name, mode)
        nb = nbformat.read(path, as_version=4)
        started = time.monotonic()
        try:
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            status = "ok"
        except Exception as err:  # noqa: BLE001 - report and go on to the next notebook
            status = f"FAILED ({type(err).__name__})"
        minutes = (time.monotonic() - started) / 60
        print(f"notebook {path.relative_to(REPO)} [{mode}]: {minutes:.1f} min (budget 10 min) {status}")


def main(argv: list[str]) -> int:
    modules = {info.name[len("bench_"):]: info.name for info in pkgutil.iter_modules([str(Path(__file__).parent)])
               if info.name.startswith("bench_")}
    wanted = argv or ["check", *sorted(modules)]
    for name in wanted:
        print(f"== {name}")
        if name == "check":
            bench_check()
        elif name == "notebooks":
            bench_notebooks()
        elif name in modules:
            importlib.import_module(f"bench.{modules[name]}").main()
        else:
            print(f"unknown benchmark {name!r}; known: check, notebooks, {', '.join(sorted(modules))}")
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
