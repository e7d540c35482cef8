"""Making pins: of a revision (optionally built and probed first), or of what a session observed good."""

from __future__ import annotations

import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

from bisector.core.errors import UsageError
from bisector.core.model import Observation, Role, StepResult, Verdict
from bisector.io.config import load_file_config
from bisector.io.data.files import data_hashes, flatten, params_at
from bisector.io.env import EnvSettings, spec_at
from bisector.io.git import repo_root, resolve
from bisector.io.git import parents as git_parents
from bisector.journal.read import SessionSummary
from bisector.probes.base import main_number
from bisector.review.pins.store import NAME_RE, Pin, expand_rev, load_pins, save_pins
from bisector.run.step import verify_revision, verify_with_digest

ENV_PACKAGES = ("bisector", "torch", "numpy", "dvc")


def pin_environment() -> dict[str, str]:
    """Versions from package metadata (nothing is imported) and the platform."""
    env = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ENV_PACKAGES:
        try:
            env[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            env[pkg] = "not installed"
    return env


def env_record(repo: Path, sha: str, config: Mapping[str, Any],
               verification: StepResult | None = None) -> dict[str, str]:
    """{key, mode, kind} of the environment of `sha`: the one a step used, else computed with
    the `[env]` settings of `config`; {} when environments are off."""
    used = ((verification.build.data or {}).get("env") or {}) if verification is not None else {}
    if used.get("key") and used.get("status", "ok") == "ok" and not used.get("from_rev"):
        return {k: str(used[k]) for k in ("key", "mode", "kind") if used.get(k)}
    table = config.get("env")
    settings = EnvSettings.from_json(table if isinstance(table, Mapping) else {})
    spec = spec_at(repo, sha, settings)
    return {"key": spec.key, "mode": spec.mode, "kind": spec.kind} if spec is not None else {}


def probe_table(observations: Iterable[Observation]) -> dict[str, dict[str, Any]]:
    """Observations -> the pin's [probes] tables (verdict, summary, main number)."""
    out = {}
    for o in observations:
        row: dict[str, Any] = {"verdict": o.verdict.value, "summary": o.summary}
        value = main_number(o)
        if value is not None:
            row["value"] = value[1]
            row["measure"] = value[0]
        out[o.probe] = row
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _resolve_plain(repo: Path, rev: str, what: str) -> str:
    return resolve(repo, expand_rev(repo, rev), what)


def make_pin(repo: Path, name: str, rev: str = "HEAD", *, data_rev: str | None = None, note: str = "",
             verification: StepResult | None = None, config: Mapping[str, Any] | None = None,
             source: str = "unverified") -> Pin:
    """A pin of `rev` (data from `data_rev` when given) with params, data hashes and environment;
    with `verification`, its verdict and each probe's result."""
    if not NAME_RE.match(name):
        raise UsageError(f"invalid pin name {name!r}: use letters, digits, '-' and '_' only")
    sha = _resolve_plain(repo, rev, "revision to pin")
    dsha = _resolve_plain(repo, data_rev, "data revision") if data_rev else None
    if config is None:
        config = load_file_config(repo)
    pin = Pin(name=name, commit=sha, created=_now(), note=note, data_rev=dsha if dsha != sha else None,
              source=source, data=data_hashes(repo, dsha or sha), params=params_at(repo, sha),
              config=flatten(dict(config)), environment=pin_environment(),
              env=env_record(repo, sha, config, verification))
    if verification is not None:
        pin.verdict = verification.verdict.value
        pin.probes = probe_table(verification.observations)
    return pin


def add_pin(repo: Path, pin: Pin, *, force: bool = False) -> Path:
    pins = load_pins(repo)
    if pin.name in pins and not force:
        raise UsageError(f"a pin named {pin.name!r} exists ({pins[pin.name].short}): pass --force to replace it")
    pins[pin.name] = pin
    return save_pins(repo, pins)


def create_pin(repo_path: Path, name: str, rev: str = "HEAD", *, data_rev: str | None = None, note: str = "",
               verify_first: bool = False, force: bool = False) -> Pin:
    """`bisector pin NAME`: record (and with `verify_first`, first probe) a known-good configuration."""
    repo = repo_root(repo_path)
    result = None
    if verify_first:
        dsha = _resolve_plain(repo, data_rev, "data revision") if data_rev else None
        result, digest = verify_with_digest(repo, _resolve_plain(repo, rev, "revision to pin"), data_rev=dsha)
        if result.verdict is not Verdict.GOOD and not force:
            raise UsageError(f"{rev} is {result.verdict.value} for the probe ({result.summary()}): "
                             "pin a good revision, or pass --force to record it anyway", exit_code=1)
    pin = make_pin(repo, name, rev, data_rev=data_rev, note=note, verification=result,
                   source="verify" if verify_first else "unverified")
    if result is not None:
        pin.probe_digest = digest  # the probe that judged it: a run with the same one trusts the pin
    add_pin(repo, pin, force=force)
    return pin


def pin_from_session(repo_path: Path, summary: SessionSummary, name: str, *, rev: str | None = None,
                     note: str = "", force: bool = False) -> Pin:
    """Pin a revision a session observed good, with the observations that made it good.

    Default revision: the newest one observed good (the culprit's parent after a found
    culprit), else the good bound.
    """
    repo = repo_root(repo_path)
    goods = [s for s in summary.steps if s.verdict is Verdict.GOOD]
    if rev is not None:
        sha = _resolve_plain(repo, rev, "revision to pin")
        goods = [s for s in goods if s.commit == sha]
        if not goods:
            raise UsageError(f"session {summary.id} did not observe {rev} good: pin it with `bisector pin {name} --verify`")
    if not goods:
        raise UsageError(f"session {summary.id} observed no good revision: nothing to pin")
    culprit = summary.outcome.culprit if summary.outcome else None
    chosen = goods[0]
    if rev is None and culprit:
        parents = git_parents(repo, culprit)
        chosen = next((s for s in goods if s.commit in parents), goods[0])
    elif rev is None:
        chosen = next((s for s in goods if s.role is Role.GOOD_BOUND), goods[0])
    pin = make_pin(repo, name, chosen.commit, data_rev=chosen.data_rev, note=note, verification=chosen.result,
                   config=summary.start.get("config", {}).get("file", {}), source=f"session {summary.id}")
    pin.probe_digest = str(summary.start.get("probe_digest") or "")
    add_pin(repo, pin, force=force)
    return pin


def verify(repo: Path, rev: str, *, data_rev: str | None = None, workspace_factory: Any = None) -> StepResult:
    """Build and probe `rev` (with the data of `data_rev`) in a throwaway worktree, configured
    exactly as a step of `bisector run` (`bisector.run.step.verify_revision`)."""
    return verify_revision(repo, rev, data_rev, workspace_factory=workspace_factory)
