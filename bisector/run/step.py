"""One step: materialize a revision in a workspace, build it, run the probe suite.

`execute_step` is the in-process form (the session and local worker threads call it);
`run_step` is the trampoline a distributed engine runs: it takes and returns plain
JSON-able dicts (no pickled objects cross the wire but this module's function).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector.build.run import BuildConfig, BuildResult, run_build
from bisector.io.env import prepare_env
from bisector.io.envcache import EnvError
from bisector.journal.codec import encode_observation
from bisector.probes.base import ProbeContext
from bisector.core.model import Verdict


@dataclass
class StepOutcome:
    commit: str
    verdict: Verdict
    build: dict[str, Any]
    observations: list[dict[str, Any]]
    duration: float
    data_rev: str | None = None
    worker: str = ""
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "verdict": self.verdict.value,
            "build": self.build,
            "observations": self.observations,
            "duration": round(self.duration, 3),
            "data_rev": self.data_rev,
            "worker": self.worker,
            "notes": self.notes,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "StepOutcome":
        return cls(
            commit=d["commit"],
            verdict=Verdict(d["verdict"]),
            build=d.get("build", {}),
            observations=d.get("observations", []),
            duration=d.get("duration", 0.0),
            data_rev=d.get("data_rev"),
            worker=d.get("worker", ""),
            notes=d.get("notes", []),
        )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def execute_step(
    workspace: Any,
    suite: Any,
    build_config: BuildConfig,
    rev: str,
    step: int,
    log_dir: Path,
    data_rev: str | None = None,
    env: dict[str, str] | None = None,
    cache: Any = None,
    env_rev: str | None = None,
) -> StepOutcome:
    """Checkout (code + data), build (or restore from the build cache), probe.

    `workspace` offers `path`, `checkout(rev[, data_rev])`, `env()`, `inputs()` and
    `step_info`; `suite` offers `run(ctx) -> SuiteResult`; `cache` is a BuildCache or None.
    Data that cannot be had makes the step a skip whose note says which file, which
    revision and why. A failed build maps to `build_config.on_failure` (abort: ABORT).
    With `build_config.env`, the revision's own environment (that of `env_rev`, when given)
    is restored into the workspace first; one that cannot be built is a skip.
    """
    from bisector.core.errors import BisectorError

    t0 = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    try:
        if data_rev is not None:
            workspace.checkout(rev, data_rev)
        else:
            workspace.checkout(rev)
    except BisectorError as exc:
        if type(exc).__name__ != "DataUnavailable":
            raise
        return StepOutcome(
            commit=rev, verdict=Verdict.SKIP, build={"status": "no-data", "cause": getattr(exc, "cause", "")},
            observations=[], duration=time.monotonic() - t0, data_rev=data_rev, worker=worker_name(),
            notes=[str(exc)],
        )
    try:
        env_vars, env_info = prepare_env(workspace.path, build_config.env, log_dir,
                                         repo=getattr(workspace, "repo", None), env_rev=env_rev)
    except EnvError as exc:
        return StepOutcome(
            commit=rev, verdict=Verdict.SKIP, build={"status": "no-env", "data": {"env": exc.info}},
            observations=[], duration=time.monotonic() - t0, data_rev=data_rev, worker=worker_name(),
            notes=[str(exc)],
        )
    step_env = {**workspace.env(), **env_vars, **(env or {})}
    command = build_config.command
    if command is None and getattr(workspace, "is_dvc", False):
        from bisector.io.data.workspace import default_build_command

        command = default_build_command(workspace.path)
    config = dataclasses.replace(build_config, command=command)
    inputs_before = {p: getattr(i, "hash", i) for p, i in workspace.inputs().items()}
    stats_before = None
    if getattr(workspace, "is_dvc", False):
        from bisector.io.data.workspace import input_stats

        stats_before = input_stats(workspace)
    build = _build(workspace, config, rev, log_dir, step_env, cache, env_info.get("key"))
    build_json = build.to_json()
    if getattr(workspace, "step_info", None):
        build_json["data"] = workspace.step_info
    if env_info:
        build_json["data"] = {**build_json.get("data", {}), "env": env_info}
    if build.ok and getattr(workspace, "is_dvc", False) and build.status != "cached":
        from bisector.io.data.workspace import after_build_check

        modified = after_build_check(workspace, stats_before)
        # A build can also re-record its inputs (`dvc repro` rewrites a changed `.dvc` file,
        # after which `dvc status` is clean): compare the declared hashes too.
        inputs_after = {p: getattr(i, "hash", i) for p, i in workspace.inputs().items()}
        modified = sorted(set(modified) | {p for p in inputs_before if inputs_after.get(p) != inputs_before[p]})
        if modified:
            notes.append("the build modified DVC-tracked inputs: " + ", ".join(modified) + " (result suspect)")
    observations: list[dict[str, Any]] = []
    if build.ok:
        ctx = ProbeContext(
            workspace=workspace.path, commit=rev, step=step, log_dir=log_dir, data_rev=data_rev, env=step_env
        )
        res = suite.run(ctx)
        verdict = res.verdict
        observations = [encode_observation(o) for o in res.observations]
    else:
        verdict = Verdict.ABORT if config.on_failure == "abort" else Verdict(config.on_failure)
    return StepOutcome(
        commit=rev,
        verdict=verdict,
        build=build_json,
        observations=observations,
        duration=time.monotonic() - t0,
        data_rev=data_rev,
        worker=worker_name(),
        notes=notes,
    )


def _build(workspace: Any, config: BuildConfig, rev: str, log_dir: Path, env: dict[str, str], cache: Any,
           env_key: str | None = None) -> BuildResult:
    """Run the build, or restore an identical earlier build's outputs from the cache."""
    if not config.command:
        return BuildResult("none")
    key = None
    if cache is not None and config.cache:
        from bisector.build.cache import step_key

        data = {p: getattr(i, "hash", str(i)) for p, i in workspace.inputs().items()}
        extra: dict[str, Any] = {"outputs": list(config.outputs)}
        if env_key:
            extra["env"] = env_key  # built with another environment: another build
        key = step_key(workspace.repo, rev, data, config.command, extra)
        if cache.lookup(key):
            t0 = time.monotonic()
            restored = cache.restore(key, workspace.path)
            return BuildResult("cached", duration=time.monotonic() - t0, log=None, tail="", key=key, outputs=restored)
    result = run_build(config, workspace.path, log_dir / "build.log", env=env)
    if result.ok and key is not None:
        outputs = list(config.outputs)
        if not outputs and getattr(workspace, "is_dvc", False):
            from bisector.build.cache import dvc_outputs

            outputs = dvc_outputs(workspace.path)
        outputs = [o for o in outputs if (workspace.path / o).exists()]
        if outputs:
            cache.store(key, workspace.path, outputs)
            result.key = key
            result.outputs = outputs
    return result


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Trampoline for remote engines: build everything from a JSON-able spec, run, return JSON.

    spec keys: repo, workspace_dir, rev, data_rev, step, log_dir, build (BuildConfig
    fields), probe_specs, stop_early, user_cwd, frozen_dir, env, dvc. The workspace is a
    detached worktree at `workspace_dir/w<worker pid>/wt` opened on first use (see
    `open_workspace`), so steps on one worker process reuse one worktree.
    """
    from bisector.run.session import default_suite_factory

    ws = open_workspace(spec)
    suite = default_suite_factory(
        spec["probe_specs"], Path(spec["user_cwd"]), Path(spec["frozen_dir"]), spec["stop_early"]
    )
    outcome = execute_step(
        ws,
        suite,
        BuildConfig.from_json(spec["build"]),
        spec["rev"],
        spec["step"],
        Path(spec["log_dir"]),
        data_rev=spec.get("data_rev"),
        env_rev=spec.get("env_rev"),
        env=spec.get("env") or None,
        cache=_cache_for(Path(spec["repo"])) if spec["build"].get("cache", True) and not spec.get("fresh_build") else None,
    )
    return outcome.to_json()


# The workspaces this (worker) process opened, reused by its later steps: a DvcWorkspace keeps
# state from `open` (the user's DVC config) that a fresh object on an existing worktree lacks.
_workspaces: dict[str, Any] = {}


def open_workspace(spec: dict[str, Any]) -> Any:
    """This process's workspace for `spec` (`workspace_dir/w<pid>/wt`), opened on first use.

    Opening holds an flock on `workspace_dir/.lock`: worker processes starting together would
    otherwise run `git worktree add`/`prune` on one repository at once, which races in git.
    """
    import fcntl

    from bisector.run.session import make_workspace

    root = Path(spec["workspace_dir"]) / f"w{os.getpid()}"
    ws = _workspaces.get(str(root))
    if ws is None or not ws.path.exists():
        for key in [k for k, w in _workspaces.items() if not w.path.exists()]:
            del _workspaces[key]  # sessions that ended
        ws = make_workspace(Path(spec["repo"]), root, spec.get("dvc") or {})
        root.parent.mkdir(parents=True, exist_ok=True)
        with open(root.parent / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ws.open(spec["rev"])
        _workspaces[str(root)] = ws
    return ws


def _cache_for(repo: Path) -> Any:
    from bisector.build.cache import BuildCache

    return BuildCache.for_repo(repo)
