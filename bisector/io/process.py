"""The one place that runs subprocesses: own process group, log file, timeout, no orphans.

Every process started here gets a sealed environment (`sealed_env`: no variable that points git
at another repository, index or object store) and, during a session, the session's marker
(`BISECTOR_SESSION`, `BISECTOR_STATE`), by which the next start or the end of the run finds and
kills whatever a step left behind (`kill_marked`), daemons included.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

# Variables that tell git which repository, index, object store or config to use instead of the
# ones it finds from its working directory (`git rev-parse --local-env-vars`), and the limits of
# that discovery. Exported inside a git hook or by an editor, they would point our git calls, and
# the builds and probes, at the user's checkout: no process we start ever gets them.
GIT_LOCATION_VARS = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR", "GIT_IMPLICIT_WORK_TREE", "GIT_PREFIX", "GIT_INTERNAL_SUPER_PREFIX", "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_GRAFT_FILE", "GIT_SHALLOW_FILE", "GIT_NO_REPLACE_OBJECTS",
    "GIT_REPLACE_REF_BASE", "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH", "GIT_INDEX_VERSION",
})

# Linux: processes are read from /proc directly (`marked`, `alive`); elsewhere through psutil.
_PROC = os.path.isdir("/proc/self")

# The environment marker of the steps of the running session: {} outside a session.
MARKER, MARKER_STATE = "BISECTOR_SESSION", "BISECTOR_STATE"
_marker: dict[str, str] = {}


def sealed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: our environment) without the GIT_* variables that locate a repository
    (GIT_LOCATION_VARS, and the GIT_CONFIG_KEY_n/VALUE_n pairs of GIT_CONFIG_COUNT)."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k in GIT_LOCATION_VARS or k.startswith(("GIT_CONFIG_KEY_", "GIT_CONFIG_VALUE_"))]:
        del env[key]
    return env


def seal_environ() -> None:
    """Remove the repository-locating GIT_* variables from our own environment too: libraries
    that start git themselves (gitpython's readers) inherit it."""
    for key in set(os.environ) - set(sealed_env()):
        os.environ.pop(key, None)


def mark_processes(session: str | None, state: Path | str | None = None) -> None:
    """From now on, every process `run_process` and `capture` start carries the marker of
    `session` in repository state folder `state` (None: no marker)."""
    _marker.clear()
    if session is not None and state is not None:
        _marker.update({MARKER: session, MARKER_STATE: os.path.realpath(state)})


def _child_env(env: Mapping[str, str] | None) -> dict[str, str]:
    return {**sealed_env(env), **_marker}


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


def _die_with_parent(cmd: list[str]) -> list[str]:
    """`cmd` behind `setpriv --pdeathsig KILL` (util-linux), so the step dies with bisector even on
    kill -9. The child then starts without a `preexec_fn`: Python spawns it with vfork, in constant
    time whatever bisector's size. Without setpriv (not Linux), or for a program that is not
    there (Popen's own error stays), the command runs as it is."""
    global _SETPRIV
    if _SETPRIV is None:
        _SETPRIV = (shutil.which("setpriv") or "") if sys.platform.startswith("linux") else ""
    if not _SETPRIV or not cmd or (os.sep not in cmd[0] and shutil.which(cmd[0]) is None):
        return cmd
    if os.sep in cmd[0] and not os.access(cmd[0], os.X_OK):
        return cmd
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *cmd]


_SETPRIV: str | None = None


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
    `env` replaces the environment when given (callers merge with os.environ themselves); the
    GIT_* variables that locate a repository are removed from it and the marker is added.
    """
    log = Path(log_path) if log_path is not None else None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        out = open(log, "ab")
    else:
        out = subprocess.PIPE
    start = time.monotonic()
    timed_out = False
    args = [cmd] if isinstance(cmd, str) else list(cmd)
    if shell:
        args = ["/bin/sh", "-c", *args]  # what Popen(shell=True) runs
    try:
        proc = subprocess.Popen(
            _die_with_parent(args),
            cwd=os.fspath(cwd),
            env=_child_env(env),
            stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group, killed as a whole
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


def iter_line_chunks(
    cmd: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    chunk: int = 1 << 20,
    meanwhile: Callable[[], object] | None = None,
) -> Iterator[bytes]:
    """Stream the stdout of a command (a long `git rev-list`) as chunks of complete lines, each
    ending with a newline (one is added to an unterminated last line), one read buffer at a time,
    without holding all of it; raises CalledProcessError with its stderr if it fails.

    `meanwhile` runs once the command is started and before its output is read: work of ours
    that overlaps the command's (a command that buffers its output meanwhile loses nothing)."""
    proc = subprocess.Popen(
        list(cmd),
        cwd=os.fspath(cwd),
        env=sealed_env(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,
    )
    try:
        assert proc.stdout is not None
        if meanwhile is not None:
            meanwhile()
        rest = b""
        while True:
            data = proc.stdout.read(chunk)
            if not data:
                break
            data = rest + data if rest else data
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut:
                yield data[:cut]
        if rest:
            yield rest + b"\n"
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    finally:
        proc.stdout.close()
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, list(cmd), stderr=err)


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
        env=_child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Captured(proc.returncode, proc.stdout, proc.stderr)


