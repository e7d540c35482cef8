"""One step: materialize a revision in a workspace, build it, run the probe suite.

`execute_step` is the in-process form (the session and local worker threads call it);
`run_step` is the trampoline a distributed engine runs: it takes and returns plain
JSON-able dicts (no pickled objects cross the wire but this module's function).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any, Callable

from bisector.build.cache import BuildCache, dvc_outputs, step_key
from bisector.build.run import BuildConfig, BuildResult, run_build
from bisector.core.errors import BisectorError, UsageError
from bisector.core.model import StepRequest, StepResult, Verdict
from bisector.io.data.buildcheck import after_build_check, input_stats
from bisector.io.data.workspace import default_build_command
from bisector.journal.codec import decode_build, encode_result
from bisector.io.env import ENV_DIR, prepare_env
from bisector.io.envcache import EnvError, set_aside
from bisector.io.process import mark_processes
from bisector.io.state import flock, prune_dead_owners
from bisector.probes.base import ProbeContext
from bisector.run.plan import Plan, judge_digest
from bisector.run.wiring import make_suite, make_workspace


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
    phase: Callable[[str], None] | None = None,
) -> StepResult:
    """Checkout (code + data), build (or restore from the build cache), probe.

    `workspace` offers `path`, `checkout(rev[, data_rev])`, `env()`, `inputs()` and
    `step_info`; `suite` offers `run(ctx) -> SuiteResult`; `cache` is a BuildCache or None.
    Data that cannot be had makes the step a skip whose note says which file, which
    revision and why. A failed build maps to `build_config.on_failure` (abort: ABORT).
    With `build_config.env`, the revision's own environment (that of `env_rev`, when given)
    is restored into the workspace first; one that cannot be built is a skip. `phase` is told
    each phase as it begins: "checkout" (code, and DVC data when the workspace has it), "build",
    "probe" (a progress display; it must not raise).
    """
    tell = phase or (lambda name: None)
    t0 = time.monotonic()
    tell("data" if getattr(workspace, "is_dvc", False) else "checkout")
    log_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    # The last step's environment copy is moved out of the clean's way; the next restore takes
    # it back when it is of the same key and unchanged (envcache.restore), else removes it.
    aside = Path(workspace.path).parent / "env-aside" if build_config.env and build_config.env.active else None
    if aside is not None:
        set_aside(Path(workspace.path) / ENV_DIR, aside)
    # A DVC workspace's data waits until the build cache is asked: when it holds the build, or
    # the build is `dvc repro` (which checks out what its dvc.lock records), the stage outputs
    # are not checked out, and only the data inputs not already in place are put there.
    defer = getattr(workspace, "is_dvc", False) and hasattr(workspace, "materialize") and not build_config.disabled
    spans: dict[str, float] = {}
    t_span = time.monotonic()
    args = (rev,) if data_rev is None else (rev, data_rev)  # plain workspaces take no data revision
    no_data = _data_step(lambda: workspace.checkout(*args, **({"defer_data": True} if defer else {})), workspace, t0)
    if no_data is not None:
        return no_data
    spans["checkout"] = time.monotonic() - t_span
    notes += [f"untracked input {rel} is not in the checkout at {getattr(workspace, 'repo', '?')}: the step ran without it"
              for rel in getattr(workspace, "untracked_missing", ())]
    try:
        env_vars, env_info = prepare_env(workspace.path, build_config.env, log_dir,
                                         repo=getattr(workspace, "repo", None), env_rev=env_rev, aside=aside)
    except EnvError as exc:
        return StepResult(
            Verdict.SKIP, decode_build({"status": "no-env", "data": {"env": exc.info}}),
            duration=time.monotonic() - t0, worker=worker_name(), notes=(str(exc),),
        )
    step_env = {**workspace.env(), **env_vars, **(env or {})}
    command = build_config.command
    if command is None and getattr(workspace, "is_dvc", False) and not build_config.disabled:
        command = default_build_command(workspace.path)
    config = dataclasses.replace(build_config, command=command)
    key = _cache_key(workspace, config, rev, cache, env_info.get("key"))
    if defer:
        t_span = time.monotonic()
        hit = bool(key and cache.lookup(key))
        repro = (config.command or "").strip() == "dvc repro"
        no_data = _data_step(lambda: workspace.materialize(outputs=not (hit or repro), fetch_outputs=repro and not hit),
                             workspace, t0)
        if no_data is not None:
            return no_data
        spans["data"] = time.monotonic() - t_span
    inputs_before = {p: getattr(i, "hash", i) for p, i in workspace.inputs().items()}
    stats_before = None
    if getattr(workspace, "is_dvc", False):
        stats_before = input_stats(workspace)
    if config.command:
        tell("build")
    t_span = time.monotonic()
    build = _build(workspace, config, rev, log_dir, step_env, cache, key)
    spans["build"] = time.monotonic() - t_span
    build_json = build.to_json()
    if getattr(workspace, "step_info", None):
        build_json["data"] = workspace.step_info
    if env_info:
        build_json["data"] = {**build_json.get("data", {}), "env": env_info}
    if getattr(workspace, "submodules", None):  # path -> the commit checked out, or why it is empty
        build_json["data"] = {**build_json.get("data", {}), "submodules": workspace.submodules}
    if build.ok and getattr(workspace, "is_dvc", False) and build.status != "cached" and not _ran_no_stage(config, build):
        modified = after_build_check(workspace, stats_before)
        # A build can also re-record its inputs (`dvc repro` rewrites a changed `.dvc` file,
        # after which `dvc status` is clean): compare the declared hashes too.
        inputs_after = {p: getattr(i, "hash", i) for p, i in workspace.inputs().items()}
        modified = sorted(set(modified) | {p for p in inputs_before if inputs_after.get(p) != inputs_before[p]})
        if modified:
            notes.append("the build modified DVC-tracked inputs: " + ", ".join(modified) + " (result suspect)")
    observations: tuple[Any, ...] = ()
    if build.ok:
        ctx = ProbeContext(
            workspace=workspace.path, commit=rev, step=step, log_dir=log_dir, data_rev=data_rev, env=step_env
        )
        tell("probe")
        t_span = time.monotonic()
        res = suite.run(ctx)
        spans["probe"] = time.monotonic() - t_span
        verdict = res.verdict
        observations = tuple(res.observations)
    else:
        verdict = Verdict.ABORT if config.on_failure == "abort" else Verdict(config.on_failure)
    if isinstance(build_json.get("data"), dict) and build_json["data"].get("dvc"):
        # Where a DVC step's time went (seconds): checkout (git), data (dvc), build, probe.
        build_json["data"]["timings"] = {k: round(v, 3) for k, v in spans.items()}
    return StepResult(
        verdict, decode_build(build_json), observations, duration=time.monotonic() - t0,
        worker=worker_name(), notes=tuple(notes),
    )


def _data_step(action: Callable[[], None], workspace: Any, t0: float) -> StepResult | None:
    """Run a checkout or materialization; data that cannot be had is a skip naming why."""
    try:
        action()
    except BisectorError as exc:
        if type(exc).__name__ != "DataUnavailable":
            raise
        offline = getattr(workspace, "offline", None)
        return StepResult(
            Verdict.SKIP, decode_build({"status": "no-data", "cause": getattr(exc, "cause", ""),
                                        **({"data": {"dvc": True, "offline": offline}} if offline else {})}),
            duration=time.monotonic() - t0, worker=worker_name(), notes=(str(exc),),
        )
    return None


def _cache_key(workspace: Any, config: BuildConfig, rev: str, cache: Any, env_key: str | None = None) -> str | None:
    """The build-cache key of this step (code tree, data input hashes, command, outputs,
    environment), or None without a build or a cache. Read from git and the `.dvc` files only."""
    if not config.command or cache is None or not config.cache:
        return None
    data = {p: getattr(i, "hash", str(i)) for p, i in workspace.inputs().items()}
    extra: dict[str, Any] = {"outputs": list(config.outputs)}
    if env_key:
        extra["env"] = env_key  # built with another environment: another build
    untracked = workspace.untracked_key() if hasattr(workspace, "untracked_key") else None
    if untracked:
        extra["untracked"] = untracked  # built with other untracked inputs: another build
    empty = sorted(p for p, state in (getattr(workspace, "submodules", None) or {}).items() if state.startswith("empty"))
    if empty:
        extra["empty_submodules"] = empty  # the tree names commits these folders do not hold: another build
    return step_key(workspace.repo, rev, data, config.command, extra)


def _build(workspace: Any, config: BuildConfig, rev: str, log_dir: Path, env: dict[str, str], cache: Any,
           key: str | None = None) -> BuildResult:
    """Run the build, or restore an identical earlier build's outputs from the cache (`key`)."""
    if not config.command:
        return BuildResult("none")
    if key is not None:
        if cache.lookup(key):
            t0 = time.monotonic()
            restored = cache.restore(key, workspace.path)
            return BuildResult("cached", duration=time.monotonic() - t0, log=None, tail="", key=key, outputs=restored)
    result = run_build(config, workspace.path, log_dir / "build.log", env=env)
    if result.ok and key is not None:
        outputs = list(config.outputs)
        if not outputs and getattr(workspace, "is_dvc", False):
            outputs = dvc_outputs(workspace.path)
        outputs = [o for o in outputs if (workspace.path / o).exists()]
        if outputs:
            cache.store(key, workspace.path, outputs)
            result.key = key
            result.outputs = outputs
    return result


