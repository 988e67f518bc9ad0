"""The grading child: loads one notebook, then runs probes on request. Student code runs only here.

Started by :mod:`autograder.sandbox` (never by hand). Protocol, one JSON object per line:

* requests arrive on stdin: ``{"id": 3, "check": "volume_render.weights_sum", "seed": 123, "device": "cpu"}``;
* replies go to the file descriptor ``--reply-fd`` (not stdout, which the student's prints share):
  first ``{"ready": true, "load_report": {...}, "isolation": [...]}``, then per request
  ``{"id": 3, "ok": true, "json": {...}, "arrays": "out/3.npz"}`` or ``{"id": 3, "ok": false, "error": {...}}``.

Outputs are plain data: numbers/strings/bools/lists in JSON, arrays in an ``.npz`` written with numpy
(the parent loads it with ``allow_pickle=False``). Nothing here is trusted by the parent.

Isolation, in two stages (each step recorded in ``isolation``). The root stage (``--prepare``, run in
fresh mount and network namespaces) copies the reference notebooks of the topics this one depends on
into the work folder, mounts empty tmpfs over the hidden paths (the reference notebooks, mutants, caches,
other submissions), sets resource limits, gives the work folder to ``nobody`` and execs a new interpreter
as ``nobody``. The serving stage loads the dependencies' named pieces and deletes their copies; then,
and only then, it loads the student's notebook.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import traceback
import types

import numpy as np

NOBODY_UID = 65534
NOBODY_GID = 65534


def _preimport(topic_name: str):
    """Import torch and the topic's checks before student code runs (so no check pays for them); returns
    the topic. The kit's other modules are imported lazily, by the probes that use them."""
    import torch  # noqa: F401
    from autograder.topics import get_topic

    return get_topic(topic_name)


def _hide(paths: list[str], notes: list[str]) -> None:
    for path in paths:
        if not os.path.isdir(path):
            continue
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0555", "tmpfs", path],
                                capture_output=True, text=True)
        notes.append(f"hidden {path}" if result.returncode == 0 else
                     f"COULD NOT hide {path}: {result.stderr.strip() or result.returncode}")


def _limit(memory_mb: int, notes: list[str]) -> None:
    if memory_mb > 0:
        cap = memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        notes.append(f"address space <= {memory_mb} MiB")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (512 * 2**20, 512 * 2**20))


def _give_to_nobody(workdir: str) -> None:
    for root, dirs, files in os.walk(workdir):
        os.chown(root, NOBODY_UID, NOBODY_GID)
        for name in files:
            os.chown(os.path.join(root, name), NOBODY_UID, NOBODY_GID)


def _copy_deps(topic, repo: str, workdir: str) -> str:
    """Copy the reference notebooks of the topics ``topic`` depends on into ``workdir/deps`` (before they
    are hidden); the serving stage loads the named pieces from there and deletes the copies."""
    from autograder.topics import get_topic

    folder = os.path.join(workdir, "deps")
    os.makedirs(folder, exist_ok=True)
    for dep_name in topic.depends:
        source = os.path.join(repo, get_topic(dep_name).notebook)
        if os.path.isfile(source):  # absent on a student's machine: public checks do without
            with open(source, "rb") as src, open(os.path.join(folder, f"{dep_name}.ipynb"), "wb") as dst:
                dst.write(src.read())
    return folder


def _load_deps(topic, repo: str, deps_dir: str | None) -> types.SimpleNamespace:
    """The earlier topics' reference pieces, from ``deps_dir`` (copied there by the root stage, then
    deleted here) or, without the sandbox, straight from the repo."""
    from gen3d.notebook import load_notebook
    from autograder.topics import get_topic

    deps = types.SimpleNamespace()
    for dep_name, names in topic.depends.items():
        path = (os.path.join(deps_dir, f"{dep_name}.ipynb") if deps_dir else
                os.path.join(repo, get_topic(dep_name).notebook))
        if not os.path.isfile(path):  # no reference here (a student's machine): checks needing it say so
            for name in names:
                setattr(deps, name, None)
            continue
        module = load_notebook(path, names=list(names))
        for name in names:
            setattr(deps, name, getattr(module, name, None))
        sys.modules.pop(module.__name__, None)
        if deps_dir:
            os.remove(path)
    return deps


def prepare(args, argv: list[str]) -> int:
    """Root stage, inside fresh mount and network namespaces: copy what the topic depends on, hide the
    reference, cap resources, give the work folder to ``nobody``, then exec a new interpreter as
    ``nobody`` to serve. The interpreter starts unprivileged, so it picks a standard library that user
    can read, and nothing imported as root survives into the student's process."""
    from autograder.topics import get_topic

    notes = []
    topic = get_topic(args.topic)
    deps_dir = _copy_deps(topic, args.repo, args.workdir) if topic.depends else None
    _hide(args.hide, notes)
    _limit(args.memory_mb, notes)
    resource.setrlimit(resource.RLIMIT_NPROC, (1024, 1024))
    _give_to_nobody(args.workdir)
    serve_argv = [a for a in argv if a not in ("--prepare", "--keep-user")]
    command = [sys.executable, "-m", "autograder.child", *serve_argv]
    if args.keep_user:
        notes.append("interpreter or kit not usable by user nobody: child keeps its user")
    else:
        notes.append("running as user nobody")
        command = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups", "--", *command]
    command += ["--notes", json.dumps(notes)] + (["--deps-dir", deps_dir] if deps_dir else [])
    os.execvp(command[0], command)
    return 1  # not reached


