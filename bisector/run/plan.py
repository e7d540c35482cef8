"""What a search was asked: the run options, and the settings frozen into the journal from them."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector import __version__
from bisector.core.errors import UsageError
from bisector.io.git import git
from bisector.io.history import Candidates


@dataclass
class RunOptions:
    """What `bisector run` was asked. None means "from bisector.toml" (or a default)."""

    repo: Path = Path(".")
    bad: str | None = None
    goods: list[str] = field(default_factory=list)
    probe: str | None = None
    probe_timeout: float | None = None
    build: str | None = None
    build_timeout: float | None = None
    on_failure: str | None = None
    first_parent: bool = False
    paths: list[str] = field(default_factory=list)
    jobs: int = 1
    executor: str | None = None  # None: local; "dask://HOST:PORT": a Dask cluster
    # Noisy probes (see search.py): a symmetric flip rate, a one-sided flake rate, or learn it.
    noise: float | None = None
    flaky: float | None = None
    learn_noise: bool | None = None
    confidence: float | None = None
    max_steps: int | None = None
    no_cache: bool = False  # rebuild every step even when an identical build is cached
    # What moves: "code" (each commit with its own data, or with --data-rev's data pinned) or
    # "data" (code fixed at code_rev, default the bad bound; DVC-tracked inputs move).
    axis: str = "code"
    code_rev: str | None = None
    data_rev: str | None = None
    attribute: bool = False  # test the crossings even when the culprit changed only code or data
    reuse_from: str | None = None  # a past session whose still-valid observations are reused
    env: str | None = None  # each revision's own environment: none | uv | command (over [env] mode)


def environment() -> dict[str, str]:
    return {
        "bisector": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "git": git(Path("."), "--version").strip().removeprefix("git version "),
    }


def search_settings(opts: RunOptions, table_: dict[str, Any]) -> dict[str, Any]:
    """The noise model and stopping rule, from flags over [search] in bisector.toml."""
    noise = opts.noise if opts.noise is not None else table_.get("noise")
    flaky = opts.flaky if opts.flaky is not None else table_.get("flaky")
    if flaky is True:
        flaky = 0.0  # one-sided, rate learned
    if flaky is False:
        flaky = None
    learn = opts.learn_noise if opts.learn_noise is not None else table_.get("learn_noise")
    confidence = opts.confidence if opts.confidence is not None else table_.get("confidence", 0.99)
    for name, value in (("noise", noise), ("flaky", flaky)):
        if value is not None and not (isinstance(value, (int, float)) and 0 <= value < 0.5):
            raise UsageError(f"{name} must be a rate in [0, 0.5), not {value!r}")
    if not (isinstance(confidence, (int, float)) and 0.5 < confidence < 1):
        raise UsageError(f"confidence must be between 0.5 and 1 (exclusive), not {confidence!r}")
    if learn is None:
        learn = flaky == 0.0
    max_steps = opts.max_steps if opts.max_steps is not None else table_.get("max_steps")
    return {
        "noise": noise,
        "flaky": flaky,
        "learn_noise": bool(learn),
        "confidence": float(confidence),
        "max_steps": max_steps,
        "calibration_runs": int(table_.get("calibration_runs", 3)),
        "noise_floor": float(table_.get("noise_floor", 0.02)),
    }


def make_search(candidates: Candidates, settings: dict[str, Any]) -> Any:
    from bisector.core.search import NoiseModel, Search

    noise: Any = None
    if settings.get("flaky") is not None:
        noise = NoiseModel.flaky(settings["flaky"]) if settings["flaky"] > 0 else None
        if noise is None:
            noise = NoiseModel.flaky(settings.get("noise_floor", 0.02))
    elif settings.get("noise"):
        noise = NoiseModel.symmetric(settings["noise"])
    learn = bool(settings.get("learn_noise"))
    if noise is None and not learn:
        return Search(candidates.parents, candidates.bad)
    return Search(
        candidates.parents,
        candidates.bad,
        noise=noise,
        learn_noise=learn,
        confidence=settings.get("confidence", 0.99),
        noise_floor=settings.get("noise_floor", 0.02),
        good=candidates.goods,
        calibration_runs=settings.get("calibration_runs", 3) if learn else 0,
    )


def frozen_specs(specs: list[dict[str, Any]], suite: Any) -> list[dict[str, Any]]:
    """The specs to rebuild the suite on resume: command probes point at their frozen script."""
    out = []
    probe_configs = suite.config().get("probes", [])
    for spec, cfg in zip(specs, probe_configs):
        spec = dict(spec)
        if spec.get("type", "command") == "command" and "run" in cfg:
            spec["run"] = cfg["run"]
            spec.pop("command", None)
        out.append(spec)
    return out
