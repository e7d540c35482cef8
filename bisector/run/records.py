"""What a session produces: journaled steps, the result, and the events a front end receives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bisector.run.step import StepOutcome


@dataclass
class StepRecord(StepOutcome):
    """A step as journaled: what it observed (StepOutcome), its number and why it was run."""

    step: int = 0
    role: str = "search"  # "bad-bound" | "good-bound" | "merge-base" | "search" | "confirm" | "crossing" | "calibrate"

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "role": self.role, **super().to_json()}

    @classmethod
    def from_json(cls, e: dict[str, Any]) -> "StepRecord":
        outcome = StepOutcome.from_json(e)
        return cls(**vars(outcome), step=e["step"], role=e["role"])


@dataclass
class SessionResult:
    session: str
    journal: Path
    status: str  # "found" | "ambiguous" | "bounds" | "contradiction" | "not-confirmed" | "no_culprit"
    culprit: str | None = None
    probability: float = 0.0
    candidates: list[str] = field(default_factory=list)
    message: str = ""
    steps: dict[str, int] = field(default_factory=dict)  # probes per role
    elapsed: float = 0.0
    resumed: bool = False
    attribution: dict[str, Any] | None = None  # {"culprit_is": code|data|both|unknown, ...}
    axis: str = "code"

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "found" else 1


class Handler:
    """Receives the loop's events. The default does nothing; the CLI prints progress."""

    def on_start(self, info: dict[str, Any]) -> None: ...

    def on_step_start(self, step: int, commit: str, role: str, left: int, est_steps: int, est_seconds: float | None) -> None: ...

    def on_step_end(self, record: StepRecord) -> None: ...

    def on_posterior(self, event: dict[str, Any]) -> None: ...

    def on_message(self, text: str) -> None: ...

    def on_result(self, result: SessionResult) -> None: ...
