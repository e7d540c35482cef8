"""The probe contract: a probe turns a built workspace into an Observation.

Observations are plain JSON-able data (they go to the journal verbatim and are
replayed from it), never pickled objects.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from bisector.core.model import Verdict


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


@dataclass
class Observation:
    """One probe's result at one step.

    `verdict` is what the search consumes. `summary` is one short line for tables.
    `evidence` holds the raw numbers (exit code, rates, counts, metric values...).
    `counts` is optional (k, n) for binomial likelihoods in the noisy search.
    """

    probe: str
    verdict: Verdict
    summary: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    log: str | None = None  # path of the probe's log file
    counts: tuple[int, int] | None = None

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["verdict"] = self.verdict.value
        if self.counts is not None:
            d["counts"] = list(self.counts)
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "Observation":
        d = dict(d)
        d["verdict"] = Verdict(d["verdict"])
        if d.get("counts") is not None:
            d["counts"] = tuple(d["counts"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Probe(Protocol):
    """A probe. `name` identifies it in the journal; `config()` is frozen into it."""

    name: str

    def config(self) -> dict[str, Any]:
        """The probe's JSON-able configuration (part of the memo key)."""
        ...

    def run(self, ctx: ProbeContext) -> Observation:
        ...
