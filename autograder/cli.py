"""``python -m autograder``: grade notebooks, batch-grade a class, build handouts, run the mutants.

Exit status: 0 when grading ran (whatever the score); 2 for bad usage or input the grader cannot
read at all; 3 when the grader itself failed (a broken reference, unavailable strict isolation).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autograder.grading import Options, grade
from autograder.sandbox import GraderError


def _options(args) -> Options:
    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise GraderError("--device cuda asked for, but CUDA is not available here")
    return Options(device=device, public_only=args.public_only, only=tuple(args.only or ()),
                   timeout=args.timeout, isolation=args.isolation, memory_mb=args.memory_mb,
                   threads=args.threads, use_cache=not args.no_cache,
                   figures=bool(getattr(args, "html", None)))


def _add_grading_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topic", default="auto", help="topic name, or auto (from the path/contents)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--public-only", action="store_true", help="only the checks students can run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only the checks of these functions")
    parser.add_argument("--timeout", type=float, help="seconds per check (default: each check's own)")
    parser.add_argument("--isolation", default="auto", choices=("strict", "auto", "off"),
                        help="strict: fail unless the full sandbox is available; off: no sandbox (debugging)")
    parser.add_argument("--no-sandbox", dest="isolation", action="store_const", const="off",
                        help="same as --isolation off")
    parser.add_argument("--memory-mb", type=int, default=6144, help="memory cap of the student process")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in the child (0: default)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the reference's quality figures")


def cmd_grade(args) -> int:
    from autograder import report
    from autograder.topics import detect_topic, get_topic

    notebook = Path(args.notebook)
    if not notebook.is_file():
        print(f"error: {notebook}: no such file", file=sys.stderr)
        return 2
    try:
        topic = detect_topic(notebook) if args.topic == "auto" else get_topic(args.topic)
    except KeyError as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 2
    result = grade(notebook, topic, _options(args))
    report.save(result, args.json, args.gradescope)
    if args.html:
        from autograder.html_report import write_html

        write_html(report.result_json(result), Path(args.html))
    print(report.table(result))
    return 0


def cmd_batch(args) -> int:
    from autograder.batch import run_batch

    return run_batch(Path(args.dir), Path(args.out), _options(args), topic_name=args.topic,
                     json_dir=Path(args.json_dir) if args.json_dir else None, workers=args.workers,
                     html_dir=Path(args.html_dir) if args.html_dir else None)


def cmd_handouts(args) -> int:
    from autograder.handouts import HandoutError, run

    try:
        changed = run(check=args.check, force=args.force, only=args.topic)
    except HandoutError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    if args.check:
        print("handouts are up to date and pass the release lint")
    else:
        print("regenerated: " + (", ".join(changed) if changed else "nothing changed"))
    return 0


def cmd_mutants(args) -> int:
    from autograder.selfproof import run_mutants

    return 0 if run_mutants(args.topic, _options(args), names=args.name) else 1


def cmd_seeds(args) -> int:
    from autograder.seedsweep import sweep_seeds, sweep_topic
    from autograder.topics import all_topics

    known = sorted(all_topics())
    topics = args.topic or known
    unknown = [t for t in topics if t not in known]
    if unknown:
        print(f"error: unknown topic(s) {unknown}; known: {known}", file=sys.stderr)
        return 2
    seeds = sweep_seeds(args.seeds, args.base)
    lines = [line for topic in topics
             for line in sweep_topic(topic, seeds, names=args.name, reference=not args.name,
                                     seconds_per_check=args.seconds)]
    bad = [line for line in lines if not line.ok]
    print(f"{len(lines)} (implementation, check) pairs over up to {len(seeds)} seeds: "
          f"{len(bad)} depend on the seed" + (f" ({', '.join(f'{b.subject}/{b.check}' for b in bad)})" if bad else ""))
    return 1 if bad else 0


def cmd_report(args) -> int:
    """Grade every topic's reference notebook and its handout: the kit proving itself."""
    from autograder import report
    from autograder.grading import REPO
    from autograder.topics import all_topics

    options = _options(args)
    rows, ok = [], True
    for name, topic in all_topics().items():
        solution = REPO / topic.notebook
        handout = REPO / "assignments" / name / solution.name
        if not solution.is_file():
            continue
        for label, path in (("solution", solution), ("handout", handout)):
            if not path.is_file():
                rows.append((name, label, "missing", "")); ok = False
                continue
            result = grade(path, topic, options)
            report.save(result, Path(args.out) / f"{name}.{label}.json")
            graded = [t for t in result.tests if t.status != "skipped"]
            expected = result.max_score if label == "solution" else 0.0
            good = abs(result.score - expected) < 1e-6
            ok &= good
            rows.append((name, label, f"{result.score:.1f} / {result.max_score:.1f}",
                         f"{len(graded)} checks, {result.seconds:.0f} s" + ("" if good else "  <-- UNEXPECTED")))
            if not good:
                print(report.table(result))
    print(f"{'topic':<16} {'notebook':<9} {'score':<14} detail")
    for row in rows:
        print(f"{row[0]:<16} {row[1]:<9} {row[2]:<14} {row[3]}")
    print("the kit is sound: solutions get full marks, handouts get 0" if ok and rows else
          "PROBLEMS above" if rows else "no topics with solutions yet")
    return 0 if ok else 1