def _ran_no_stage(config: BuildConfig, build: BuildResult) -> bool:
    """A `dvc repro` that ran no stage (all restored from DVC's run-cache, or unchanged) cannot
    have written its inputs: the post-build `dvc status` is skipped."""
    if not (config.command or "").strip().startswith("dvc repro") or not build.log:
        return False
    try:
        text = Path(build.log).read_text(errors="replace")
    except OSError:
        return False
    return "Running stage" not in text


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Trampoline for remote engines: build everything from a JSON-able spec, run, return JSON.

    spec keys: repo, workspace_dir, rev, data_rev, step, log_dir, build (BuildConfig
    fields), probe_specs, stop_early, user_cwd, frozen_dir, env, dvc. The workspace is a
    detached worktree at `workspace_dir/w<worker pid>/wt` opened on first use (see
    `open_workspace`), so steps on one worker process reuse one worktree.
    """
    marker = spec.get("marker") or {}
    if marker.get("session") and marker.get("state"):
        mark_processes(str(marker["session"]), str(marker["state"]))
    ws = open_workspace(spec)
    suite = make_suite(
        spec["probe_specs"], Path(spec["user_cwd"]), Path(spec["frozen_dir"]), spec["stop_early"]
    )
    result = execute_step(
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
    return encode_result(result)


# The workspaces this (worker) process opened, reused by its later steps: a DvcWorkspace keeps
# state from `open` (the user's DVC config) that a fresh object on an existing worktree lacks.
_workspaces: dict[str, Any] = {}


def open_workspace(spec: dict[str, Any]) -> Any:
    """This process's workspace for `spec` (`workspace_dir/w<pid>/wt`), opened on first use.

    Opening holds an flock on `workspace_dir/.lock`: worker processes starting together would
    otherwise run `git worktree add`/`prune` on one repository at once, which races in git.
    """
    root = Path(spec["workspace_dir"]) / f"w{os.getpid()}"
    ws = _workspaces.get(str(root))
    if ws is None or not ws.path.exists():
        for key in [k for k, w in _workspaces.items() if not w.path.exists()]:
            del _workspaces[key]  # sessions that ended
        ws = make_workspace(Path(spec["repo"]), root, spec.get("dvc") or {}, spec.get("untracked") or ())
        root.parent.mkdir(parents=True, exist_ok=True)
        with flock(root.parent / ".lock"):
            ws.open(spec["rev"])
        _workspaces[str(root)] = ws
    return ws


def _cache_for(repo: Path) -> Any:
    return BuildCache.for_repo(repo)


def log_dir(logs: Path, step: int) -> Path:
    """Where step `step` of a session writes its build and probe logs."""
    return logs / f"step-{step}"


def run_env(request: StepRequest) -> dict[str, str]:
    """Context for the probe of a repeated run (a seeded probe can draw a new sample)."""
    return {"BISECTOR_RUN": str(request.run)}


def verify_revision(repo: Path, rev: str, data_rev: str | None = None, *,
                    workspace_factory: Callable[[Path, Path], Any] | None = None) -> StepResult:
    """Build and probe `rev` (with the data of `data_rev`) in a throwaway worktree, as a step of
    `bisector run` would with bisector.toml's settings (build outputs and cache, probes,
    stop_early, [dvc]): what `pin --verify` records."""
    return verify_with_digest(repo, rev, data_rev, workspace_factory=workspace_factory)[0]


def verify_with_digest(repo: Path, rev: str, data_rev: str | None = None, *,
                       workspace_factory: Callable[[Path, Path], Any] | None = None) -> tuple[StepResult, str]:
    """`verify_revision`, and the digest of the probe suite and build that judged it (`judge_digest`)."""
    plan = Plan.for_verify(repo, rev, data_rev)
    suite = plan.make_suite(make_suite)
    build = plan.build
    digest = judge_digest(suite, build)
    verify_dir = plan.session_dir.parent.parent / "pin-verify"
    prune_dead_owners(verify_dir)  # what a SIGKILLed `pin --verify` left
    work_dir = verify_dir / f"{os.getpid()}-{plan.session[-6:]}"
    ws = (workspace_factory or (lambda r, d: make_workspace(r, d, plan.dvc, plan.untracked)))(plan.repo, work_dir)
    if data_rev is not None and len(inspect.signature(ws.checkout).parameters) < 2:
        raise UsageError("this repository's workspace cannot take data from another revision: pin without --verify")
    try:
        ws.open(rev)
        return execute_step(ws, suite, build, rev, 0, work_dir / "logs", data_rev=data_rev,
                            cache=_cache_for(plan.repo) if build.cache else None), digest
    finally:
        ws.close()
        shutil.rmtree(work_dir, ignore_errors=True)
