"""The bounds policy of the loop (start event's `bounds`): check (before it existed), lazy
(the default: bad bound first, a good bound only when the answer depends on it) and trust
(`git bisect run`: no bound probed); no confirmation of a parent an observed good implies."""

from __future__ import annotations

import pytest
from tests.unit.test_loop import ScriptedRunner, bisection, culprit_at, linear

from bisector.core.errors import BoundsError
from bisector.core.model import Candidates, Role, Status, Verdict


def probed(runner: ScriptedRunner) -> list[tuple[str, Role]]:
    return [(r.point.key, r.role) for rnd in runner.rounds for r in rnd]


@pytest.mark.parametrize("first_bad", [2, 5, 9, 16])
def test_lazy_probes_the_good_bound_only_when_the_culprits_parent_is_it(first_bad: int) -> None:
    c = linear(16)
    runner = ScriptedRunner(culprit_at(c, first_bad))
    out = bisection(c, bounds="lazy").run(runner)
    assert out.status is Status.FOUND and out.culprit == f"c{first_bad}"
    roles = probed(runner)
    assert roles[0] == ("c16", Role.BAD_BOUND)
    assert (("g0", Role.GOOD_BOUND) in roles) == (first_bad == 1)
    check = ScriptedRunner(culprit_at(c, first_bad))
    bisection(c, bounds="check").run(check)
    assert len(roles) == len(probed(check)) - 1  # one probe fewer than checking both bounds


def test_lazy_checks_the_good_bound_when_the_first_candidate_is_the_culprit() -> None:
    c = linear(8)
    runner = ScriptedRunner(culprit_at(c, 1))
    out = bisection(c, bounds="lazy").run(runner)
    assert out.culprit == "c1" and ("g0", Role.GOOD_BOUND) in probed(runner)


def test_lazy_good_bound_that_is_bad_is_a_bounds_error() -> None:
    c = linear(8)
    verdicts = {k: [Verdict.BAD] for k in ["g0", *(f"c{i}" for i in range(1, 9))]}
    with pytest.raises(BoundsError, match="good bound g0"):
        bisection(c, bounds="lazy").run(ScriptedRunner(verdicts))


def test_trust_probes_no_bound() -> None:
    c = linear(16)
    runner = ScriptedRunner(culprit_at(c, 1))
    out = bisection(c, bounds="trust").run(runner)
    assert out.status is Status.FOUND and out.culprit == "c1"
    assert not [k for k, role in probed(runner) if role in (Role.BAD_BOUND, Role.GOOD_BOUND)]


def test_a_parent_implied_good_by_an_observed_descendant_is_not_confirmed() -> None:
    """   b1 - b2          the culprit m's first parent a1 is an ancestor of b2 (observed good
         /      \\         after the search): git bisect would not probe a1, nor does lazy.
    g - a1 ------ m - top
    """
    parents = {"top": ("m",), "m": ("a1", "b2"), "b2": ("b1",), "b1": ("a1",), "a1": ()}
    true = {**parents, "a1": ("g",)}
    c = Candidates(bad="top", goods=("g",), parents=parents, true_parents=true)
    verdicts = {"g": [Verdict.GOOD], "a1": [Verdict.GOOD], "b1": [Verdict.GOOD], "b2": [Verdict.GOOD],
                "m": [Verdict.BAD], "top": [Verdict.BAD]}
    lazy, check = ScriptedRunner(verdicts), ScriptedRunner(verdicts)
    assert bisection(c, bounds="lazy").run(lazy).culprit == "m"
    assert bisection(c, bounds="check").run(check).culprit == "m"
    assert ("a1", Role.CONFIRM) in probed(check)  # today's policy confirms it
    assert "a1" not in [k for k, _ in probed(lazy)]  # implied good by b1 (observed good)


def test_unknown_or_absent_policy_is_todays() -> None:
    c = linear(8)
    a, b = ScriptedRunner(culprit_at(c, 4)), ScriptedRunner(culprit_at(c, 4))
    bisection(c).run(a)
    bisection(c, bounds="nonsense").run(b)
    assert probed(a) == probed(b) and ("g0", Role.GOOD_BOUND) in probed(a)


