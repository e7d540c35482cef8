"""The build step: run the build command in the workspace, with a timeout and a log."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

from bisector.core.errors import UsageError
from bisector.io.env import EnvSettings
from bisector.io.process import run_process



@dataclass(frozen=True)
class BuildConfig:
    command: str | None = None
    timeout: float | None = None
    on_failure: str = "skip"  # what a failed or timed-out build means for the step
    outputs: tuple[str, ...] = ()  # files the build makes, for the build cache (DVC: dvc.lock outs)
    cache: bool = True  # restore outputs of an identical earlier build instead of rebuilding
    env: EnvSettings | None = None  # [env]: each revision's own environment (None: bisector's)
    disabled: bool = False  # --no-build: no build at all, not even the default `dvc repro`

    def __post_init__(self) -> None:
        # on_failure is checked where it comes in: the --on-failure choice, the bisector.toml schema.
        if self.command is not None and not self.command.strip():
            raise UsageError("the build command is empty: give one with --build 'CMD' or drop the option")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outputs"] = list(self.outputs)
        if self.env is None or not self.env.active:
            d.pop("env")  # as before environments existed: old journals compare equal
        else:
            d["env"] = self.env.to_json()
        if not self.disabled:
            d.pop("disabled")  # as before --no-build existed: old journals compare equal
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BuildConfig":
        d = dict(d)
        d["outputs"] = tuple(d.get("outputs", ()))
        d["env"] = EnvSettings.from_json(d["env"]) if d.get("env") else None
        return cls(**d)


@dataclass
class BuildResult:
    status: str  # "ok" | "failed" | "timeout" | "none" (no build configured) | "cached"
    duration: float = 0.0
    returncode: int | None = None
    log: str | None = None
    tail: str = ""
    key: str | None = None  # build-cache key (stored or restored)
    outputs: list[str] | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "none", "cached")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        if self.ok:
            d.pop("tail")
        for k in ("key", "outputs"):
            if d[k] is None:
                d.pop(k)
        return d


def run_build(
    config: BuildConfig,
    workspace: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
) -> BuildResult:
    if not config.command:
        return BuildResult("none")
    full_env = dict(os.environ)
    full_env.update(env or {})
    res = run_process(
        ["/bin/sh", "-c", config.command],
        cwd=workspace,
        env=full_env,
        timeout=config.timeout,
        log_path=log_path,
    )
    if res.timed_out:
        status = "timeout"
    elif res.returncode != 0:
        status = "failed"
    else:
        status = "ok"
    return BuildResult(
        status=status,
        duration=res.duration,
        returncode=res.returncode,
        log=str(log_path),
        tail=res.tail(10) if status != "ok" else "",
    )
