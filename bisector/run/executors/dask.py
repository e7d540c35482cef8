"""Steps on a Dask cluster: the same rounds as LocalExecutor, each step a `run_step` task.

The cluster is the user's: we connect a client, submit `bisector.run.step.run_step(spec)` (a
plain-dict trampoline, wrapped to make the worker's worktree under a lock: the worker side is
dask_worker.py) as impure tasks with
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
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

from bisector.core.errors import BisectorError, UsageError
from bisector.core.model import StepRequest, StepResult
from bisector.io.process import kill_under
from bisector.io.state import remove_checkout
from bisector.journal.codec import decode_result
from bisector.run.executors.dask_worker import (
    clean_worker,
    read_frozen,
    run_step_in_worker,
    stop_worker_steps,
    warm_up_worker,
)
from bisector.run.step import log_dir, run_env

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
        self._inflight: dict[Any, StepRequest] = {}
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
            kill_under(str(self.workspace_dir))  # workers on this machine
            self._remove_worktrees()

    # ---------------------------------------------------------------- steps
    def spec(self, req: StepRequest, logs: Path) -> dict[str, Any]:
        return {
            **self.spec_base,
            "rev": req.point.code,
            "step": req.step,
            "log_dir": str(log_dir(logs, req.step)),
            "data_rev": req.point.data,
            "env": {**self.spec_base.get("env", {}), **run_env(req)},
            "env_rev": req.point.env,
            "fresh_build": req.fresh_build,
        }

    def run_round(self, requests: Sequence[StepRequest], logs: Path) -> Iterator[tuple[StepRequest, StepResult | BaseException]]:
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
                self.step_task, self.spec(req, logs), pure=False, retries=0,
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

    def _outcome(self, fut: Any, req: StepRequest) -> StepResult | BaseException:
        try:
            return decode_result(fut.result())
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
        """Remove the workers' clones `workspace_dir/w<pid>/` (same-filesystem workers)."""
        if not self.workspace_dir.is_dir():
            return
        for wt in sorted(self.workspace_dir.glob("*/wt")):
            remove_checkout(wt.parent)
        shutil.rmtree(self.workspace_dir, ignore_errors=True)
