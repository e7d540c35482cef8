"""The executor a session runs its steps on: local worktrees (K threads) or a Dask cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from bisector.build.cache import BuildCache
from bisector.io.config import table
from bisector.io.workspace import Workspace
from bisector.run.executors.dask import DaskExecutor
from bisector.run.executors.local import LocalExecutor, parse_executor
from bisector.run.plan import Plan
from bisector.run.wiring import make_workspace


def make_executor(
    plan: Plan,
    suite: Any,
    *,
    jobs: int = 1,
    executor: str | None = None,
    workspace_factory: Callable[[Path, Path], Workspace] | None = None,
) -> Any:
    """`executor` is None/"local" or a dask:// address; `[workers] gpus` gives each local slot a GPU."""
    jobs = max(1, jobs)
    address = parse_executor(executor)
    if address is not None:
        return DaskExecutor(address, plan.worker_spec(), jobs=jobs)
    gpus = [str(g) for g in table(plan.file_config, "workers").get("gpus", [])]
    slot_env = [{"CUDA_VISIBLE_DEVICES": g} for g in gpus]
    dvc = plan.dvc
    factory = workspace_factory or (lambda repo, d: make_workspace(repo, d, dvc))
    if jobs == 1:
        make = lambda i: factory(plan.repo, plan.session_dir)  # noqa: E731
    else:
        make = lambda i: factory(plan.repo, plan.session_dir / f"slot-{i}")  # noqa: E731
    build = plan.build
    cache = BuildCache.for_repo(plan.repo) if build.cache else None
    return LocalExecutor(jobs, make, suite, build, slot_env, cache=cache)
