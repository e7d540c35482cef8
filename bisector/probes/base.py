"""The probe contract: a probe turns a built workspace into an Observation.

Observations are plain JSON-able data (they go to the journal verbatim and are
replayed from it), never pickled objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Protocol

from bisector.core.model import Observation, Verdict

__all__ = ["Observation", "Probe", "ProbeContext", "Verdict", "probe_env"]


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
    import os

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