def capture_bytes(
    cmd: Sequence[str], *, cwd: str | os.PathLike[str], input: bytes | None = None, env: Mapping[str, str] | None = None
) -> CapturedBytes:
    """`capture` for raw output (a `git cat-file --batch`): stdout and stderr as bytes."""
    proc = subprocess.run(
        list(cmd),
        cwd=os.fspath(cwd),
        input=input,
        env=dict(env) if env is not None else None,
        capture_output=True,
    )
    return CapturedBytes(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class CapturedBytes:
    returncode: int
    stdout: bytes
    stderr: bytes


def kill_under(path: Path | str) -> list[int]:
    """SIGKILL the steps still running inside `path`: every process whose working directory is
    `path` or below it, with its process group. Returns the killed groups (or lone pids).

    Step commands run in their own session (`run_process`), so a group is one step's build or
    probe tree: killing it also reaches the grandchildren that left the folder. That covers the
    orphans of a bisector or a worker that was SIGKILLed (PDEATHSIG takes only each group's
    leader). Our own process and our own group are never killed; a process of our group inside
    `path` is killed alone. Only bisector's own disposable worktrees are ever passed here.
    """
    import psutil  # only here: ~15 ms at every start otherwise

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


def marked(state: Path | str) -> list[int]:
    """Live processes of this user carrying the marker of repository state folder `state`
    (steps, and whatever they started: daemons keep the environment they were started with).

    On Linux, read from `/proc` directly (the `environ` of each of this user's processes): a few
    milliseconds, and no psutil import at every start. Elsewhere, through psutil."""
    want = os.path.realpath(state)
    if _PROC:
        return _marked_proc(f"{MARKER_STATE}={want}".encode())
    import psutil  # not Linux: no /proc to read

    mine = {os.getpid()}
    try:
        mine.update(p.pid for p in psutil.Process().parents())
    except (psutil.Error, OSError):
        pass
    found = []
    for proc in psutil.process_iter():
        if proc.pid in mine:
            continue
        try:
            if proc.uids().real != os.getuid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(MARKER_STATE) == want:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return found


def _marked_proc(entry: bytes) -> list[int]:
    uid, mine = os.getuid(), _lineage(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in mine:
            continue
        try:
            if os.stat(f"/proc/{name}").st_uid != uid or not alive(int(name)):
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if entry in env.split(b"\0"):
            found.append(int(name))
    return found


def _stat_fields(pid: int) -> list[bytes]:
    """The fields of /proc/PID/stat after the command name (state, ppid, ...); [] when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return []
    return stat[stat.rfind(b")") + 2:].split()


def _lineage(pid: int) -> set[int]:
    """`pid` and its ancestors: a marker inherited by a parent (bisector run from a step) must
    not kill that parent."""
    out: set[int] = set()
    while pid > 0 and pid not in out:
        out.add(pid)
        fields = _stat_fields(pid)
        pid = int(fields[1]) if len(fields) > 1 else 0
    return out


def alive(pid: int) -> bool:
    """Running (not gone, not a zombie)."""
    if _PROC:
        fields = _stat_fields(pid)
        return bool(fields) and fields[0] not in (b"Z", b"X")
    import psutil  # not Linux

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.Error, OSError):
        return False


def kill_marked(state: Path | str, rounds: int = 20) -> list[int]:
    """SIGKILL every process carrying the marker of repository state folder `state`, until none is
    left (a process forking meanwhile is caught by the next round). Call it with the repository
    lock held: then no session of this repository runs, and every marked process is a leftover
    (of a SIGKILLed bisector on the next start, or a daemon a probe left at the end of a run)."""
    killed: list[int] = []
    for _ in range(rounds):
        pids = marked(state)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        deadline = time.monotonic() + 1.0  # until each is gone or a zombie (not ours to reap)
        for pid in pids:
            while time.monotonic() < deadline and alive(pid):
                time.sleep(0.01)
    return killed
