"""Gradescope: build one autograder bundle per topic, and the entry point the bundle runs.

``python -m autograder.gradescope build [--topic T ...] [--out build/gradescope]`` (``make gradescope``)
writes ``<out>/<topic>.zip`` holding ``setup.sh`` and ``run_autograder`` at its root (what Gradescope
looks for), the kit (``autograder/``, ``gen3d/``, pinned ``requirements.txt``, ``pyproject.toml``) and
the reference notebooks of the topic and of the topics it depends on. The planted bugs are left out.

On Gradescope, ``setup.sh`` builds a virtual environment (CPU torch from PyTorch's CPU index, so the
image stays small), installs the kit, builds the procedural data and trains the feature networks
(no download at grading time). ``run_autograder`` calls ``python -m autograder.gradescope run``, which
grades the one notebook in ``submission/`` and always writes ``results/results.json``: a missing or
broken notebook gets 0 with a message that names the problem, never a crash without results.

``GRADESCOPE_ROOT`` (default ``/autograder``) and ``GRADESCOPE_PYTHON`` let the kit's tests run the very
same ``run_autograder`` on a fake ``submission/`` + ``results/`` tree.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import zipfile
from pathlib import Path

from autograder.report import write_atomic

REPO = Path(__file__).resolve().parents[1]
KIT = ("autograder", "gen3d")
SKIP_PARTS = {"__pycache__", "mutants", ".ipynb_checkpoints"}
TOPIC_FILE = "gradescope_topic.json"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder image.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -m venv --help >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3-venv python3-pip
fi
python3 -m venv /autograder/venv
PY=/autograder/venv/bin/python
$PY -m pip install --upgrade pip
# the CPU build of the pinned torch: Gradescope's machines have no GPU
$PY -m pip install "$(grep '^torch==' requirements.txt)" --index-url https://download.pytorch.org/whl/cpu
$PY -m pip install -r requirements.txt
$PY -m pip install --no-deps -e .
$PY -m gen3d.data
$PY -m gen3d.features train
# grade the reference once: its fixed-seed quality figures are cached, so no submission pays for them
$PY -m autograder grade "{notebook}" --device cpu > /dev/null
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope runs this for every submission; it always leaves results/results.json behind.
ROOT="${GRADESCOPE_ROOT:-/autograder}"
PY="${GRADESCOPE_PYTHON:-/autograder/venv/bin/python}"
SOURCE="${GRADESCOPE_SOURCE:-$ROOT/source}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"  # Gradescope's default machine has half a CPU
cd "$SOURCE" && PYTHONPATH="$SOURCE" exec "$PY" -m autograder.gradescope run --root "$ROOT"
"""


def bundle_files(topic_name: str) -> dict[str, Path]:
    """``{path inside the zip: file on disk}`` for ``topic_name``'s bundle."""
    from autograder.topics import get_topic

    topic = get_topic(topic_name)
    files: dict[str, Path] = {}
    for package in KIT:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = path.relative_to(REPO)
            if not SKIP_PARTS & set(rel.parts):
                files[str(rel)] = path
    for name in ("requirements.txt", "pyproject.toml", "README.md"):
        files[name] = REPO / name
    for name in [topic_name, *topic.depends]:
        notebook = REPO / get_topic(name).notebook
        files[str(notebook.relative_to(REPO))] = notebook
    return files


def build(topic_name: str, out: Path) -> Path:
    """Write ``out/<topic>.zip`` (atomically) and return its path."""
    from autograder.topics import get_topic

    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{topic_name}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as bundle:
        for inside, path in bundle_files(topic_name).items():
            bundle.write(path, inside)
        setup = SETUP_SH.replace("{notebook}", get_topic(topic_name).notebook)
        for inside, text in (("setup.sh", setup), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(inside)
            info.external_attr = 0o755 << 16
            bundle.writestr(info, text)
        bundle.writestr(TOPIC_FILE, json.dumps({"topic": topic_name}))
    os.replace(partial, target)
    return target


def _failure(message: str) -> dict:
    return {"score": 0.0, "tests": [], "visibility": "visible", "stdout_visibility": "hidden",
            "output": message}


def find_submission(folder: Path, expected_name: str) -> Path:
    """The submitted notebook: the one named like the handout, else the only ``.ipynb``."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    named = [p for p in notebooks if p.name == expected_name]
    if named:
        return named[0]
    if len(notebooks) == 1:
        return notebooks[0]
    if not notebooks:
        raise FileNotFoundError(f"no notebook in the submission: upload {expected_name}")
    raise FileNotFoundError(f"several notebooks submitted ({', '.join(p.name for p in notebooks)}) and none is "
                            f"named {expected_name}: upload only {expected_name}")


def run(root: Path, topic_name: str | None = None) -> dict:
    """Grade ``root/submission`` and write ``root/results/results.json``; returns what was written."""
    from autograder.grading import Options, grade
    from autograder.report import gradescope_json
    from autograder.topics import get_topic

    results = root / "results" / "results.json"
    try:
        topic_name = topic_name or json.loads((Path.cwd() / TOPIC_FILE).read_text())["topic"]
        topic = get_topic(topic_name)
        notebook = find_submission(root / "submission", Path(topic.notebook).name)
        data = gradescope_json(grade(notebook, topic, Options(device="cpu")))
    except (FileNotFoundError, ValueError, KeyError) as err:
        data = _failure(f"Your submission could not be graded: {err}")
    except Exception as err:  # noqa: BLE001 - the grader itself failed: say so, still write results
        data = _failure(f"The autograder failed ({type(err).__name__}: {err}); please tell the course staff.")
    write_atomic(results, json.dumps(data, indent=2))
    return data


def main(argv: list[str] | None = None) -> int:
    from autograder.topics import all_topics

    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="write one Gradescope bundle per topic")
    p.add_argument("--topic", nargs="+", help="topics (default: every topic)")
    p.add_argument("--out", default=str(REPO / "build" / "gradescope"))
    p = sub.add_parser("run", help="(inside Gradescope) grade submission/ into results/results.json")
    p.add_argument("--root", default=os.environ.get("GRADESCOPE_ROOT", "/autograder"))
    p.add_argument("--topic", help="default: the bundle's gradescope_topic.json")
    args = parser.parse_args(argv)
    if args.command == "build":
        for name in args.topic or list(all_topics()):
            print(f"wrote {build(name, Path(args.out))}")
        return 0
    data = run(Path(args.root), args.topic)
    print(f"score {data['score']}; {len(data['tests'])} tests; results in {Path(args.root) / 'results'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
