"""Several probes per step and the rule that combines their verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from bisector.probes.base import Observation, Probe, ProbeContext
from bisector.verdict import Verdict


def combine(observations: Sequence[Observation]) -> Verdict:
    """Default rule: abort if any aborts; bad if any is bad; skip if any skips; else good."""
    verdicts = {o.verdict for o in observations}
    for v in (Verdict.ABORT, Verdict.BAD, Verdict.SKIP):
        if v in verdicts:
            return v
    return Verdict.GOOD


@dataclass
class SuiteResult:
    verdict: Verdict
    observations: list[Observation] = field(default_factory=list)


class ProbeSuite:
    """Runs probes in order (cheap ones first); a decisive BAD stops the rest if `stop_early`."""

    def __init__(self, probes: Sequence[Probe], stop_early: bool = True):
        if not probes:
            raise ValueError("a probe suite needs at least one probe")
        self.probes = list(probes)
        self.stop_early = stop_early

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.probes)

    def config(self) -> dict[str, Any]:
        return {
            "stop_early": self.stop_early,
            "probes": [{"name": p.name, **p.config()} for p in self.probes],
        }

    def run(self, ctx: ProbeContext) -> SuiteResult:
        observations: list[Observation] = []
        for probe in self.probes:
            obs = probe.run(ctx)
            observations.append(obs)
            if obs.verdict is Verdict.ABORT:
                break
            if obs.verdict is Verdict.BAD and self.stop_early:
                break
        return SuiteResult(combine(observations), observations)
