"""Parent side of the sandbox: start a grading child, send it probes, survive whatever it does.

A :class:`Child` runs one notebook (student or reference). Each probe gets a time limit; a child that
times out, crashes, exits or garbles the protocol is killed (with its whole process group) and, for the
next probe, started again. The parent only reads plain data back (JSON, and ``.npz`` loaded with
``allow_pickle=False``, size-capped).

Isolation (``mode``): ``strict`` insists on the full set (new mount and network namespaces with the
reference hidden under an empty tmpfs, user ``nobody``, memory cap) and fails if it is unavailable;
``auto`` uses what the machine allows and reports it; ``off`` runs the child as a plain subprocess
(trusted code: the reference).
"""
from __future__ import annotations

import functools
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

MAX_ARRAY_BYTES = 256 * 2**20
MAX_REPLY_BYTES = 16 * 2**20


class GraderError(RuntimeError):
    """The grader itself failed (not the submission): a reference probe broke, isolation unavailable."""


@dataclass
class ProbeResult:
    """What came back from one probe: ``status`` is ok | error | timeout | crash."""

    status: str
    data: dict = field(default_factory=dict)
    error: dict = field(default_factory=dict)
    seconds: float = 0.0


def isolation_available() -> tuple[bool, str]:
    """Can we build the full sandbox here (root, unshare, a readable interpreter for ``nobody``)?"""
    if os.name != "posix" or os.geteuid() != 0:
        return False, "not running as root: no mount namespace or user switch (process isolation only)"
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False, "unshare/mount not found (process isolation only)"
    probe = subprocess.run(["unshare", "--mount", "--net", "--propagation", "private", "true"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        return False, f"unshare refused ({probe.stderr.strip()}): process isolation only"
    return True, "namespaces available"


@functools.lru_cache(maxsize=None)
def nobody_can_run_kit(repo: str) -> bool:
    """Can user ``nobody`` start this interpreter and import numpy, torch and the kit from ``repo``?
    (Not where the interpreter or the repo lives in a folder only root may enter.)"""
    if shutil.which("setpriv") is None:
        return False
    test = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c",
                           "import numpy, torch, gen3d, autograder.child"], capture_output=True,
                          env=dict(os.environ, PYTHONPATH=repo), cwd="/")
    return test.returncode == 0


