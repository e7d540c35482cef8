"""The one place that runs subprocesses: own process group, log file, timeout, no orphans."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import psutil

_PR_SET_PDEATHSIG = 1

# Process groups of the steps running now (worker threads run several at once), so an
# interrupt in the main thread can stop them all.
_live_groups: set[int] = set()
_live_lock = threading.Lock()


def kill_all() -> None:
    """Kill every step process group still running (called on Ctrl-C / SIGTERM)."""
    with _live_lock:
        groups = list(_live_groups)
    for pid in groups:
        _kill_group(pid)


def _child_setup() -> None:  # pragma: no cover - runs in the child
    """New session (so we can kill the whole tree) and die with the parent (Linux)."""
    os.setsid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


@dataclass
class ProcessResult:
    returncode: int  # negative: killed by that signal (as subprocess reports it)
    duration: float  # seconds
    timed_out: bool
    log_path: Path | None
    output: str = ""  # captured output when no log file was given

    def tail(self, lines: int = 20) -> str:
        """The last lines of the output (from the log file when there is one)."""
        text = self.output
        if self.log_path is not None and self.log_path.exists():
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 64 * 1024))
                text = f.read().decode("utf-8", "replace")
        return "\n".join(text.splitlines()[-lines:])


def run_process(
    cmd: Sequence[str] | str,
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_path: str | os.PathLike[str] | None = None,
    shell: bool = False,
    stdin_data: bytes | None = None,
) -> ProcessResult:
    """Run `cmd` in its own session; kill its whole process group on timeout or on exit.

    Output (stdout and stderr together) goes to `log_path` if given, else is captured.
    `env` replaces the environment when given (callers merge with os.environ themselves).
    """
    log = Path(log_path) if log_path is not None else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
    else:
        out = subprocess.PIPE
    start = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.Popen(
            cmd,
            cwd=os.fspath(cwd),
            env=dict(env) if env is not None else None,
            shell=shell,
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
        )
        with _live_lock:
            _live_groups.add(proc.pid)
        try:
            captured, _ = proc.communicate(input=stdin_data, timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc.pid)
            captured, _ = proc.communicate()
        except BaseException:
            # Ctrl-C or any error in the caller: never leave the step running.
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            _kill_group(proc.pid)  # stragglers the command left in its group
            with _live_lock:
                _live_groups.discard(proc.pid)
    finally:
        if log is not None:
            out.close()
    text = captured.decode("utf-8", "replace") if isinstance(captured, bytes) else ""
    return ProcessResult(
        returncode=proc.returncode,
        duration=time.monotonic() - start,
        timed_out=timed_out,
        log_path=log,
        output=text,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Captured:
    returncode: int
    stdout: str
    stderr: str


def capture(
    cmd: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    input: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Captured:
    """Run a short command (git plumbing, dvc queries) and capture its output."""
    proc = subprocess.run(
        list(cmd),
        cwd=os.fspath(cwd),
        input=input,
        env=dict(env) if env is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Captured(proc.returncode, proc.stdout, proc.stderr)


def kill_under(path: Path | str) -> list[int]:
    """SIGKILL the steps still running inside `path`: every process whose working directory is
    `path` or below it, with its process group. Returns the killed groups (or lone pids).

    Step commands run in their own session (`run_process`), so a group is one step's build or
    probe tree: killing it also reaches the grandchildren that left the folder. That covers the
    orphans of a bisector or a worker that was SIGKILLed (PDEATHSIG takes only each group's
    leader). Our own process and our own group are never killed; a process of our group inside
    `path` is killed alone. Only bisector's own disposable worktrees are ever passed here.
    """
    root = os.path.realpath(path)
    me, own_group = os.getpid(), os.getpgrp()
    killed: list[int] = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            cwd = proc.cwd()
        except (psutil.Error, OSError):
            continue  # gone, a zombie, or not ours to see
        cwd = os.path.realpath(cwd.removesuffix(" (deleted)"))
        if cwd != root and not cwd.startswith(root + os.sep):
            continue
        try:
            group = os.getpgid(proc.pid)
            if group == own_group:
                if proc.pid not in killed:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
            elif group not in killed:
                os.killpg(group, signal.SIGKILL)
                killed.append(group)
        except OSError:
            pass  # it exited meanwhile
    if killed:
        time.sleep(0.05)  # let the kernel reap them before the caller removes the folder
    return killed
