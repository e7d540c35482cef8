"""Where steps run: in the main thread, on K local worker threads, or on a Dask cluster.

Every executor runs rounds: `run_round(requests, logs)` yields (request, result) as each step
finishes, so the session journals results as they arrive and a crash mid-round loses only
the unfinished steps. A result is a `core.model.StepResult`, or an exception that
`run.rounds.ExecutorRunner` turns into a skip after one retry (an infrastructure failure is
not a verdict on the commit). Step N logs to `logs/step-N`.
"""

from __future__ import annotations

import queue
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from bisector.build.run import BuildConfig
from bisector.core.errors import UsageError
from bisector.io.process import kill_all
from bisector.core.model import StepRequest, StepResult
from bisector.run.step import execute_step, log_dir, run_env


class LocalExecutor:
    """K worktrees and K threads; each thread waits on its step's subprocesses.

    With jobs=1 the step runs in the calling thread (no pool), the simplest thing.
    """

    def __init__(
        self,
        jobs: int,
        make_workspace: Callable[[int], Any],
        suite: Any,
        build_config: BuildConfig,
        slot_env: Sequence[dict[str, str]] = (),
        cache: Any = None,
    ):
        if jobs < 1:
            raise UsageError(f"--jobs must be at least 1, not {jobs}")
        self.jobs = jobs
        self.workspaces = [make_workspace(i) for i in range(jobs)]
        self.suite = suite
        self.build_config = build_config
        self.slot_env = list(slot_env)
        self.cache = cache
        self._pool: ThreadPoolExecutor | None = None
        self._free: "queue.Queue[int]" = queue.Queue()
        # Told (step number, phase) as each local step moves on: checkout/data, build, probe.
        self.on_phase: Callable[[int, str], None] | None = None

    def open(self, first_rev: str) -> None:
        for i, ws in enumerate(self.workspaces):
            ws.open(first_rev)
            self._free.put(i)
        if self.jobs > 1:
            self._pool = ThreadPoolExecutor(self.jobs, thread_name_prefix="bisector-step")

    def close(self) -> None:
        if self._pool is not None:
            kill_all()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for ws in self.workspaces:
            ws.close()

    def _run(self, req: StepRequest, logs: Path) -> StepResult:
        slot = self._free.get()
        try:
            env = {**(self.slot_env[slot % len(self.slot_env)] if self.slot_env else {}), **run_env(req)}
            point = req.point
            result = execute_step(
                self.workspaces[slot], self.suite, self.build_config, point.code, req.step, log_dir(logs, req.step),
                point.data, env, cache=None if req.fresh_build else self.cache, env_rev=point.env,
                phase=self._phase(req.step),
            )
            return dataclasses.replace(result, worker=f"local-{slot}")
        finally:
            self._free.put(slot)

    def _phase(self, step: int) -> Callable[[str], None] | None:
        hook = self.on_phase
        return None if hook is None else (lambda name: hook(step, name))

    def run_round(self, requests: Sequence[StepRequest], logs: Path) -> Iterator[tuple[StepRequest, StepResult | BaseException]]:
        if self._pool is None:
            for req in requests:
                yield req, self._run(req, logs)
            return
        futures: dict[Future[StepResult], StepRequest] = {self._pool.submit(self._run, r, logs): r for r in requests}
        try:
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    exc = f.exception()
                    yield futures[f], (exc if exc is not None else f.result())
        except BaseException:
            kill_all()  # Ctrl-C: stop every step still running, then let the caller clean up
            for f in futures:
                f.cancel()
            raise


def parse_executor(url: str | None) -> str | None:
    """Validate --executor: None (local), "slurm", or a dask:// / tcp:// scheduler address."""
    if url is None or url in ("", "local"):
        return None
    if url == "slurm":
        return url
    if url.startswith("dask://"):
        return "tcp://" + url[len("dask://"):]
    if url.startswith("tcp://"):
        return url
    raise UsageError(f"unknown executor {url!r}: use local, slurm or dask://HOST:PORT")
