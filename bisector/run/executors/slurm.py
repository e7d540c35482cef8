"""Steps on a Slurm cluster: one dask-jobqueue `SLURMCluster` per session, steps through DaskExecutor.

`--executor slurm` (or `[executor] kind = "slurm"`) starts a Dask scheduler in this process and
submits one Slurm job per worker (one single-threaded worker process each, so one step at a
time per job). The steps are the Dask executor's: workers on a shared filesystem use worktrees
of the user's repository, workers elsewhere clone `repo_url` (see `dask.worker_spec`).

What Slurm adds, and where it is handled:
- job ids: every submitted job id is written to `<state>/slurm-jobs/<session>.txt` as soon as
  sbatch returns; `close()` cancels them (success, failure, Ctrl-C, SIGTERM, SIGHUP) and removes
  the file; after a kill -9, the next session's start cancels the ids still listed there
  (`cancel_recorded_jobs`);
- the journal: a step's `worker` is `slurm:<job id>@<host>:<pid>`;
- a lost job (scancel, node failure, preemption, time limit): its step comes back as an
  exception naming the job and its Slurm state, the session retries it once on another job and
  then skips it with that note; the lost job is replaced;
- a job that waits in the queue longer than `queue_timeout` is cancelled and replaced; steps
  that wait because no job runs at all come back as such an exception (retried once, skipped);
- adaptive size: `-j K` jobs at the start, fewer once the rounds ask for fewer steps.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError
from bisector.run.executors.dask import DaskExecutor
from bisector.run.executors.slurm_jobs import (
    JOBS_DIR,
    SlurmJobLost,
    SlurmOptions,
    _final_state,
    _slurm,
    cancel_jobs,
    cancel_recorded_jobs,
    job_states,
    run_step_in_slurm_job,
)
from bisector.core.model import StepRequest, StepResult

__all__ = ["SlurmExecutor", "SlurmJobLost", "SlurmOptions", "cancel_recorded_jobs", "run_step_in_slurm_job"]

MISSING_EXTRA = "the slurm executor needs the slurm extra: pip install 'bisector[slurm]'"
POLL = 1.0  # seconds between looks at the queue
LIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING"}
SCHEDULER_CMDS = ("sbatch", "squeue", "scancel")


def _import_jobqueue() -> tuple[Any, Any]:
    main = threading.current_thread() is threading.main_thread()
    sigint = signal.getsignal(signal.SIGINT) if main else None
    try:
        import dask
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise UsageError(MISSING_EXTRA) from None
    finally:
        if main:  # dask_jobqueue.runner makes Ctrl-C a silent sys.exit() at import: Ctrl-C stays ours
            signal.signal(signal.SIGINT, sigint)
    return dask, SLURMCluster


# ------------------------------------------------------------------ client side
class SlurmExecutor:
    """A SLURMCluster for one session; its steps run through a DaskExecutor on that cluster."""

    def __init__(self, table: dict[str, Any], spec_base: dict[str, Any], jobs: int, state: Path,
                 notify: Callable[[str], None] | None = None):
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, not {jobs}")
        self._dask, self._cluster_cls = _import_jobqueue()
        for cmd in SCHEDULER_CMDS:
            if shutil.which(cmd) is None:
                raise UsageError(f"the slurm executor needs Slurm's `{cmd}` on PATH (run bisector on a login node)")
        self.options = SlurmOptions.from_table(table)
        self.spec_base = dict(spec_base)
        self.jobs = jobs
        self.session = Path(spec_base["workspace_dir"]).parent.name
        self.jobs_file = state / JOBS_DIR / f"{self.session}.txt"
        self._check_job()
        self.notify = notify or (lambda msg: None)
        self.cluster: Any = None
        self.dask: DaskExecutor | None = None
        self.target = jobs
        self._recorded: list[str] = []
        self._job_of: dict[str, str] = {}  # worker (job) name -> job id
        self._pending_since: dict[str, float] = {}
        self._causes: dict[str, str] = {}  # job id -> why it was lost
        self._stall: str | None = None
        self._sizes: list[int] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._old_hup: Any = None
        self._last_report = ""

    def _job_kwargs(self, logs: Path | None) -> dict[str, Any]:
        opts = self.options
        return dict(
            cores=1, processes=1, memory=opts.memory, job_cpu=opts.cores,
            queue=opts.partition, account=opts.account, walltime=opts.walltime,
            job_extra_directives=opts.directives(), python=opts.python or sys.executable,
            job_name=f"bisector-{self.session}", log_directory=str(logs) if logs else None, death_timeout=60,
        )

    def _check_job(self) -> None:
        """Ask Slurm (`sbatch --test-only`) whether it would ever run our worker job: a one-line error now,
        not a worker start timeout later."""
        try:
            script = self._cluster_cls.job_cls(scheduler="tcp://127.0.0.1:1", name="check", **self._job_kwargs(None)).job_script()
        except (ValueError, TypeError) as exc:
            raise UsageError(f"bisector.toml: [executor]: {exc}") from None
        res = _slurm(["sbatch", "--test-only"], input=script)
        if res.returncode != 0:
            lines = [line.strip() for line in (res.stderr or res.stdout).splitlines() if line.strip()]
            why = (lines[-1] if lines else f"exit {res.returncode}").removeprefix("sbatch: error: ")
            raise UsageError(f"Slurm refuses the worker job: {why}: fix [executor] in bisector.toml")

    # ------------------------------------------------------------ lifecycle
    def open(self, first_rev: str) -> None:
        self._catch_sighup()
        logs = None if self.spec_base.get("repo_url") else Path(self.spec_base["workspace_dir"]).parent / "slurm-logs"
        if logs is not None:
            logs.mkdir(parents=True, exist_ok=True)
        with self._dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # bisector retries, not Dask
            try:
                self.cluster = self._cluster_cls(
                    **self._job_kwargs(logs), scheduler_options={"dashboard_address": None, "dashboard": False},
                )
            except (ValueError, TypeError, OSError) as exc:
                raise UsageError(f"cannot start the Slurm cluster: {exc}") from None
        self._scale(self.jobs)
        self._wait_first_worker()
        self.dask = DaskExecutor(self.cluster.scheduler_address, self.spec_base, jobs=self.jobs)
        self.dask.step_task = run_step_in_slurm_job
        self._watcher = threading.Thread(target=self._watch, name="bisector-slurm-watch", daemon=True)
        self._watcher.start()
        self.dask.open(first_rev)

    def close(self) -> None:
        self._stop.set()
        try:
            if self.dask is not None:
                self.dask.close()
        finally:
            self.dask = None
            try:
                if self.cluster is not None:
                    self._record_jobs()
                    self.cluster.close(timeout=20)
            except Exception:  # noqa: BLE001 - whatever the cluster's state, the jobs go below
                pass
            finally:
                self.cluster = None
                cancel_jobs(self._recorded)
                self.jobs_file.unlink(missing_ok=True)
                self._restore_sighup()

    # ---------------------------------------------------------------- steps
    def run_round(self, requests: Sequence[StepRequest], logs: Path) -> Iterator[tuple[StepRequest, StepResult | BaseException]]:
        if self.dask is None:
            raise RuntimeError("SlurmExecutor.run_round before open()")
        self._adapt(len(requests))
        self._replace_lost()
        self._report()
        self._stall = None
        for req, out in self.dask.run_round(requests, logs):
            if isinstance(out, BaseException) and not isinstance(out, (KeyboardInterrupt, UsageError)):
                out = self._explain(out)
                self._replace_lost()
            yield req, out

    def _explain(self, exc: BaseException) -> BaseException:
        """The exception of a lost step, named after the Slurm job and its state where we know them."""
        if isinstance(exc, SlurmJobLost) or type(exc).__name__ == "SlurmJobLost":
            return exc
        name = getattr(getattr(exc, "last_worker", None), "name", None)
        job = self._job_of.get(str(name)) if name is not None else None
        if job is not None:
            state, reason = _final_state(job)
            cause = self._causes.get(job) or f"Slurm job {job} {state}" + (f" ({reason})" if reason not in ("", "None") else "")
            return SlurmJobLost(f"{cause}: {type(exc).__name__}")
        if self._stall is not None:
            return SlurmJobLost(self._stall)
        return exc

    # ----------------------------------------------------------------- jobs
    def _scale(self, n: int) -> None:
        self.target = n
        self.cluster.scale(jobs=n)
        self._record_jobs(wait=True)

    def _record_jobs(self, wait: bool = False) -> None:
        """Write every submitted job id to the state file (before anything else can go wrong)."""
        deadline = time.monotonic() + (30 if wait else 0)
        while True:
            with self._lock:
                workers = dict(getattr(self.cluster, "workers", {}) or {})
                new = []
                for name, job in workers.items():
                    jid = getattr(job, "job_id", None)
                    if jid and name not in self._job_of:
                        self._job_of[str(name)] = str(jid)
                        new.append(str(jid))
                if new:
                    self._recorded += new
                    self.jobs_file.parent.mkdir(parents=True, exist_ok=True)
                    with open(self.jobs_file, "a") as f:
                        f.write("".join(j + "\n" for j in new))
                        f.flush()
                        os.fsync(f.fileno())
                missing = [n for n in self.cluster.worker_spec if n not in self._job_of]
            if not missing or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def _wait_first_worker(self) -> None:
        """Wait for one job to run its worker; jobs queued longer than `queue_timeout` are a usage error."""
        deadline = time.monotonic() + self.options.queue_timeout
        while not self.cluster.scheduler_info.get("workers"):
            states = job_states(list(self._job_of.values()))
            if self._job_of and all(s not in LIVE for s, _ in states.values()) and len(states) == len(self._job_of):
                why = "; ".join(f"job {j} {s} ({r})" for j, (s, r) in sorted(states.items()))
                raise UsageError(f"the Slurm jobs ended before their Dask workers started: {why}{self._log_hint()}")
            if time.monotonic() > deadline:
                why = ", ".join(f"job {j} {s} ({r})" for j, (s, r) in sorted(states.items())) or "no job submitted"
                raise UsageError(
                    f"no Slurm job started within queue_timeout = {self.options.queue_timeout:.0f} s: {why}; "
                    "check partition, account, qos, cores, memory and gpus in [executor]"
                )
            time.sleep(0.1)

    def _log_hint(self) -> str:
        return "" if self.spec_base.get("repo_url") else (
            f"; the workers' logs are in {Path(self.spec_base['workspace_dir']).parent / 'slurm-logs'}")

    def _adapt(self, n: int) -> None:
        """Fewer jobs once rounds ask for fewer steps (two rounds in a row, not the bounds' round)."""
        self._sizes.append(n)
        if len(self._sizes) < 3:
            return
        want = max(1, min(self.jobs, max(self._sizes[-2:])))
        if want < self.target:
            self._scale(want)

    def _replace_lost(self) -> None:
        """Forget jobs that ended (and cancel those queued too long), then submit replacements."""
        with self._lock:
            by_id = {j: n for n, j in self._job_of.items() if n in self.cluster.worker_spec}
        if not by_id:
            return
        states = job_states(list(by_id))
        now = time.monotonic()
        lost = []
        for jid, name in by_id.items():
            state, reason = states.get(jid, ("GONE", ""))
            if state == "PENDING":
                since = self._pending_since.setdefault(jid, now)
                if now - since > self.options.queue_timeout:
                    self._causes[jid] = (f"Slurm job {jid} waited over {self.options.queue_timeout:.0f} s "
                                         f"in the queue ({reason})")
                    cancel_jobs([jid])
                    lost.append(name)
            elif state not in LIVE:
                self._causes.setdefault(jid, f"Slurm job {jid} {state}")
                lost.append(name)
        if lost:
            for name in lost:
                self.cluster.worker_spec.pop(name, None)
            self._scale(self.target)

    def _watch(self) -> None:
        """Background: replace lost jobs; fail steps that wait while no job runs for too long."""
        idle_since: float | None = None
        while not self._stop.wait(POLL):
            try:
                self._replace_lost()
                has_workers = bool(self.cluster.scheduler_info.get("workers"))
                inflight = [f for f in getattr(self.dask, "_inflight", {}) if not f.done()]
                if has_workers or not inflight:
                    idle_since = None
                    continue
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > self.options.queue_timeout:
                    self._stall = (f"no Slurm job ran for {self.options.queue_timeout:.0f} s "
                                   f"(queue_timeout): {self._causes_text()}")
                    self.dask._client.cancel(inflight, force=True)
                    idle_since = None
            except Exception:  # noqa: BLE001 - the cluster is closing; the main thread decides
                continue

    def _causes_text(self) -> str:
        return "; ".join(list(self._causes.values())[-3:]) or "jobs still queued"

    def _report(self) -> None:
        states = job_states([j for n, j in self._job_of.items() if n in self.cluster.worker_spec])
        running = sorted(j for j, (s, _) in states.items() if s == "RUNNING")
        queued = sorted(j for j, (s, _) in states.items() if s in ("PENDING", "CONFIGURING"))
        line = f"Slurm: {len(running)} running ({', '.join(running) or '-'}), {len(queued)} queued ({', '.join(queued) or '-'})"
        if line != self._last_report:
            self._last_report = line
            self.notify(line)

    # -------------------------------------------------------------- signals
    def _catch_sighup(self) -> None:
        """A hang-up ends the run like Ctrl-C, so the jobs are cancelled (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        self._old_hup = signal.signal(signal.SIGHUP, handler)

    def _restore_sighup(self) -> None:
        if self._old_hup is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGHUP, self._old_hup)
            self._old_hup = None
