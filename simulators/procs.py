"""Child processes of ctisim (cardd now, ctid and others later): started, watched, stopped.

Every child runs in its own session (so a signal reaches it and whatever it starts) with
its output in a log file, and is told by the kernel to terminate if ctisim dies without
cleaning up (PR_SET_PDEATHSIG). stop_all() sends SIGTERM, waits, then SIGKILL: no
orphans, whether the run passed, failed or was interrupted.
"""
from __future__ import annotations

import ctypes
import dataclasses
import os
import signal
import subprocess
import sys
import time
from typing import Callable

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:   # runs in the child between fork and exec
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


@dataclasses.dataclass
class Child:
    name: str
    argv: list[str]
    log_path: str
    popen: subprocess.Popen

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


class ProcessGroup:
    def __init__(self, log_dir: str):
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None,
              cwd: str | None = None) -> Child:
        if name in self.children and self.children[name].alive():
            raise RuntimeError(f"{name} is already running (pid {self.children[name].pid})")
        os.makedirs(self.log_dir, exist_ok=True)
        log_path = os.path.join(self.log_dir, f"{name}.log")
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env=env, cwd=cwd, start_new_session=True,
                                     preexec_fn=_die_with_parent)
        child = Child(name=name, argv=list(argv), log_path=log_path, popen=popen)
        self.children[name] = child
        return child

    def python_module(self, name: str, module: str, args: list[str], cwd: str | None = None,
                      extra_env: dict[str, str] | None = None) -> Child:
        """`python -m module args` with this interpreter and this source tree importable."""
        env = dict(os.environ)
        root = source_root()
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("OPENBLAS_NUM_THREADS", "1")
        env.update(extra_env or {})
        return self.start(name, [sys.executable, "-m", module, *args], env=env, cwd=cwd)

    def dead(self) -> list[Child]:
        return [c for c in self.children.values() if not c.alive()]

    def alive(self) -> list[Child]:
        return [c for c in self.children.values() if c.alive()]

    def terminate_all(self) -> None:
        """SIGTERM every child's session (and return at once)."""
        for child in self.alive():
            _signal_session(child.pid, signal.SIGTERM)

    def stop_all(self, grace_s: float = 5.0) -> None:
        """SIGTERM every child's session, wait up to grace_s, then SIGKILL what remains."""
        for child in self.children.values():
            if child.alive():
                _signal_session(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in self.children.values():
            try:
                child.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_session(child.pid, signal.SIGKILL)
                child.popen.wait()

    def __enter__(self) -> "ProcessGroup":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()


def _signal_session(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)            # start_new_session: the child leads its process group
    except ProcessLookupError:
        pass


def source_root() -> str:
    """The directory holding the `simulators` and `drivers` packages."""
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def on_termination(stop: Callable[[], None]) -> Callable[[], None]:
    """Call `stop` on SIGINT/SIGTERM (the first time; a second Ctrl-C interrupts at once).

    Returns a function that restores the previous handlers.
    """
    previous = {}
    hits = {"n": 0}

    def handler(signum, frame):
        hits["n"] += 1
        if hits["n"] > 1:
            raise KeyboardInterrupt
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)
    return restore
