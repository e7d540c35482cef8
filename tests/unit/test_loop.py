"""The one loop (`core.loop.Bisection`) driven by a scripted runner: no git, no processes."""

from __future__ import annotations

from typing import Iterator, Sequence

import pytest

from bisector.core.errors import BoundsError, ProbeAbort
from bisector.core.loop import Bisection, Estimate, LoopEvents, PosteriorSummary
from bisector.core.model import (
    Axis,
    Candidates,
    Observation,
    Point,
    Role,
    Status,
    Step,
    StepRequest,
    StepResult,
    Verdict,
)
from bisector.core.search import Search


def linear(n: int) -> Candidates:
    """c1..cn (c1 oldest), good bound g0 below c1; cn is the bad bound."""
    keys = [f"c{i}" for i in range(1, n + 1)]
    parents = {k: ((keys[i - 1],) if i else ()) for i, k in enumerate(keys)}
    true = {k: ((keys[i - 1],) if i else ("g0",)) for i, k in enumerate(keys)}
    return Candidates(bad=keys[-1], goods=("g0",), parents=dict(reversed(list(parents.items()))), true_parents=true)


class ScriptedRunner:
    """Verdicts from a function of the key (sequences per key repeat their last verdict)."""

    def __init__(self, verdicts: dict[str, Sequence[Verdict]], undo_at: int | None = None):
        self.verdicts = verdicts
        self.rounds: list[list[StepRequest]] = []
        self.undo_at = undo_at

    def run_round(self, requests: Sequence[StepRequest]) -> Iterator[Step]:
        self.rounds.append(list(requests))
        for req in requests:
            seq = self.verdicts[req.point.key]
            v = seq[min(req.run - 1, len(seq) - 1)]
            undo = req.step == self.undo_at
            obs = Observation("scripted", v, v.value, {"undo": True} if undo else {})
            yield Step(req, StepResult(v, observations=(obs,), duration=1.0))


def culprit_at(c: Candidates, first_bad: int) -> dict[str, Sequence[Verdict]]:
    keys = ["g0", *(f"c{i}" for i in range(1, len(c) + 1))]
    return {k: [Verdict.BAD if i >= first_bad else Verdict.GOOD] for i, k in enumerate(keys)}


def bisection(c: Candidates, **kw) -> Bisection:
    settings = kw.pop("settings", {})
    return Bisection(c, lambda: Search.from_settings(c, settings), **kw)


class Recorder(LoopEvents):
    def __init__(self) -> None:
        self.started: list[tuple[StepRequest, Estimate]] = []
        self.steps: list[Step] = []
        self.undone: list[Step | None] = []
        self.posteriors: list[tuple[int, PosteriorSummary]] = []
        self.baselines: list[Step] = []

    def on_step_start(self, request: StepRequest, estimate: Estimate) -> None:
        self.started.append((request, estimate))

    def on_step(self, step: Step) -> None:
        self.steps.append(step)

    def on_undo(self, retracted: Step | None) -> None:
        self.undone.append(retracted)

    def on_baseline(self, step: Step) -> None:
        self.baselines.append(step)

    def on_posterior(self, after_step: int, post: PosteriorSummary) -> None:
        self.posteriors.append((after_step, post))


def test_finds_the_culprit_in_numbered_rounds_and_confirms_its_parent() -> None:
    c = linear(32)
    runner = ScriptedRunner(culprit_at(c, 20))
    events = Recorder()
    b = bisection(c, events=events)
    out = b.run(runner)
    assert out.status is Status.FOUND and out.culprit == "c20" and out.candidates == ("c20",)
    assert b.observed["c19"] is Verdict.GOOD  # the parent was seen good
    # The bounds are one round; then, with jobs=1, a round a step.
    assert [s.round for s in events.steps] == [1, *range(1, len(events.steps))]
    assert [r.role for r in runner.rounds[0]] == [Role.BAD_BOUND, Role.GOOD_BOUND]
    assert b.search_rounds <= 6 and len(events.steps) == len({s.key for s in events.steps})
    assert b.counts()["bad-bound"] == 1 and sum(b.counts().values()) == len(b.steps)


