"""The subprocess side of model probes, and the parent's call into it (both ends of one protocol).

Parent: `launch()` writes a JSON request into the step's log folder and runs
`python -P -m bisector.probes._runner REQUEST RESULT` through `run_process`, with the workspace as
working directory, a timeout and a log file. Child: puts the workspace first on `sys.path`, loads
the model through the adapter, calls the check's `measure(model, params, workspace) -> dict`, and
writes `{"ok": true, "data": {...}}` or `{"ok": false, "stage": "load"|"check", "error": ...}` to
RESULT as JSON (never pickles). Non-finite floats become the strings "nan", "inf", "-inf", so the
journal stays strict JSON. User code's prints go to the log, never into the result.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bisector.core.model import Verdict
from bisector.probes import adapter
from bisector.probes.base import Observation, probe_env

# The `check` of a request: a built-in name, or "module:function" (plugins may reuse the runner).
CHECKS = {
    "sanity": "bisector.probes.sanity:measure",
    "basic": "bisector.probes.basic:measure",
    "harm": "bisector.probes.harm:measure",
}


def json_safe(value: Any) -> Any:
    """Replace non-finite floats (which strict JSON cannot hold) by strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


# ---------------------------------------------------------------- parent side


@dataclass
class RunnerOutcome:
    """What came back from one runner subprocess."""

    result: dict[str, Any] | None  # None: the child wrote nothing (crash, kill, timeout)
    returncode: int
    timed_out: bool
    duration: float
    log: Path
    log_tail: str = ""
    timeout: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> dict[str, Any]:
        return (self.result or {}).get("data") or {}

    @property
    def ok(self) -> bool:
        return bool(self.result and self.result.get("ok"))


def _bisector_root() -> str:
    import bisector

    return str(Path(bisector.__file__).resolve().parent.parent)


def launch(
    check: str,
    *,
    ctx: Any,  # ProbeContext
    name: str,
    model: Mapping[str, str] | None,
    params: Mapping[str, Any],
    timeout: float | None,
    seed: int = 0,
    python: str | None = None,
) -> RunnerOutcome:
    """Run one check in a fresh interpreter in the workspace; never raises for the child's failures."""
    # Parent side only: io.process needs psutil, which the user's Python (the child side) may lack.
    from bisector.io.process import run_process

    log_dir = Path(ctx.log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    request_path = log_dir / f"probe-{name}.request.json"
    result_path = log_dir / f"probe-{name}.result.json"
    log = log_dir / f"probe-{name}.log"
    request = {
        "check": CHECKS.get(check, check),
        "workspace": str(Path(ctx.workspace).resolve()),
        "model": dict(model) if model else None,
        "params": dict(params),
        "seed": seed,
    }
    request_path.write_text(json.dumps(request, indent=1), encoding="utf-8")
    result_path.unlink(missing_ok=True)  # a stale result must never be read as this run's
    env = probe_env(ctx)
    env.setdefault("PYTHONHASHSEED", "0")
    root = _bisector_root()
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    # The child needs only the standard library and this package (on PYTHONPATH), so any
    # Python >= 3.11 with the model's own dependencies will do (`python = ...` in the spec).
    cmd = [python or sys.executable, "-P", "-m", "bisector.probes._runner", str(request_path), str(result_path)]
    res = run_process(cmd, cwd=ctx.workspace, env=env, timeout=timeout, log_path=log)
    result = None
    if not res.timed_out and result_path.exists():
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            result = None
    return RunnerOutcome(
        result=result,
        returncode=res.returncode,
        timed_out=res.timed_out,
        duration=res.duration,
        log=log,
        log_tail=res.tail(15) if result is None or not result.get("ok") else "",
        timeout=timeout,
    )


def problem_observation(
    outcome: RunnerOutcome, *, probe: str, on_timeout: str, on_error: str, what: str = "the model"
) -> Any:
    """An Observation for a run that produced no measurement, or None when it did."""
    evidence: dict[str, Any] = {"returncode": outcome.returncode, "timed_out": outcome.timed_out}
    if outcome.timed_out:
        verdict = Verdict(on_timeout)
        summary = f"timed out after {outcome.timeout:g}s"
    elif outcome.result is None:
        verdict = Verdict(on_error)
        how = f"killed by signal {-outcome.returncode}" if outcome.returncode < 0 else f"exit {outcome.returncode}"
        summary = f"probe subprocess died before reporting ({how}): see {outcome.log}"
    elif not outcome.result.get("ok"):
        verdict = Verdict(on_error)
        stage = outcome.result.get("stage")
        evidence.update(stage=stage, error=outcome.result.get("error"), traceback=outcome.result.get("traceback"))
        doing = f"{what} failed to load" if stage == "load" else "the check raised"
        summary = f"{doing}: {outcome.result.get('error')}"
    else:
        return None
    if outcome.log_tail:
        evidence["log_tail"] = outcome.log_tail
    return Observation(probe=probe, verdict=verdict, summary=summary[:300], evidence=evidence,
                       duration=outcome.duration, log=str(outcome.log))


# ---------------------------------------------------------------- child side


def _resolve_check(check: str) -> Any:
    module_name, _, func = check.partition(":")
    return getattr(importlib.import_module(module_name), func or "measure")


def child_main(request_path: str, result_path: str) -> int:
    request = json.loads(Path(request_path).read_text(encoding="utf-8"))
    workspace = Path(request["workspace"])
    sys.path.insert(0, str(workspace))
    os.chdir(workspace)
    seed = int(request.get("seed", 0))
    adapter.seed_all(seed)
    started = time.monotonic()
    result: dict[str, Any]
    model = None
    try:
        if request.get("model"):
            load = adapter.resolve_function(request["model"])
            model = load(workspace)
            adapter.seed_all(seed)  # torch may only have been imported by the load
        loaded = time.monotonic()
    except (Exception, SystemExit) as exc:  # user code: report, never crash the protocol
        result = {"ok": False, "stage": "load", **adapter.describe_exception(exc)}
    else:
        try:
            measure = _resolve_check(request["check"])
            data = measure(model, request.get("params") or {}, workspace)
            result = {"ok": True, "data": data, "load_seconds": round(loaded - started, 3)}
        except (Exception, SystemExit) as exc:
            result = {"ok": False, "stage": "check", **adapter.describe_exception(exc)}
    result["seconds"] = round(time.monotonic() - started, 3)
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(json_safe(result), allow_nan=False, default=repr), encoding="utf-8")
    os.replace(tmp, result_path)  # atomic: the parent reads a whole result or none
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess tests
    if len(sys.argv) != 3:
        print("usage: python -m bisector.probes._runner REQUEST.json RESULT.json", file=sys.stderr)
        sys.exit(2)
    sys.exit(child_main(sys.argv[1], sys.argv[2]))
