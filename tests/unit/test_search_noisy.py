"""The search under noisy probes: likelihoods, counts, no-culprit, confirmation, calibration, costs."""

from __future__ import annotations

import math
import random

import pytest

from bisector.core.errors import ContradictionError, UsageError
from bisector.core.search import Counts, NoiseModel, Search
from bisector.core.model import Verdict

G, B = Verdict.GOOD, Verdict.BAD


def linear(n: int) -> dict[str, tuple[str, ...]]:
    return {f"c{i}": ((f"c{i - 1}",) if i > 1 else ()) for i in range(n, 0, -1)}


def simulate(n: int, culprit: int | None, noise, seed: int, truth_noise=None, **kw) -> tuple[Search, int, list[str]]:
    """Run a search on c1..cn against a simulated probe; returns (search, runs, asked)."""
    rng = random.Random(seed)
    model = truth_noise or (noise if isinstance(noise, NoiseModel) else NoiseModel.symmetric(noise or 0.0))
    s = Search(linear(n), f"c{n}", noise=noise, **kw)
    s.record(f"c{n}", B)
    asked = []
    while (nxt := s.next()) and len(asked) < 2000:
        rev = nxt[0]
        bad = culprit is not None and int(rev[1:]) >= culprit
        fail = rng.random() < (model.fail_if_bad if bad else model.fail_if_good)
        s.record(rev, B if fail else G)
        asked.append(rev)
    return s, len(asked), asked


def test_zero_noise_is_the_deterministic_search() -> None:
    for noise in (None, 0, 0.0, NoiseModel.symmetric(0.0), NoiseModel()):
        s, runs, asked = simulate(200, 77, noise, seed=1)
        assert (s.result().culprit, runs) == ("c77", 8)
        assert s.noise is None
        assert None not in s.posterior()
    assert simulate(200, 77, None, 1)[2] == simulate(200, 77, 0.0, 1)[2]


def test_counts_equal_the_same_verdicts_one_by_one() -> None:
    a = Search(linear(20), "c20", noise=0.2)
    b = Search(linear(20), "c20", noise=0.2)
    a.record("c10", Counts(3, 5))
    for v in (B, B, B, G, G):
        b.record("c10", v)
    assert a.posterior() == pytest.approx(b.posterior())
    assert a.runs == b.runs == 5


def test_counts_with_a_deterministic_probe_must_agree() -> None:
    s = Search(linear(5), "c5")
    s.record("c3", Counts(4, 4))
    assert s.remaining() == 3
    with pytest.raises(ContradictionError, match="c2 both passed and failed"):
        s.record("c2", Counts(1, 3))
    with pytest.raises(UsageError):
        Counts(4, 3)


def test_noise_models() -> None:
    assert NoiseModel.symmetric(0.1).kind == "symmetric"
    assert NoiseModel.flaky(0.3) == NoiseModel(0.3, 1.0) and NoiseModel.flaky(0.3).kind == "flaky"
    assert NoiseModel(0.1, 0.8).kind == "two-rate"
    with pytest.raises(UsageError):
        NoiseModel(0.6, 0.4)


def test_flaky_pass_rules_out_its_ancestors_but_a_fail_rules_out_nothing() -> None:
    s = Search(linear(10), "c10", noise=NoiseModel.flaky(0.2))
    s.record("c10", B)
    s.record("c4", G)  # a bad revision never passes: c1..c4 are out
    post = s.posterior()
    assert not any(f"c{i}" in post for i in range(1, 5))
    s.record("c6", B)  # may be a flake: c7..c10 only less likely
    post = s.posterior()
    assert all(f"c{i}" in post for i in range(5, 11))
    assert post["c5"] > post["c7"]
    assert sum(post.values()) == pytest.approx(1.0)
    assert post[None] > 0


def test_finds_the_culprit_under_symmetric_noise_and_asks_again_where_it_pays() -> None:
    wins, total, repeats = 0, 0, 0
    for seed in range(20):
        culprit = random.Random(seed).randint(1, 64)
        s, runs, asked = simulate(64, culprit, 0.1, seed)
        res = s.result()
        wins += res.status == "found" and res.culprit == f"c{culprit}"
        total += runs
        repeats += len(asked) - len(set(asked))
        assert res.probability >= 0.99 or res.status != "found"
    assert wins >= 19
    assert total / 20 <= 22  # plain bisection takes 6, repeat-9 voting about 33
    assert repeats > 0


def test_no_culprit_when_the_bad_bound_failed_by_chance() -> None:
    hits = 0
    for seed in range(20):
        s, runs, _ = simulate(50, None, 0.1, seed)
        res = s.result()
        hits += res.status == "no_culprit"
        if res.status == "no_culprit":
            assert res.culprit is None
            assert res.probability == pytest.approx(s.posterior()[None]) and res.probability >= 0.99
    assert hits >= 19


def test_known_flaky_rate_is_cheap() -> None:
    total = wins = 0
    for seed in range(20):
        culprit = random.Random(seed).randint(1, 100)
        s, runs, _ = simulate(100, culprit, NoiseModel.flaky(0.1), seed)
        wins += s.result().culprit == f"c{culprit}"
        total += runs
    assert wins >= 19 and total / 20 <= 13


def test_learned_noise_converges_near_the_true_rate() -> None:
    s, runs, _ = simulate(100, 40, None, seed=3, truth_noise=NoiseModel.symmetric(0.2), learn_noise=True)
    assert s.result().culprit == "c40"
    q0, q1 = s.rates()
    assert 0.1 < q0 < 0.32 and q1 == pytest.approx(1 - q0)