def test_parallel_rounds_ask_up_to_jobs_points_each() -> None:
    c = linear(80)
    runner = ScriptedRunner(culprit_at(c, 30))
    b = bisection(c, jobs=3)
    assert b.run(runner).culprit == "c30"
    assert max(len(r) for r in runner.rounds) == 3
    rounds = [s.round for s in b.steps]
    assert rounds == sorted(rounds) and len(set(rounds)) == len(runner.rounds)


def test_history_is_told_and_never_run_again() -> None:
    c = linear(32)
    first = ScriptedRunner(culprit_at(c, 7))
    b = bisection(c)

    class Stop(Exception):
        pass

    class Killed(ScriptedRunner):
        def run_round(self, requests):
            if len(self.rounds) == 4:
                raise Stop
            yield from super().run_round(requests)

    killed = Killed(first.verdicts)
    with pytest.raises(Stop):
        b.run(killed)
    done = list(b.steps)
    again = ScriptedRunner(first.verdicts)
    resumed = bisection(c, history=done)
    assert resumed.run(again).culprit == "c7"
    asked = {r.point.key for rnd in again.rounds for r in rnd}
    assert not asked & {s.key for s in done}
    assert min(r.step for rnd in again.rounds for r in rnd) == max(s.number for s in done) + 1
    assert min(s.round for s in resumed.steps[len(done):]) > max(s.round for s in done)


def test_bad_bound_that_passes_is_a_bounds_error() -> None:
    c = linear(8)
    verdicts = culprit_at(c, 99)
    with pytest.raises(BoundsError, match="bad bound c8 is good"):
        bisection(c).run(ScriptedRunner(verdicts))


def test_abort_stops_the_search_with_the_step() -> None:
    c = linear(16)
    verdicts = culprit_at(c, 10)
    verdicts["c8"] = [Verdict.ABORT]
    with pytest.raises(ProbeAbort, match="the probe aborted at c8"):
        bisection(c).run(ScriptedRunner(verdicts))


def test_failed_confirmation_is_not_confirmed() -> None:
    c = linear(16)
    verdicts = culprit_at(c, 10)
    c2 = Candidates(c.bad, c.goods, c.parents, true_parents={**c.true_parents, "c10": ("c9", "x")})
    verdicts["x"] = [Verdict.BAD]  # a second parent outside the candidates, bad
    out = bisection(c2).run(ScriptedRunner(verdicts))
    assert out.status is Status.NOT_CONFIRMED and out.candidates == ("c10", "x")


def test_undo_retracts_the_previous_answer_and_asks_again() -> None:
    c = linear(16)
    events = Recorder()
    runner = ScriptedRunner(culprit_at(c, 5), undo_at=4)
    b = bisection(c, events=events)
    assert b.run(runner).culprit == "c5"
    assert len(events.undone) == 1 and events.undone[0].number == 3
    assert 3 not in {s.number for s in b.steps} and 4 not in {s.number for s in b.steps}
    assert events.undone[0].key in {r.point.key for rnd in runner.rounds[3:] for r in rnd}  # asked again


def test_noisy_search_reports_posteriors_and_repeats_points() -> None:
    c = linear(16)
    verdicts = culprit_at(c, 9)
    verdicts["c4"] = [Verdict.BAD, Verdict.GOOD]  # one flipped answer
    events = Recorder()
    b = bisection(c, events=events, settings={"noise": 0.1}, repeatable=False)
    out = b.run(ScriptedRunner(verdicts))
    assert out.status is Status.FOUND and out.culprit == "c9" and out.probability >= 0.99
    assert len(events.posteriors) == len(b.steps)
    after, post = events.posteriors[-1]
    assert post.top[0][0] == "c9" and after == b.steps[-1].number
    repeats = [r for r, _ in events.started if r.run > 1]
    assert repeats and all(r.fresh_build for r in repeats)


def test_a_crossing_at_a_searched_commit_is_a_first_run_whose_build_may_come_from_the_cache() -> None:
    """With a suite whose sample is the build (repeatable=False), only a true repeat rebuilds: a
    crossing (the culprit's code with its parent's data) is a new point, not a repeat."""
    c = linear(16)
    verdicts = culprit_at(c, 9)
    events = Recorder()
    b = bisection(c, events=events, repeatable=False)
    assert b.run(ScriptedRunner(verdicts)).culprit == "c9"
    runner = ScriptedRunner(verdicts)
    crossing = Point("c9", "c9", "c8")
    b.round(runner, [(crossing, Role.CROSSING)])
    b.round(runner, [(crossing, Role.CROSSING)])
    first, again = runner.rounds[0][0], runner.rounds[1][0]
    assert (first.run, first.fresh_build) == (1, False)
    assert (again.run, again.fresh_build) == (2, True)