def _forbid(names, student_file: str) -> list:
    """Wrap each dotted kit function in ``names`` so that a call from the student's code raises
    ``ForbiddenCall`` (calls from the kit's own loops and the probes still work). Returns the
    ``(module, attribute, original)`` it replaced, for a caller that must undo it."""
    import functools

    from autograder.spec import ForbiddenCall

    def guarded(qualified, original):
        @functools.wraps(original)
        def wrapper(*args, **kwargs):
            frame = sys._getframe(1)
            while frame is not None:
                if student_file in frame.f_code.co_filename:
                    raise ForbiddenCall(f"your code called {qualified}, the kit's own version of what this "
                                        "exercise asks you to write: write it yourself")
                frame = frame.f_back
            return original(*args, **kwargs)
        return wrapper

    replaced = []
    for qualified in names:
        module_name, attr = qualified.rsplit(".", 1)
        module = importlib.import_module(module_name)
        replaced.append((module, attr, getattr(module, attr)))
        setattr(module, attr, guarded(qualified, getattr(module, attr)))
    return replaced


def to_plain(output) -> tuple[dict, dict]:
    """Split a probe's output dict into (JSON-able values, numpy arrays)."""
    import torch

    if not isinstance(output, dict):
        raise TypeError(f"probe returned {type(output).__name__}, expected dict")
    plain, arrays = {}, {}
    for key, value in output.items():
        key = str(key)
        if isinstance(value, torch.Tensor):
            value = value.detach()
            if value.dtype in (torch.bfloat16, torch.float16):
                value = value.float()
            if value.is_complex():
                value = torch.view_as_real(value)
            arrays[key] = value.cpu().numpy()
        elif isinstance(value, np.ndarray):
            arrays[key] = value if value.dtype != object else np.asarray(value.tolist(), dtype=np.float64)
        elif isinstance(value, (np.generic,)):
            plain[key] = value.item()
        elif value is None or isinstance(value, (bool, int, float, str)):
            plain[key] = value
        elif isinstance(value, (list, tuple)):
            try:
                plain[key] = json.loads(json.dumps(value))
            except (TypeError, ValueError):
                arrays[key] = np.asarray([np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                                          for v in value])
        else:
            plain[key] = f"<unserialisable {type(value).__name__}>"
    return plain, arrays


def _error_record(err: BaseException) -> dict:
    frames = traceback.extract_tb(err.__traceback__)
    student = [f for f in frames if ".ipynb" in f.filename]
    where = f"{student[-1].filename.strip('<>')} line {student[-1].lineno}" if student else ""
    from autograder.spec import MissingDefinition

    return {"type": type(err).__name__, "message": str(err)[:2000], "where": where,
            "missing": err.name if isinstance(err, MissingDefinition) else None,
            "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__))[-4000:]}


def serve(args) -> int:
    reply = os.fdopen(args.reply_fd, "w", buffering=1)
    notes: list[str] = json.loads(args.notes) if args.notes else []
    topic = _preimport(args.topic)
    import torch
    from autograder.spec import ProbeContext
    from gen3d.notebook import load_notebook

    checks = {c.name: c for c in topic.checks}
    deps = _load_deps(topic, args.repo, args.deps_dir) if topic.depends else None
    if not args.notes:  # no root stage ran (no sandbox): cap what we can from here
        _limit(args.memory_mb, notes)
    if args.guard and topic.forbidden:
        _forbid(topic.forbidden, os.path.basename(args.notebook))
        notes.append(f"kit functions closed to student code: {', '.join(topic.forbidden)}")
    os.chdir(args.workdir)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    module = load_notebook(args.notebook, names=list(topic.functions))
    reply.write(json.dumps({"ready": True, "load_report": module.__load_report__.to_dict(),
                            "isolation": notes}) + "\n")
    os.makedirs("out", exist_ok=True)
    for line in sys.stdin:
        request = json.loads(line)
        check = checks[request["check"]]
        ctx = ProbeContext(ns=module, seed=int(request["seed"]), device=torch.device(request["device"]),
                           deps=deps, workdir=args.workdir)
        try:
            plain, arrays = to_plain(check.probe(ctx))
            path = os.path.join("out", f"{int(request['id'])}.npz")
            np.savez(path, **arrays)
            message = {"id": request["id"], "ok": True, "json": plain, "arrays": os.path.abspath(path)}
        except BaseException as err:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too
            message = {"id": request["id"], "ok": False, "error": _error_record(err)}
        reply.write(json.dumps(message, default=str) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="autograder child (internal)")
    parser.add_argument("--notebook", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--reply-fd", type=int, required=True)
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--prepare", action="store_true", help="root stage: hide, cap, exec as nobody")
    parser.add_argument("--guard", action="store_true", help="close the topic's forbidden kit functions")
    parser.add_argument("--keep-user", action="store_true", help="root stage: do not switch to nobody")
    parser.add_argument("--notes", help="(internal) isolation notes of the root stage, JSON")
    parser.add_argument("--deps-dir", help="(internal) where the root stage copied the dependencies")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    sys.path.insert(0, args.repo)
    return prepare(args, argv) if args.prepare else serve(args)


if __name__ == "__main__":
    sys.exit(main())
