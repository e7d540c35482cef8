"""Several probes per step and the rule that combines their verdicts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from bisector.probes.base import Observation, Probe, ProbeContext
from bisector.core.model import Verdict


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


DEFAULT_COST = 10.0  # a probe without a `cost` attribute (command probes, most plugins)


def cost_of(probe: Probe) -> float:
    """A probe's relative cost (`cost` attribute; metric 0.1, sanity 2, basic 5, command 10, harm 20)."""
    cost = getattr(probe, "cost", DEFAULT_COST)
    return float(cost) if isinstance(cost, (int, float)) else DEFAULT_COST


class ProbeSuite:
    """Runs probes cheap ones first (stable, by `cost`; `order="given"` keeps the given order);
    a decisive BAD stops the rest if `stop_early`. An ABORT always stops."""

    def __init__(self, probes: Sequence[Probe], stop_early: bool = True, *, order: str = "cost"):
        if not probes:
            raise ValueError("a probe suite needs at least one probe")
        if order not in ("cost", "given"):
            raise ValueError(f"order must be 'cost' or 'given', not {order!r}")
        self.order = order
        # `probes` and config() keep the given order (callers zip them with their specs);
        # `run_order` is the order they run in.
        self.probes = list(probes)
        self.run_order = sorted(self.probes, key=cost_of) if order == "cost" else list(self.probes)
        self.stop_early = stop_early

    @property
    def name(self) -> str:
        return "+".join(p.name for p in self.run_order)

    def config(self) -> dict[str, Any]:
        return {
            "stop_early": self.stop_early,
            "order": self.order,
            "probes": [{"name": p.name, **p.config()} for p in self.probes],
        }

    @property
    def repeatable(self) -> bool:
        """Does running the suite again on the same build give a new, independent sample?

        Each probe may declare `repeatable` (default False: a deterministic probe on the same
        build answers the same). When no probe is repeatable, a noisy search's repeat must
        rebuild (a new training run is the new sample).
        """
        return any(getattr(p, "repeatable", False) for p in self.probes)

    @property
    def needs_baseline(self) -> bool:
        """True while a probe with a rule relative to the good bound has no baseline yet."""
        return any(getattr(p, "needs_baseline", False) for p in self.probes)

    def set_baselines(self, observations: Sequence[Observation]) -> list[str]:
        """Give each probe that wants one its own observation at the good bound (matched by
        probe name). Returns the names of the probes that took a baseline. Call it with the
        good bound's observations before probing other revisions; `config()` changes with it."""
        by_name = {o.probe: o for o in observations}
        taken = []
        for p in self.probes:
            setter = getattr(p, "set_baseline", None)
            obs = by_name.get(p.name)
            if callable(setter) and obs is not None and getattr(p, "needs_baseline", False):
                setter(obs)
                taken.append(p.name)
        return taken

    def run(self, ctx: ProbeContext) -> SuiteResult:
        observations: list[Observation] = []
        for probe in self.run_order:
            see = getattr(probe, "see", None)
            if callable(see):  # a probe that shows a person the step's evidence so far (manual)
                see(list(observations))
            obs = probe.run(ctx)
            observations.append(obs)
            if obs.verdict is Verdict.ABORT:
                break
            if obs.verdict is Verdict.BAD and self.stop_early:
                break
        return SuiteResult(combine(observations), observations)