def test_data_axis_points_build_the_fixed_code() -> None:
    parents = {"d3": ("d2",), "d2": ("d1",), "d1": ()}
    c = Candidates("d3", ("g",), parents, axis=Axis.DATA, code_rev="code")
    assert c.point("d2").code == "code" and c.point("d2").data == "d2"
    assert c.parents_of("d1") == ("g",) and c.parents_of("d3") == ("d2",)
    verdicts = {"g": [Verdict.GOOD], "d1": [Verdict.GOOD], "d2": [Verdict.BAD], "d3": [Verdict.BAD]}
    runner = ScriptedRunner(verdicts)
    assert bisection(c).run(runner).culprit == "d2"
    assert {r.point.code for rnd in runner.rounds for r in rnd} == {"code"}


def test_baseline_round_comes_first() -> None:
    c = linear(8)
    events = Recorder()
    runner = ScriptedRunner(culprit_at(c, 3))
    bisection(c, events=events, needs_baseline=True).run(runner)
    assert [r.point.key for r in runner.rounds[0]] == ["g0"]
    assert [s.key for s in events.baselines] == ["g0"]


def _step_with_role(c: Candidates, first_bad: int, role: Role, **kw) -> int | None:
    events = Recorder()
    bisection(c, events=events, **kw).run(ScriptedRunner(culprit_at(c, first_bad)))
    return next((s.number for s in events.steps if s.role is role), None)


def test_undo_during_the_confirmation_resumes_the_search() -> None:
    """`undo` answered when the culprit's parent is shown takes back the answer before it; the
    search asks that again and confirms again, instead of ending as not confirmed."""
    c = linear(32)
    # c10 is a merge whose second parent x is no candidate: the confirmation asks x.
    c = Candidates(c.bad, c.goods, c.parents, true_parents={**c.true_parents, "c10": ("c9", "x")})
    verdicts = {**culprit_at(c, 10), "x": [Verdict.GOOD]}
    events = Recorder()
    bisection(c, events=events).run(ScriptedRunner(verdicts))
    at = next(s.number for s in events.steps if s.role is Role.CONFIRM)
    events = Recorder()
    runner = ScriptedRunner(verdicts, undo_at=at)
    b = bisection(c, events=events)
    out = b.run(runner)
    assert out.status is Status.FOUND and out.culprit == "c10", out
    assert len(events.undone) == 1 and events.undone[0] is not None
    assert events.undone[0].key in {r.point.key for rnd in runner.rounds for r in rnd if r.step > at}
    assert [s.role for s in b.steps].count(Role.CONFIRM) == 1  # the confirmation asked again, answered once


def test_undo_at_the_late_bad_bound_resumes_the_search() -> None:
    """Lazy bounds with one worker probe the bad bound last when no candidate was bad; `undo`
    answered there takes back the answer before it and the search goes on."""
    c = linear(16)
    kw = {"bounds": "lazy", "overlap": True}
    at = _step_with_role(c, 16, Role.BAD_BOUND, **kw)
    assert at is not None
    events = Recorder()
    b = bisection(c, events=events, **kw)
    out = b.run(ScriptedRunner(culprit_at(c, 16), undo_at=at))
    assert out.status is Status.FOUND and out.culprit == "c16", out
    assert len(events.undone) == 1 and [s.role for s in b.steps].count(Role.BAD_BOUND) == 1


def test_undo_while_the_bounds_are_checked_asks_the_bound_again() -> None:
    """Nothing is undoable before the search starts: the bound is asked again."""
    c = linear(16)
    events = Recorder()
    b = bisection(c, events=events, bounds="check")
    out = b.run(ScriptedRunner(culprit_at(c, 5), undo_at=1))
    assert out.status is Status.FOUND and out.culprit == "c5", out
    assert events.undone == [None]
    assert [s.role for s in b.steps].count(Role.BAD_BOUND) == 1
