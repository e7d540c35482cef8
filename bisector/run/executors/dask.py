"""Steps on a Dask cluster: the same rounds as LocalExecutor, each step a `run_step` task.

The cluster is the user's: we connect a client, submit `bisector.run.step.run_step(spec)` (a
plain-dict trampoline, wrapped to make the worker's worktree under a lock) as impure tasks with
engine retries off, and close only our client. Retries are the session's job (see executors.py):
a lost worker (`KilledWorker`), a dropped connection or any other task error is yielded as an
exception; the session retries it once, then journals a skip with the note. Workers on the
client's filesystem materialize their steps in `spec_base["workspace_dir"]/w<worker pid>/wt`
worktrees, which `close()` removes; workers elsewhere work from a clone of `repo_url` (see
`worker_spec`).

Invariant: at most one `run_step` runs at a time in one worker process, because the worktree
is keyed by the worker's pid. `open()` refuses workers that run several threads.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from bisector.core.errors import BisectorError, UsageError
from bisector.io.git import git
from bisector.run.step import StepOutcome, run_step

if TYPE_CHECKING:  # pragma: no cover
    from bisector.run.executors.local import StepRequest

MISSING_EXTRA = "the dask executor needs the dask extra: pip install 'bisector[dask]'"
WORKERS_TIMEOUT = 60.0  # seconds to wait for a first worker
STOP_GRACE = 10.0  # seconds to let killed steps' tasks return before the worktrees go
WARMUP_TIMEOUT = 60.0  # seconds to wait for the workers' preparation at the start


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UsageError(MISSING_EXTRA) from None
    return distributed


class DaskExecutor:
    """Rounds of steps on the Dask scheduler at `address` (tcp://HOST:PORT).

    `spec_base` holds what every step shares (see `bisector.run.step.run_step`); each request
    adds rev, step, log_dir and data_rev. At most `jobs` steps are submitted at once (the
    session asks for at most `jobs` per round).
    """

    def __init__(self, address: str, spec_base: dict[str, Any], jobs: int = 1):
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, not {jobs}")
        self._distributed = _import_distributed()
        self.address = address
        self.spec_base = dict(spec_base)
        self.jobs = jobs
        if self.spec_base.get("repo_url"):
            # Workers without our filesystem get the frozen probe (scripts, inputs) inside the spec.
            self.spec_base["frozen_files"] = read_frozen(Path(self.spec_base["frozen_dir"]))
        self.workspace_dir = Path(spec_base["workspace_dir"])
        self._client: Any = None
        self._inflight: dict[Any, "StepRequest"] = {}
        self.step_task: Any = run_step_in_worker  # what runs a step on a worker (the Slurm executor wraps it)

    # ------------------------------------------------------------ lifecycle
    def open(self, first_rev: str) -> None:
        d = self._distributed
        try:
            # Connect timeout: Dask's `distributed.comm.timeouts.connect` (30 s by default).
            self._client = d.Client(self.address, set_as_default=False)
        except (OSError, TimeoutError) as exc:
            raise UsageError(
                f"cannot reach the Dask scheduler at {self.address} ({type(exc).__name__}): "
                "start one with `dask scheduler`, or fix --executor / DASK_SCHEDULER_ADDRESS"
            ) from None
        try:
            self._client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except (OSError, TimeoutError):
            raise UsageError(
                f"the Dask scheduler at {self.address} has no workers after {WORKERS_TIMEOUT:.0f} s: "
                f"start some with `dask worker {self.address} --nthreads 1`"
            ) from None
        workers = self._client.scheduler_info().get("workers", {})
        threaded = sorted(a for a, w in workers.items() if w.get("nthreads", 1) > 1)
        if threaded:
            raise UsageError(
                f"Dask worker {threaded[0]} runs {workers[threaded[0]]['nthreads']} threads; bisector needs "
                "one step per worker process (each owns one worktree): start workers with `--nthreads 1`"
            )
        self._warm_up(first_rev, list(workers))

    def _warm_up(self, first_rev: str, workers: list[str]) -> None:
        """Prepare every worker at once (imports, a clone with `repo_url`, its worktree) as tasks.

        Tasks, not `client.run`: a clone may take minutes and must not block a worker's event loop.
        A worker that cannot prepare fails its first step instead, visibly, with the reason.
        """
        d = self._distributed
        spec = {**self.spec_base, "rev": first_rev}
        tag = os.urandom(4).hex()
        futs = [
            self._client.submit(warm_up_worker, spec, workers=[w], allow_other_workers=False, pure=False,
                                retries=0, key=f"bisector-prepare-{i}-{tag}")
            for i, w in enumerate(workers)
        ]
        try:
            d.wait(futs, timeout=WARMUP_TIMEOUT)
        except Exception:  # noqa: BLE001 - timeout (a busy or slow worker): its first step prepares it
            pass
        try:
            self._client.cancel([f for f in futs if not f.done()])
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        """Stop our steps still running, remove the workers' worktrees, drop our client (not the cluster)."""
        client, self._client = self._client, None
        try:
            if client is not None:
                self._stop(client)
                if self.spec_base.get("repo_url"):
                    try:
                        client.run(clean_worker, self._paths_spec(), on_error="ignore")
                    except Exception:  # noqa: BLE001 - the cluster is gone
                        pass
                try:
                    client.close(timeout=5)
                except Exception:  # noqa: BLE001 - the cluster may be gone; nothing left to release
                    pass
        finally:
            self._inflight.clear()
            kill_steps_under(str(self.workspace_dir))  # workers on this machine
            self._remove_worktrees()

    # ---------------------------------------------------------------- steps
    def spec(self, req: "StepRequest") -> dict[str, Any]:
        return {
            **self.spec_base,
            "rev": req.rev,
            "step": req.step,
            "log_dir": str(req.log_dir),
            "data_rev": req.data_rev,
            "env": {**self.spec_base.get("env", {}), **req.env()},
            "fresh_build": req.fresh_build,
        }

    def run_round(
        self, requests: Sequence["StepRequest"]
    ) -> Iterator[tuple["StepRequest", StepOutcome | BaseException]]:
        if self._client is None:
            raise RuntimeError("DaskExecutor.run_round before open()")
        if self._client.status == "closed":
            # The client gave up reconnecting: every further step would be lost, not skipped.
            raise BisectorError(
                f"lost the connection to the Dask scheduler at {self.address}: the journal is saved; "
                "restart the scheduler and run `bisector run` again to resume"
            )
        d = self._distributed
        futures = {}
        for req in requests:
            # pure=False: a repeated (flaky) probe of the same revision must really run again.
            fut = self._client.submit(
                self.step_task, self.spec(req), pure=False, retries=0,
                key=f"bisector-step-{req.step}-{os.urandom(4).hex()}",
            )
            futures[fut] = req
            self._inflight[fut] = req
        try:
            for fut in d.as_completed(list(futures), loop=self._client.loop):
                req = futures[fut]
                self._inflight.pop(fut, None)
                yield req, self._outcome(fut, req)
        except BaseException:
            # Ctrl-C / SIGTERM mid-round: stop the remote steps, then let the caller clean up.
            self._stop(self._client)
            raise

    def _outcome(self, fut: Any, req: "StepRequest") -> StepOutcome | BaseException:
        try:
            return StepOutcome.from_json(fut.result())
        except Exception as exc:  # noqa: BLE001 - KilledWorker, CommClosedError, a task's error: the session decides
            return exc

    def _stop(self, client: Any) -> None:
        """Kill our steps still running on the workers (a cancelled Dask task keeps running), then cancel."""
        pending = [f for f in self._inflight if not f.done()]
        deadline = time.monotonic() + STOP_GRACE
        while True:
            # Also when nothing is pending: orphans of a killed worker's step are still about.
            try:
                client.run(stop_worker_steps, self._paths_spec(), on_error="ignore")
            except Exception:  # noqa: BLE001 - the cluster is gone: its steps died with it (PDEATHSIG)
                break
            pending = [f for f in pending if not f.done()]
            if not pending or time.monotonic() > deadline:
                break
            try:
                # A step killed between its checkout and its build starts the next command: kill again.
                self._distributed.wait(pending, timeout=0.5)
            except Exception:  # noqa: BLE001 - timeout
                pass
        if pending:
            try:
                client.cancel(pending, force=True)
            except Exception:  # noqa: BLE001
                pass
        for f in list(self._inflight):
            if f.done() or f in pending:
                self._inflight.pop(f, None)

    def _paths_spec(self) -> dict[str, Any]:
        """What a worker needs to find our worktrees (no frozen files: this goes to every worker)."""
        keys = ("repo", "workspace_dir", "frozen_dir", "repo_url", "worker_cache")
        return {k: self.spec_base[k] for k in keys if k in self.spec_base}

    def _remove_worktrees(self) -> None:
        """Remove `workspace_dir/w<pid>/wt` worktrees of the user's repo (same-filesystem workers)."""
        repo = Path(self.spec_base["repo"])
        if not self.workspace_dir.is_dir():
            return
        for wt in sorted(self.workspace_dir.glob("*/wt")):
            git(repo, "worktree", "remove", "--force", str(wt), check=False)
            shutil.rmtree(wt, ignore_errors=True)
        shutil.rmtree(self.workspace_dir, ignore_errors=True)
        git(repo, "worktree", "prune", check=False)


def run_step_in_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: `bisector.run.step.run_step` on the worker's view of the spec.

    Its worktree is created first, under a lock; with `repo_url` the revision is fetched into
    the worker's cache clone first (see `worker_spec`).
    """
    return run_step(warm_up_worker(spec))


def warm_up_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: make it ready to run `spec` (revision present, worktree made); the local spec."""
    local = worker_spec(spec)
    if spec.get("repo_url"):
        sync_from_remote(local, spec["repo_url"], spec["rev"], spec.get("frozen_files", {}))
    prepare_worker(local)
    return local


def worker_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as this worker sees it.

    On the client's filesystem (no `repo_url`): unchanged. With `repo_url` (workers that do not
    share our filesystem): the repository is the worker's clone of that URL in its cache
    (`worker_cache`, else $BISECTOR_WORKER_CACHE, else ~/.cache/bisector), and the worktrees,
    logs and frozen probe files live in `<cache>/sessions/<session>/`.
    """
    url = spec.get("repo_url")
    if not url:
        return spec
    import hashlib

    default_cache = Path.home() / ".cache" / "bisector"
    cache = Path(spec.get("worker_cache") or os.environ.get("BISECTOR_WORKER_CACHE") or default_cache)
    clone = cache / "repos" / hashlib.sha256(url.encode()).hexdigest()[:16]
    local = cache / "sessions" / Path(spec["workspace_dir"]).parent.name  # .../sessions/<id>/remote
    frozen = local / "frozen"
    out = {
        **spec,
        "repo": str(clone),
        "workspace_dir": str(local / "remote"),
        "frozen_dir": str(frozen),
        "user_cwd": str(local),
    }
    if "probe_specs" in spec:
        out["probe_specs"] = _swap_paths(spec["probe_specs"], str(spec["frozen_dir"]), str(frozen))
    if "step" in spec:
        out["log_dir"] = str(local / "logs" / f"step-{spec['step']}")
    out.pop("frozen_files", None)
    return out


def _swap_paths(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_swap_paths(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _swap_paths(v, old, new) for k, v in value.items()}
    return value


def read_frozen(frozen_dir: Path) -> dict[str, tuple[int, str]]:
    """{relative path: (mode, base64 content)} of the frozen probe files, to ship in the spec."""
    import base64

    out: dict[str, tuple[int, str]] = {}
    if frozen_dir.is_dir():
        for p in sorted(frozen_dir.rglob("*")):
            if p.is_file():
                content = base64.b64encode(p.read_bytes()).decode()
                out[str(p.relative_to(frozen_dir))] = (p.stat().st_mode & 0o777, content)
    return out


def sync_from_remote(local: dict[str, Any], url: str, rev: str, frozen_files: dict[str, Any]) -> None:
    """Runs on a worker: its cache clone of `url` has `rev`; the frozen probe files are written.

    One clone per URL and worker host (`git clone --no-checkout`), shared by the worker
    processes there under an flock; a missing revision is fetched. A revision the remote does
    not have is the user's to fix (push it), so that is a UsageError, which stops the session.
    """
    import base64
    import fcntl

    from bisector.io.process import capture

    clone = Path(local["repo"])
    clone.parent.mkdir(parents=True, exist_ok=True)

    def has(r: str) -> bool:
        return capture(["git", "-C", str(clone), "cat-file", "-e", f"{r}^{{commit}}"], cwd=clone).returncode == 0

    with open(f"{clone}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (clone / ".git").is_dir():
            tmp = clone.with_name(clone.name + f".tmp{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            res = capture(["git", "clone", "--quiet", "--no-checkout", url, str(tmp)], cwd=clone.parent)
            if res.returncode != 0:
                raise UsageError(
                    f"worker cannot clone {url}: {res.stderr.strip()[:300]}: check repo_url and the worker's git access"
                )
            os.replace(tmp, clone)
        for fetch in (["fetch", "--quiet", "origin"], ["fetch", "--quiet", "origin", rev]):
            if has(rev):
                break
            capture(["git", "-C", str(clone), *fetch], cwd=clone)
        if not has(rev):
            raise UsageError(f"revision {rev[:10]} is not in {url}: push it (and the bounds) to that remote")
    frozen = Path(local["frozen_dir"])
    for rel, (mode, data) in frozen_files.items():
        path = frozen / rel
        content = base64.b64decode(data)
        if not path.exists() or path.read_bytes() != content:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp_file = path.with_name(path.name + f".tmp{os.getpid()}")
            tmp_file.write_bytes(content)
            os.chmod(tmp_file, mode)
            os.replace(tmp_file, path)


def prepare_worker(spec: dict[str, Any]) -> None:
    """Runs on a worker: create its worktree `workspace_dir/w<pid>/wt` (run_step's layout) at `rev`.

    Workers starting together would otherwise run `git worktree add`/`prune` on one repository
    at once, which races in git (".git/worktrees/wt/commondir" missing). The lock is an flock
    on `workspace_dir/.lock`, held only while this worker process creates its worktree.
    """
    import fcntl

    from bisector.run import step
    from bisector.probes.registry import make_suite  # noqa: F401 - warm the import run_step needs
    from bisector.run.session import make_workspace

    opener = getattr(step, "open_workspace", None)
    if opener is not None:
        opener(spec)  # opened once per process and kept for run_step (a DvcWorkspace needs that)
        return
    workspace_dir = Path(spec["workspace_dir"])
    ws = make_workspace(Path(spec["repo"]), workspace_dir / f"w{os.getpid()}")  # run_step's layout
    if not ws.path.exists():
        workspace_dir.mkdir(parents=True, exist_ok=True)
        with open(workspace_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not ws.path.exists():
                ws.open(spec["rev"])


def stop_worker_steps(spec: dict[str, Any]) -> list[int]:
    """Runs on each worker (client.run): kill our step processes there (see kill_steps_under)."""
    return kill_steps_under(worker_spec(spec)["workspace_dir"])


def clean_worker(spec: dict[str, Any]) -> None:
    """Runs on each worker (client.run) with `repo_url`: remove the session's worktrees and files there."""
    import fcntl

    local = worker_spec(spec)
    workspace_dir = Path(local["workspace_dir"])
    kill_steps_under(str(workspace_dir))
    clone = Path(local["repo"])
    if workspace_dir.is_dir() and clone.is_dir():
        with open(workspace_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            for wt in sorted(workspace_dir.glob("*/wt")):
                git(clone, "worktree", "remove", "--force", str(wt), check=False)
            git(clone, "worktree", "prune", check=False)
    shutil.rmtree(workspace_dir.parent, ignore_errors=True)  # <cache>/sessions/<id>


def kill_steps_under(workspace_dir: str) -> list[int]:
    """SIGKILL the process groups of every process whose cwd is under `workspace_dir`.

    Runs on each worker (and on the client) when a session stops. Step commands run in their
    own session (process.run_process), so a group is one step's build or probe tree; that
    covers steps still running and the orphans of a worker that was killed (PDEATHSIG takes
    the step's leader, not its grandchildren). The caller's own group is never touched.
    """
    root = os.path.realpath(workspace_dir)
    own = os.getpgrp()
    killed: list[int] = []
    for pid, cwd in _process_cwds():
        if not (cwd == root or cwd.startswith(root + os.sep)):
            continue
        try:
            pgid = os.getpgid(pid)
            if pgid == own or pgid in killed:
                continue
            os.killpg(pgid, signal.SIGKILL)
            killed.append(pgid)
        except OSError:
            pass
    if killed:
        time.sleep(0.05)
    return killed


def _process_cwds() -> Iterator[tuple[int, str]]:
    """(pid, working directory) of the processes we may see: /proc on Linux, else psutil."""
    if os.path.isdir("/proc/self"):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                cwd = os.readlink(f"/proc/{name}/cwd")
            except OSError:
                continue
            yield int(name), cwd.removesuffix(" (deleted)")
        return
    try:
        import psutil
    except ImportError:
        return
    for p in psutil.process_iter():
        try:
            yield p.pid, os.path.realpath(p.cwd())
        except (psutil.Error, OSError):
            continue