class Child:
    """One grading child process for ``notebook`` of ``topic``."""

    def __init__(self, notebook: Path, topic: str, repo: Path, *, mode: str = "auto",
                 hide: tuple = (), memory_mb: int = 0, threads: int = 0, startup_timeout: float = 120.0,
                 watch_rss: bool = False, guard: bool = False):
        if mode not in ("strict", "auto", "off"):
            raise ValueError(f"isolation mode {mode!r}: expected strict, auto or off")
        self.notebook, self.topic, self.repo = Path(notebook), topic, Path(repo)
        self.mode, self.hide, self.memory_mb, self.threads = mode, tuple(hide), memory_mb, threads
        self.startup_timeout, self.watch_rss, self.guard = startup_timeout, watch_rss, guard
        self.proc: Optional[subprocess.Popen] = None
        self.reply_fd: Optional[int] = None
        self.buffer = b""
        self.workdir: Optional[str] = None
        self.load_report: dict = {}
        self.isolation: list[str] = []
        self.next_id = 0
        self.log_path: Optional[str] = None
        self.starts = 0

    # -- life cycle -------------------------------------------------------------------------------
    def _command(self, reply_w: int) -> list[str]:
        command = [sys.executable, "-m", "autograder.child", "--notebook", str(self.workdir_notebook),
                   "--topic", self.topic, "--repo", str(self.repo), "--workdir", self.workdir,
                   "--reply-fd", str(reply_w), "--memory-mb", str(self.memory_mb), "--threads", str(self.threads)]
        if self.guard:
            command.append("--guard")
        if self.mode == "off":
            return command
        full, why = isolation_available()
        if full:
            command = ["unshare", "--mount", "--net", "--propagation", "private"] + command + ["--prepare"]
            for path in self.hide:
                command += ["--hide", str(path)]
            if not nobody_can_run_kit(str(self.repo)):
                command.append("--keep-user")
        elif self.mode == "strict":
            raise GraderError(f"strict isolation requested but unavailable: {why}")
        else:
            self.isolation.append(why)
        return command

    def start(self) -> None:
        self.close()
        self.starts += 1
        self.workdir = tempfile.mkdtemp(prefix="gen3d-grade-")
        os.chmod(self.workdir, 0o700)
        self.workdir_notebook = Path(self.workdir) / "submission.ipynb"
        shutil.copyfile(self.notebook, self.workdir_notebook)
        self.log_path = os.path.join(tempfile.gettempdir(), f"gen3d-child-{os.getpid()}-{id(self)}-{self.starts}.log")
        reply_r, reply_w = os.pipe()
        self.isolation = []
        env = dict(os.environ, PYTHONPATH=str(self.repo), PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg",
                   HOME=self.workdir, MPLCONFIGDIR=os.path.join(self.workdir, ".matplotlib"))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(self._command(reply_w), stdin=subprocess.PIPE, stdout=log,
                                         stderr=subprocess.STDOUT, pass_fds=(reply_w,), cwd=self.workdir,
                                         env=env, start_new_session=True)
        os.close(reply_w)
        self.reply_fd = reply_r
        self.buffer = b""
        ready = self._read_message(self.startup_timeout)
        if not isinstance(ready, dict) or not ready.get("ready"):
            tail = self.log_tail()
            self.close()
            raise ChildStartError(f"the grading child did not start ({ready}); its output:\n{tail}")
        self.load_report = ready.get("load_report", {})
        self.isolation += [str(n) for n in ready.get("isolation", [])]
        if self.watch_rss and self.memory_mb > 0:
            threading.Thread(target=self._watch_memory, args=(self.proc,), daemon=True).start()

    def close(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (self.proc.stdin,):
                try:
                    stream.close()
                except OSError:
                    pass
        if self.reply_fd is not None:
            os.close(self.reply_fd)
        if self.workdir and os.path.isdir(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.proc, self.reply_fd, self.workdir = None, None, None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, chars: int = 1500) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - chars))
                return handle.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    def _watch_memory(self, proc: subprocess.Popen) -> None:
        """Kill the child's group when its resident memory passes the cap (CUDA runs skip RLIMIT_AS)."""
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as status:
                    rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
            except (OSError, StopIteration, ValueError):
                return
            if rss_kb > self.memory_mb * 1024:
                os.killpg(proc.pid, signal.SIGKILL)
                return
            time.sleep(0.2)

    # -- protocol ---------------------------------------------------------------------------------
    def _read_message(self, timeout: float):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            ready, _, _ = select.select([self.reply_fd], [], [], min(left, 0.5))
            if not ready:
                if self.proc.poll() is not None:
                    return "crash"
                continue
            chunk = os.read(self.reply_fd, 1 << 16)
            if not chunk:
                self.proc.wait()
                return "crash"
            self.buffer += chunk
            if len(self.buffer) > MAX_REPLY_BYTES:
                return "garbled"
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            return json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return "garbled"

    def run(self, check: str, seed: int, device: str, timeout: float) -> ProbeResult:
        """Run one probe; restarts the child first if the previous probe killed it."""
        if not self.alive():
            self.start()
        self.next_id += 1
        request_id = self.next_id
        started = time.monotonic()
        try:
            self.proc.stdin.write((json.dumps({"id": request_id, "check": check, "seed": seed,
                                               "device": device}) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._failed("crash", started)
        while True:
            message = self._read_message(max(0.0, timeout - (time.monotonic() - started)))
            if isinstance(message, str):
                return self._failed(message, started)
            if isinstance(message, dict) and message.get("id") == request_id:
                break
        elapsed = time.monotonic() - started
        if not message.get("ok"):
            error = message.get("error") if isinstance(message.get("error"), dict) else {"message": "unknown"}
            return ProbeResult("error", error=error, seconds=elapsed)
        data = dict(message.get("json") or {})
        try:
            data.update(self._load_arrays(message.get("arrays")))
        except (OSError, ValueError) as err:
            return ProbeResult("error", error={"type": "OutputError", "message": str(err)}, seconds=elapsed)
        return ProbeResult("ok", data=data, seconds=elapsed)

    def _load_arrays(self, path) -> dict:
        if not path:
            return {}
        path = Path(str(path)).resolve()
        if self.workdir is None or Path(self.workdir).resolve() not in path.parents:
            raise ValueError(f"outputs written outside the child's folder: {path}")
        if path.stat().st_size > MAX_ARRAY_BYTES:
            raise ValueError(f"outputs too large ({path.stat().st_size} bytes)")
        with np.load(path, allow_pickle=False) as arrays:
            return {key: arrays[key] for key in arrays.files}

    def _failed(self, how: str, started: float) -> ProbeResult:
        elapsed = time.monotonic() - started
        code = self.proc.poll() if self.proc else None
        tail = self.log_tail()
        self.close()
        if how == "timeout":
            return ProbeResult("timeout", error={"message": f"no answer within {elapsed:.0f} s"}, seconds=elapsed)
        if how == "garbled":
            return ProbeResult("error", error={"type": "ProtocolError",
                                               "message": "the child's reply was unreadable"}, seconds=elapsed)
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            what = f"the process was killed by signal {name}"
            if name == "SIGKILL":
                what += " (memory cap exceeded or killed from outside)"
        else:
            what = f"the process exited with status {code}"
        return ProbeResult("error", error={"type": "Crash", "message": what, "output": tail[-800:]},
                           seconds=elapsed)


class ChildStartError(GraderError):
    """The child could not even load (for a student notebook this is still graded: everything errors)."""
