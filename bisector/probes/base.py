"""The probe contract: a probe turns a built workspace into an Observation.

Observations are plain JSON-able data (they go to the journal verbatim and are
replayed from it), never pickled objects.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from bisector.core.model import Observation, Verdict

__all__ = ["MAIN_KEYS", "Observation", "Probe", "ProbeContext", "Verdict", "is_number", "main_number", "probe_env"]

# Evidence keys that hold a probe's main number, most specific first.
MAIN_KEYS = ("value", "rate", "pass_rate", "accuracy", "score", "loss")


@dataclass(frozen=True)
class ProbeContext:
    """What a probe gets to see of one step."""

    workspace: Path  # the materialized, built worktree (cwd for commands)
    commit: str  # full sha of the code revision
    step: int  # step number in the session (bounds checks are steps too)
    log_dir: Path  # a folder for this step's logs (exists)
    data_rev: str | None = None  # data revision when it differs from the commit
    timeout: float | None = None  # seconds; None means no limit
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment


def probe_env(ctx: ProbeContext) -> dict[str, str]:
    """The environment of a probe process: ours, the step's extras, and the BISECTOR_* context."""
    env = dict(os.environ)
    env.update(ctx.env)
    env.update(
        BISECTOR_COMMIT=ctx.commit,
        BISECTOR_WORKSPACE=str(ctx.workspace),
        BISECTOR_STEP=str(ctx.step),
        BISECTOR_DATA_REV=ctx.data_rev or ctx.commit,
    )
    return env


class Probe(Protocol):
    """A probe. `name` identifies it in the journal; `config()` is frozen into it."""

    name: str

    def config(self) -> dict[str, Any]:
        """The probe's JSON-able configuration (part of the memo key)."""
        ...

    def run(self, ctx: ProbeContext) -> Observation:
        ...


def is_number(v: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def threshold(evidence: Mapping[str, Any]) -> float | None:
    """The limit an observation was held to (a metric condition's limit, a pass-rate threshold)."""
    results = evidence.get("results")
    if isinstance(results, list) and results and isinstance(results[0], Mapping) and is_number(results[0].get("limit")):
        return float(results[0]["limit"])
    for key in ("threshold", "min_pass_rate"):
        if is_number(evidence.get(key)):
            return float(evidence[key])
    absolute = evidence.get("absolute")
    if isinstance(absolute, Mapping) and is_number(absolute.get("max_rate")):
        return float(absolute["max_rate"])
    return None


def main_number(observation: Observation) -> tuple[str, float] | None:
    """(name, value) of an observation's main number: value/rate/pass_rate/accuracy, a metric, or the exit code."""
    ev = observation.evidence
    for k in MAIN_KEYS:
        if is_number(ev.get(k)):
            return k, float(ev[k])
    results = ev.get("results")
    if isinstance(results, list) and results and isinstance(results[0], Mapping) and is_number(results[0].get("value")):
        return str(results[0].get("metric", "value")), float(results[0]["value"])
    values = ev.get("values")
    if isinstance(values, Mapping):
        for k, v in values.items():
            if is_number(v):
                return str(k), float(v)
    for k in ("exit_code", "returncode"):
        if is_number(ev.get(k)):
            return k, float(ev[k])
    return None