def test_learned_noise_is_floored() -> None:
    # No flips at all: the learned rate stays above the floor, so the search still double-checks.
    s, runs, _ = simulate(100, 40, None, seed=3, truth_noise=NoiseModel(), learn_noise=True, noise_floor=0.05)
    assert s.result().culprit == "c40"
    assert s.rates()[0] >= 0.05
    assert runs > 7


def test_calibration_runs_at_the_bounds_come_first() -> None:
    s = Search(linear(30), "c30", learn_noise=True, good=["g0"], calibration_runs=3)
    s.record("c30", B)
    seen = []
    for v in (G, G, B, B, G):
        seen += s.next()
        s.record(seen[-1], v)
    assert seen == ["g0", "g0", "g0", "c30", "c30"]  # c30 had one run already
    assert s.needs_calibration() == []
    assert s.counts_at_bounds() == {"good": Counts(1, 3), "bad": Counts(2, 3)}
    assert s.next()[0] not in ("g0", "c30")


def test_good_bound_failing_with_a_deterministic_probe_is_a_contradiction() -> None:
    s = Search(linear(3), "c3", good=["g"])
    s.record("g", G)
    with pytest.raises(ContradictionError, match="good bound g"):
        s.record("g", B)


def test_confirmation_asks_for_the_parent_when_only_a_sibling_ruled_it_out() -> None:
    #  r - p - c - h        h merges c and x; x good rules p out without p ever being run
    #       \- x -/
    parents = {"h": ("c", "x"), "x": ("p",), "c": ("p",), "p": ("r",), "r": ()}
    s = Search(parents, "h", noise=0.1)
    s.record("h", B)
    s.record("x", Counts(0, 8))
    s.record("c", Counts(8, 8))
    assert s.posterior()["c"] >= 0.99
    assert s.confirmation_pending and s.confirmation() == ["p"]
    assert not s.done and s.result().status == "running"
    assert s.next() == ["p"]
    s.record("p", G)
    assert not s.confirmation_pending and s.done
    assert s.result().culprit == "c"


def test_parallel_quantiles_under_noise() -> None:
    s = Search(linear(100), "c100", noise=0.1)
    s.record("c100", B)
    revs = s.next(3)
    assert len(set(revs)) == 3
    assert [int(r[1:]) for r in revs] == sorted(int(r[1:]) for r in revs)
    assert abs(int(revs[1][1:]) - 50) <= 3


def test_cost_weighting_prefers_an_already_built_revision() -> None:
    plain = Search(linear(100), "c100", noise=0.1)
    plain.record("c100", B)
    assert plain.next() == ["c50"]
    costly = Search(linear(100), "c100", noise=0.1, build_cost=10.0, built=["c40"])
    costly.record("c100", B)
    assert costly.next() == ["c40"]
    per_rev = Search(linear(100), "c100", noise=0.1, cost={"c50": 0.0}, build_cost=5.0)
    per_rev.record("c100", B)
    assert per_rev.next() == ["c50"]


def test_noisy_choices_replay() -> None:
    _, _, asked = simulate(300, 123, 0.2, seed=5)
    _, _, again = simulate(300, 123, 0.2, seed=5)
    assert asked == again


def test_estimated_steps_and_remaining_under_noise() -> None:
    s = Search(linear(1000), "c1000", noise=0.1)
    s.record("c1000", B)
    assert s.remaining() == 1000
    est = s.estimated_steps()
    assert 15 <= est <= 60
    assert math.isclose(sum(s.posterior().values()), 1.0)


@pytest.mark.slow
def test_accuracy_and_cost_at_p02_on_200_commits() -> None:
    wins = total = 0
    trials = 40
    for seed in range(trials):
        culprit = random.Random(100 + seed).randint(1, 200)
        s, runs, _ = simulate(200, culprit, 0.2, seed)
        wins += s.result().culprit == f"c{culprit}"
        total += runs
    assert wins >= trials - 2
    assert total / trials <= 45  # repeat-k voting needs about 90 at this size


@pytest.mark.parametrize("model", [NoiseModel.symmetric(0.3), NoiseModel.flaky(0.2), NoiseModel(0.1, 0.8)])
def test_posterior_equals_brute_force_enumeration_on_a_dag(model: NoiseModel) -> None:
    #  r1 - a1 - a2 - m - t        m merges a2 and b2; b1 forks from r1
    #    \- b1 - b2 -/
    parents = {"t": ("m",), "m": ("a2", "b2"), "b2": ("b1",), "a2": ("a1",), "b1": ("r1",), "a1": ("r1",), "r1": ()}
    anc = {"r1": {"r1"}, "a1": {"r1", "a1"}, "b1": {"r1", "b1"}}
    anc["a2"] = anc["a1"] | {"a2"}
    anc["b2"] = anc["b1"] | {"b2"}
    anc["m"] = anc["a2"] | anc["b2"] | {"m"}
    anc["t"] = anc["m"] | {"t"}
    rng = random.Random(7)
    s = Search(parents, "t", noise=model, no_culprit_prior=0.1)
    obs = []
    for _ in range(12):
        rev, k = rng.choice(list(parents)), rng.randint(0, 3)
        n = k + rng.randint(1 if model.fail_if_bad < 1 else 0, 2) or 1
        s.record(rev, Counts(k, n))
        obs.append((rev, k, n))
    brute = {}
    for c in [*parents, None]:
        weight = 0.1 if c is None else 0.9 / len(parents)
        for rev, k, n in obs:
            q = model.fail_if_bad if c is not None and c in anc[rev] else model.fail_if_good
            weight *= q**k * (1 - q) ** (n - k)
        brute[c] = weight
    total = sum(brute.values())
    post = s.posterior()
    for c, weight in brute.items():
        assert post.get(c, 0.0) == pytest.approx(weight / total, abs=1e-12)