def test_lazy_sends_the_first_midpoint_with_the_bad_bound() -> None:
    c = linear(16)
    rounds = {True: 0, False: 0}
    for first_bad in range(1, 17):
        for overlap in (True, False):
            runner = ScriptedRunner(culprit_at(c, first_bad))
            out = bisection(c, bounds="lazy", jobs=2, overlap=overlap).run(runner)
            assert out.status is Status.FOUND and out.culprit == f"c{first_bad}"
            first = [(r.point.key, r.role) for r in runner.rounds[0]]
            assert first[0] == ("c16", Role.BAD_BOUND)
            assert [role for _, role in first[1:]] == ([Role.SEARCH] if overlap else [])
            rounds[overlap] += len(runner.rounds)
    assert rounds[True] < rounds[False]


@pytest.mark.parametrize("bad_bound", [Verdict.GOOD, Verdict.SKIP])
def test_a_bad_bound_that_is_not_bad_stops_after_its_round(bad_bound: Verdict) -> None:
    c = linear(16)
    verdicts = {**culprit_at(c, 5), "c16": [bad_bound]}
    runner = ScriptedRunner(verdicts)
    b = bisection(c, bounds="lazy", jobs=2, overlap=True)
    with pytest.raises(BoundsError, match="bad bound c16"):
        b.run(runner)
    assert len(runner.rounds) == 1
    # The midpoint ran in that round and is recorded with its verdict.
    assert [s.role for s in b.steps] == [Role.BAD_BOUND, Role.SEARCH]


def test_check_policy_keeps_the_bad_bound_alone() -> None:
    runner = ScriptedRunner(culprit_at(linear(16), 5))
    bisection(linear(16), overlap=True, bounds="check", jobs=2).run(runner)
    assert all(r.role is not Role.SEARCH for r in runner.rounds[0])


@pytest.mark.parametrize("first_bad", range(1, 17))
def test_one_worker_probes_the_bad_bound_only_when_no_candidate_was_bad(first_bad: int) -> None:
    c = linear(16)
    runner = ScriptedRunner(culprit_at(c, first_bad))
    out = bisection(c, bounds="lazy", overlap=True).run(runner)
    assert out.status is Status.FOUND and out.culprit == f"c{first_bad}"
    roles = probed(runner)
    assert roles[0][1] is Role.SEARCH
    # Any bad candidate (an ancestor of the bad bound) implies the bad bound bad.
    assert (("c16", Role.BAD_BOUND) in roles) == (first_bad == 16)
    plain = ScriptedRunner(culprit_at(c, first_bad))
    bisection(c, bounds="trust").run(plain)
    assert len(roles) <= len(probed(plain)) + 1  # at most one probe more than git bisect


def test_one_worker_a_bad_bound_that_is_good_is_a_bounds_error_after_the_search() -> None:
    c = linear(16)
    verdicts = {k: [Verdict.GOOD] for k in ["g0", *(f"c{i}" for i in range(1, 17))]}
    runner = ScriptedRunner(verdicts)
    with pytest.raises(BoundsError, match="bad bound c16 is good"):
        bisection(c, bounds="lazy", overlap=True).run(runner)
    roles = [role for _, role in probed(runner)]
    assert roles[-1] is Role.BAD_BOUND and set(roles[:-1]) == {Role.SEARCH} and len(roles) == 5


def test_a_merge_culprit_whose_parents_an_observed_good_merge_implies_needs_no_confirmation() -> None:
    """      a1 ---- m  - top     criss-cross: m and x both merge a1 and b1; x was observed good,
           \\  /     /           so both parents of the culprit m are its ancestors, good: git
           /  \\    /            bisect probes neither, nor does lazy.
    g - b1 ---- x
    """
    parents = {"top": ("m", "x"), "m": ("a1", "b1"), "x": ("b1", "a1"), "a1": (), "b1": ()}
    true = {**parents, "a1": ("g",), "b1": ("g",)}
    c = Candidates(bad="top", goods=("g",), parents=parents, true_parents=true)
    verdicts = {k: [Verdict.GOOD] for k in ("g", "a1", "b1", "x")} | {"m": [Verdict.BAD], "top": [Verdict.BAD]}
    for policy in ("lazy", "trust"):
        runner = ScriptedRunner(verdicts)
        out = bisection(c, bounds=policy, overlap=True).run(runner)
        assert out.status is Status.FOUND and out.culprit == "m"
        keys = [k for k, _ in probed(runner)]
        assert "x" in keys and not {"a1", "b1"} & set(keys), (policy, keys)
