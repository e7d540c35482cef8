"""Slurm jobs for the Slurm executor: the `[executor]` options, squeue/scancel, the worker-side step.

Kept apart from `slurm.py` (the executor) so that the worker imports only what a step needs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector.core.errors import UsageError
from bisector.journal.codec import decode_result
from bisector.run.executors.dask_worker import run_step_in_worker

JOBS_DIR = "slurm-jobs"  # under the repository's state folder: <session>.txt, one job id a line


class SlurmJobLost(RuntimeError):
    """A step did not finish because its Slurm job ended or never started (retried, then skipped)."""


@dataclass(frozen=True)
class SlurmOptions:
    """The `[executor]` keys of the slurm kind (all optional)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    cores: int = 1  # CPUs per job (the step's build and probe use them; the worker runs one step)
    memory: str = "2GB"  # per job (`--mem`); also the Dask worker's memory limit
    gpus: int | str | None = None  # `--gres=gpu:<gpus>` (a count, or TYPE:COUNT)
    walltime: str | None = None  # `-t`, e.g. "02:00:00"
    job_extra_directives: tuple[str, ...] = ()  # more `#SBATCH` lines, e.g. ["--constraint=a100"]
    python: str | None = None  # the workers' Python (default: this one)
    queue_timeout: float = 600.0  # seconds a job may wait in the queue before it is replaced
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_table(cls, t: dict[str, Any]) -> SlurmOptions:
        def get(key: str, types: tuple[type, ...], default: Any) -> Any:
            v = t.get(key, default)
            if v is not default and (isinstance(v, bool) or not isinstance(v, types)):
                names = " or ".join(x.__name__ for x in types)
                raise UsageError(f"bisector.toml: [executor] {key} must be {names}, not {v!r}")
            return v

        extra = get("job_extra_directives", (list,), [])
        if not all(isinstance(x, str) for x in extra):
            raise UsageError("bisector.toml: [executor] job_extra_directives must be a list of strings")
        cores = get("cores", (int,), 1)
        if cores < 1:
            raise UsageError(f"bisector.toml: [executor] cores must be at least 1, not {cores}")
        qt = float(get("queue_timeout", (int, float), 600.0))
        if qt <= 0:
            raise UsageError(f"bisector.toml: [executor] queue_timeout must be positive, not {qt}")
        return cls(
            partition=get("partition", (str,), None), account=get("account", (str,), None),
            qos=get("qos", (str,), None), cores=cores, memory=get("memory", (str,), "2GB"),
            gpus=get("gpus", (int, str), None), walltime=get("walltime", (str,), None),
            job_extra_directives=tuple(extra), python=get("python", (str,), None), queue_timeout=qt,
        )

    def directives(self) -> list[str]:
        out = []
        if self.qos:
            out.append(f"--qos={self.qos}")
        if self.gpus not in (None, 0, ""):
            out.append(f"--gres=gpu:{self.gpus}")
        return out + list(self.job_extra_directives)


# ----------------------------------------------------------------- slurm commands
def _slurm(args: list[str], timeout: float = 30, input: str | None = None) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(args, 127, "", str(exc))


def job_states(ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """{job id: (state, reason)} of the jobs Slurm still knows (finished ones for a while too)."""
    if not ids:
        return {}
    res = _slurm(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i|%T|%r"])
    out = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def _final_state(job: str, wait: float = 5.0) -> tuple[str, str]:
    """The job's state once it is past COMPLETING (a cancelled job's processes take a moment)."""
    deadline = time.monotonic() + wait
    while True:
        state, reason = job_states([job]).get(job, ("GONE", ""))
        if state != "COMPLETING" or time.monotonic() > deadline:
            return state, reason
        time.sleep(0.2)


def cancel_jobs(ids: Sequence[str]) -> None:
    for i in range(0, len(ids), 100):
        _slurm(["scancel", *ids[i:i + 100]])


def cancel_recorded_jobs(state: Path) -> list[str]:
    """Cancel the jobs that sessions killed without a goodbye (kill -9) left listed; forget them.

    Called at a session's start, under the repository lock, so no running session owns them.
    """
    folder = state / JOBS_DIR
    if not folder.is_dir():
        return []
    ids: list[str] = []
    for f in sorted(folder.glob("*.txt")):
        ids += [line.strip() for line in f.read_text().splitlines() if line.strip().isdigit()]
    if ids:
        cancel_jobs(ids)
    for f in folder.glob("*.txt"):
        f.unlink(missing_ok=True)
    return ids


# ------------------------------------------------------------------ worker side
def run_step_in_slurm_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs on a worker: the Dask step, its `worker` named after the Slurm job.

    A step whose build or probe was killed by a signal while the job is being cancelled (scancel,
    preemption, time limit) is not a verdict on the commit: it raises SlurmJobLost instead.
    """
    job = os.environ.get("SLURM_JOB_ID", "?")
    out = run_step_in_worker(spec)
    out["worker"] = f"slurm:{job}@{out.get('worker') or socket.gethostname()}"
    if _killed_by_signal(out) and job != "?":
        state = job_states([job]).get(job, ("GONE", ""))[0]
        if state != "RUNNING":
            raise SlurmJobLost(f"Slurm job {job} {state} mid-step (its step was killed)")
    return out


def _killed_by_signal(out: dict[str, Any]) -> bool:
    result = decode_result(out)
    codes = [result.build.returncode, *(o.evidence.get("exit_code") for o in result.observations)]
    return any(isinstance(c, int) and c < 0 for c in codes)
