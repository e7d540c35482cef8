"""The executor a session runs its steps on: local worktrees (K threads), a Dask cluster, or Slurm."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bisector.build.cache import BuildCache
from bisector.io.config import table
from bisector.io.workspace import Workspace
from bisector.run.executors.dask import DaskExecutor
from bisector.run.executors.local import LocalExecutor, parse_executor
from bisector.run.executors.slurm import SlurmExecutor
from bisector.run.executors.slurm_jobs import cancel_recorded_jobs
from bisector.run.plan import Plan
from bisector.run.wiring import make_workspace


def make_executor(
    plan: Plan,
    suite: Any,
    *,
    jobs: int = 1,
    executor: str | None = None,
    workspace_factory: Callable[[Path, Path], Workspace] | None = None,
    state: Path | None = None,
    message: Callable[[str], None] = lambda text: None,
) -> Any:
    """`executor` (else `[executor] kind`) is None/"local", "slurm" or a dask:// address;
    `[workers] gpus` gives each local slot a GPU. Run under the repository lock: Slurm jobs that
    a killed session left behind (kill -9) are cancelled first, from `state`."""
    jobs = max(1, jobs)
    executor_table = table(plan.file_config, "executor")
    if state is not None:
        cancel_recorded_jobs(state)
    address = parse_executor(executor or executor_table.get("kind"))
    if address == "slurm":
        return SlurmExecutor(executor_table, plan.worker_spec(), jobs, state or plan.session_dir.parent.parent, message)
    if address is not None:
        return DaskExecutor(address, plan.worker_spec(), jobs=jobs)
    gpus = [str(g) for g in table(plan.file_config, "workers").get("gpus", [])]
    slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
    dvc, untracked = plan.dvc, plan.untracked
    factory = workspace_factory or (lambda repo, d: make_workspace(repo, d, dvc, untracked))
    if jobs == 1:
        make = lambda i: factory(plan.repo, plan.session_dir)  # noqa: E731
    else:
        make = lambda i: factory(plan.repo, plan.session_dir / f"slot-{i}")  # noqa: E731
    build = plan.build
    cache = BuildCache.for_repo(plan.repo) if build.cache else None
    return LocalExecutor(jobs, make, suite, build, slot_env, cache=cache)