def cmd_topics(args) -> int:
    from autograder.topics import all_topics

    for name, topic in all_topics().items():
        kinds = sorted({c.kind for c in topic.checks})
        print(f"{name}: {len(topic.checks)} checks over {len(topic.functions)} functions ({', '.join(kinds)})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("grade", help="grade one notebook")
    p.add_argument("notebook")
    _add_grading_options(p)
    p.add_argument("--json", help="write the JSON result here")
    p.add_argument("--gradescope", help="write a Gradescope results.json here")
    p.add_argument("--html", help="write a self-contained HTML report (with the checks' figures) here")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("batch", help="grade every notebook under a folder into a CSV gradebook")
    p.add_argument("dir")
    p.add_argument("--out", required=True, help="gradebook CSV (a re-run resumes it)")
    p.add_argument("--json-dir", help="per-submission JSON results (default: next to the CSV)")
    p.add_argument("--workers", type=int, default=1, help="parallel graders (one GPU each when several)")
    p.add_argument("--html-dir", help="also write a per-submission HTML report into this folder")
    _add_grading_options(p)
    p.set_defaults(func=cmd_batch)

    p = sub.add_parser("handouts", help="regenerate assignments/ from solutions/ (nbgrader) and lint")
    p.add_argument("--check", action="store_true", help="only check that the committed handouts are current")
    p.add_argument("--force", action="store_true", help="overwrite handouts even where graded cells were filled in")
    p.add_argument("--topic", nargs="+", metavar="TOPIC", help="only these topic folders (e.g. 03_vq_prior)")
    p.set_defaults(func=cmd_handouts)

    p = sub.add_parser("mutants", help="grade every planted bug and alternative of a topic")
    p.add_argument("topic")
    p.add_argument("--name", nargs="+", help="only these mutants/alternatives")
    _add_grading_options(p)
    p.set_defaults(func=cmd_mutants)

    p = sub.add_parser("seeds", help="replay the cheap checks of the reference, mutants and alternatives over many "
                                     "run seeds: finds checks whose verdict depends on the seed")
    p.add_argument("topic", nargs="*", help="topic names (default: all)")
    p.add_argument("--name", nargs="+", help="only these mutants/alternatives (and not the reference)")
    p.add_argument("--seeds", type=int, default=50, help="how many run seeds (default 50)")
    p.add_argument("--base", type=int, help="draw the seeds reproducibly from this number (default: fresh)")
    p.add_argument("--seconds", type=float, default=30.0, help="at most this long per (implementation, check)")
    p.set_defaults(func=cmd_seeds)

    p = sub.add_parser("report", help="grade every solution (full marks expected) and handout (0 expected)")
    p.add_argument("--out", default="reports", help="folder for the JSON results")
    _add_grading_options(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("topics", help="list the registered topics")
    p.set_defaults(func=cmd_topics)

    from autograder import similarity

    similarity.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except GraderError as err:
        print(f"grader error: {err}", file=sys.stderr)
        return 3
