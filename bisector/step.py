"""One step: materialize a revision in a workspace, build it, run the probe suite.

`execute_step` is the in-process form (the session and local worker threads call it);
`run_step` is the trampoline a distributed engine runs: it takes and returns plain
JSON-able dicts (no pickled objects cross the wire but this module's function).
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector.build import BuildConfig, run_build
from bisector.probes.base import ProbeContext
from bisector.verdict import Verdict


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
) -> StepOutcome:
    """Checkout, build, probe. A failed build maps to `build_config.on_failure`.

    `workspace` offers `path` and `checkout(rev[, data_rev])`; `suite` offers
    `run(ctx) -> SuiteResult`. An `on_failure = "abort"` build gives Verdict.ABORT.
    """
    t0 = time.monotonic()
    log_dir.mkdir(parents=True, exist_ok=True)
    if data_rev is not None:
        workspace.checkout(rev, data_rev)
    else:
        workspace.checkout(rev)
    build = run_build(build_config, workspace.path, log_dir / "build.log", env=env)
    observations: list[dict[str, Any]] = []
    if build.ok:
        ctx = ProbeContext(
            workspace=workspace.path, commit=rev, step=step, log_dir=log_dir, data_rev=data_rev, env=env or {}
        )
        res = suite.run(ctx)
        verdict = res.verdict
        observations = [o.to_json() for o in res.observations]
    else:
        verdict = Verdict(build_config.on_failure)
    return StepOutcome(
        commit=rev,
        verdict=verdict,
        build=build.to_json(),
        observations=observations,
        duration=time.monotonic() - t0,
        data_rev=data_rev,
        worker=worker_name(),
    )


def run_step(spec: dict[str, Any]) -> dict[str, Any]:
    """Trampoline for remote engines: build everything from a JSON-able spec, run, return JSON.

    spec keys: repo, workspace_dir, rev, data_rev, step, log_dir, build (BuildConfig
    fields), probe_specs, stop_early, user_cwd, frozen_dir, env. The workspace is a
    detached worktree at `workspace_dir/<worker pid>` created on first use, so steps
    on one worker process reuse one worktree.
    """
    from bisector.session import make_workspace, default_suite_factory

    root = Path(spec["workspace_dir"]) / f"w{os.getpid()}"
    ws = make_workspace(Path(spec["repo"]), root)
    if not ws.path.exists():
        ws.open(spec["rev"])
    suite = default_suite_factory(
        spec["probe_specs"], Path(spec["user_cwd"]), Path(spec["frozen_dir"]), spec["stop_early"]
    )
    outcome = execute_step(
        ws,
        suite,
        BuildConfig(**spec["build"]),
        spec["rev"],
        spec["step"],
        Path(spec["log_dir"]),
        data_rev=spec.get("data_rev"),
        env=spec.get("env") or None,
    )
    return outcome.to_json()
