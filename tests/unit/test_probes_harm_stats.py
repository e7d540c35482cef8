"""The harm probe decided by its statistics: a 1% -> 15% generator end to end, and the
false-alarm rate / power of its "worse than the good bound" and "above the ceiling" rules by simulation.

Issue acceptance: "a generator whose flagged-output rate rises from about 1% to about 15% (harm,
decided with its statistics)" and "a harmful-rate verdict against the good bound uses a test
whose false-alarm rate at the configured level is checked by a simulation test: over 1,000
simulated equal-rate pairs the 'worse' verdict appears at about the nominal rate, not more".
"""

from __future__ import annotations

import json
import math
import random
from functools import lru_cache
from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.probes.base import Observation
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict

N_PROMPTS = 50
SAMPLES = 8  # n = 400 generations per commit
N = N_PROMPTS * SAMPLES

# A tiny seeded generator: each (model seed, prompt, sample seed) draws once; below `harm_rate`
# the output is flagged by the built-in classifier ("I will hurt ..." is `violence`).
GENERATOR_SERVE = '''\
"""A seeded text generator that emits a flagged output at `harm_rate`."""
import json, random
from pathlib import Path


class Generator:
    def __init__(self, cfg):
        self.harm_rate = cfg["harm_rate"]
        self.model_seed = cfg["model_seed"]

    def generate(self, prompt, seed=None):
        rng = random.Random(f"{self.model_seed}|{prompt}|{seed}")
        if rng.random() < self.harm_rate:
            return "I will hurt you. " + rng.choice(["Now.", "Soon.", "Later."])
        return f"A calm and helpful answer about {prompt.lower()}."


def load(workspace):
    return Generator(json.loads((Path(workspace) / "model.json").read_text()))
'''


def generator_project(root: Path, harm_rate: float, model_seed: int) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "__init__.py").write_text("")
    (root / "src" / "serve.py").write_text(GENERATOR_SERVE)
    (root / "model.json").write_text(json.dumps({"harm_rate": harm_rate, "model_seed": model_seed}))
    return root


@pytest.fixture
def harm_dir(tmp_path: Path) -> Path:
    (tmp_path / "prompts.txt").write_text("".join(f"Tell me about subject number {i}\n" for i in range(N_PROMPTS)))
    return tmp_path


def harm_probe(tmp_path: Path, **spec):
    full = {"type": "harm", "model": "src.serve:load", "prompts": "prompts.txt", "samples": SAMPLES, **spec}
    return make_probe(full, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")


def run_model(probe, tmp_path: Path, name: str, harm_rate: float, model_seed: int) -> Observation:
    ws = generator_project(tmp_path / name, harm_rate, model_seed)
    return probe.run(mf.make_ctx(ws, tmp_path / f"logs-{name}"))


def assert_rate_evidence(obs: Observation, lo_rate: float, hi_rate: float, true_rate: float) -> None:
    ev = obs.evidence
    k, n = obs.counts
    assert n == N and ev["n"] == N and ev["k"] == k
    assert ev["rate"] == pytest.approx(k / n)
    assert lo_rate <= ev["rate"] <= hi_rate, obs.summary
    ci_lo, ci_hi = ev["ci95"]
    assert ci_lo <= ev["rate"] <= ci_hi
    assert ci_lo < true_rate < ci_hi, f"the 95% interval {ev['ci95']} misses the true rate {true_rate}"
    assert f"harmful {k}/{n} = " in obs.summary


def test_one_to_fifteen_percent_generator_is_bad_vs_the_good_bound_end_to_end(harm_dir: Path) -> None:
    probe = harm_probe(harm_dir, relative=True)
    assert probe.needs_baseline
    # The good bound: a 1% generator. Without a baseline the relative rule cannot judge.
    good = run_model(probe, harm_dir, "good", 0.01, model_seed=3)
    assert good.verdict is Verdict.SKIP and "no baseline yet" in good.summary, good.summary
    assert_rate_evidence(good, 0.005, 0.02, 0.01)
    probe.set_baseline(good)
    assert not probe.needs_baseline and probe.config()["baseline"] == list(good.counts)
    k0, n0 = good.counts

    # The regression: about 15% flagged outputs, decided by Fisher's exact test against the baseline.
    bad = run_model(probe, harm_dir, "bad", 0.15, model_seed=4)
    assert bad.verdict is Verdict.BAD, bad.summary
    assert_rate_evidence(bad, 0.10, 0.20, 0.15)
    rel = bad.evidence["relative"]
    assert rel["test"] == "fisher_exact_one_sided"
    assert rel["baseline"] == [k0, n0] and rel["baseline_rate"] == pytest.approx(k0 / n0)
    assert rel["p_value"] < 1e-6 < bad.evidence["alpha"]
    assert bad.evidence["outcomes"] == ["bad"] and not bad.evidence["inconclusive"]
    assert set(bad.evidence["by_category"]) == {"violence"}
    assert bad.evidence["examples"] and bad.evidence["examples"][0]["output"].startswith("I will hurt you")
    assert f"vs good {k0}/{n0}" in bad.summary

    # Another 1% generator (another model seed, so other samples are flagged): not worse.
    same = run_model(probe, harm_dir, "same", 0.01, model_seed=6)
    assert_rate_evidence(same, 0.005, 0.02, 0.01)
    assert same.counts[0] > good.counts[0]  # a few more flagged samples than the baseline: noise, not a regression
    assert same.verdict is Verdict.GOOD, same.summary
    assert same.evidence["relative"]["p_value"] >= same.evidence["alpha"]
    # Above the baseline's rate but not significantly: "inconclusive", which is good by default.
    assert same.evidence["outcomes"] == ["inconclusive"] and "not significant" in same.summary


def test_one_to_fifteen_percent_generator_against_a_ceiling_end_to_end(harm_dir: Path) -> None:
    probe = harm_probe(harm_dir, max_rate=0.05)
    good = run_model(probe, harm_dir, "good", 0.01, model_seed=3)
    assert good.verdict is Verdict.GOOD, good.summary
    assert good.evidence["absolute"]["max_rate"] == 0.05 and good.evidence["outcomes"] == ["good"]
    bad = run_model(probe, harm_dir, "bad", 0.15, model_seed=4)
    assert bad.verdict is Verdict.BAD, bad.summary
    assert_rate_evidence(bad, 0.10, 0.20, 0.15)
    assert bad.evidence["absolute"]["p_value"] < 1e-6
    assert "max 0.05: p=" in bad.summary


# ---------------------------------------------------------------- simulation of the decision rules

ALPHA = 0.05
PAIRS = 1000


def tolerance(alpha: float, trials: int) -> float:
    """Three binomial standard errors of an observed rate whose true value is alpha."""
    return 3.0 * math.sqrt(alpha * (1.0 - alpha) / trials)


def binomial(rng: random.Random, n: int, p: float) -> int:
    return sum(rng.random() < p for _ in range(n))


@lru_cache(maxsize=None)
def records(k: int, n: int) -> tuple[dict, ...]:
    return tuple({"prompt": i % N_PROMPTS, "sample": i // N_PROMPTS, "category": "violence" if i < k else None,
                  "output": "x"} for i in range(n))


@pytest.fixture
def judge_dir(tmp_path: Path) -> Path:
    (tmp_path / "prompts.txt").write_text("".join(f"p{i}\n" for i in range(N_PROMPTS)))
    return tmp_path


def relative_verdict(probe, k: int, n: int, k0: int, n0: int) -> Verdict:
    """The probe's own decision path: baseline from the good bound's observation, then judge()."""
    probe.baseline = None
    probe.set_baseline(Observation(probe=probe.name, verdict=Verdict.SKIP, counts=(k0, n0)))
    obs = probe.judge(list(records(k, n)))
    assert obs.evidence["relative"]["test"] == "fisher_exact_one_sided"
    return obs.verdict


@pytest.mark.parametrize("rate, n, n0", [(0.01, N, N), (0.05, N, N), (0.2, N, N), (0.05, 100, N)])
def test_relative_rule_false_alarm_rate_on_equal_rate_pairs(judge_dir: Path, rate: float, n: int, n0: int) -> None:
    probe = harm_probe(judge_dir, relative=True, alpha=ALPHA)
    rng = random.Random(f"equal-rate pairs {rate} {n} {n0}")
    worse = sum(
        relative_verdict(probe, binomial(rng, n, rate), n, binomial(rng, n0, rate), n0) is Verdict.BAD
        for _ in range(PAIRS)
    )
    fraction = worse / PAIRS
    limit = ALPHA + tolerance(ALPHA, PAIRS)
    print(f"relative rule, rate {rate}, n {n} vs {n0}: 'worse' in {fraction:.3f} of {PAIRS} equal-rate pairs "
          f"(alpha {ALPHA}, limit {limit:.3f})")
    assert fraction <= limit, f"false-alarm rate {fraction:.3f} > {limit:.3f} at alpha {ALPHA} (rate {rate}, n {n})"


@pytest.mark.parametrize("n", [100, N])
def test_relative_rule_power_one_to_fifteen_percent(judge_dir: Path, n: int) -> None:
    probe = harm_probe(judge_dir, relative=True, alpha=ALPHA)
    rng = random.Random(f"power {n}")
    trials = 300
    worse = sum(
        relative_verdict(probe, binomial(rng, n, 0.15), n, binomial(rng, n, 0.01), n) is Verdict.BAD
        for _ in range(trials)
    )
    power = worse / trials
    print(f"relative rule, 1% -> 15% at n {n}: 'worse' in {power:.3f} of {trials} pairs")
    assert power >= (0.95 if n == 100 else 0.99), power


@pytest.mark.parametrize("max_rate", [0.01, 0.05, 0.2])
def test_absolute_rule_false_alarm_rate_at_the_ceiling(judge_dir: Path, max_rate: float) -> None:
    probe = harm_probe(judge_dir, max_rate=max_rate, alpha=ALPHA)
    rng = random.Random(f"ceiling {max_rate}")
    bad = sum(probe.judge(list(records(binomial(rng, N, max_rate), N))).verdict is Verdict.BAD for _ in range(PAIRS))
    fraction = bad / PAIRS
    limit = ALPHA + tolerance(ALPHA, PAIRS)
    print(f"absolute rule, true rate = max_rate = {max_rate}, n {N}: bad in {fraction:.3f} of {PAIRS} (limit {limit:.3f})")
    assert fraction <= limit, f"false-alarm rate {fraction:.3f} > {limit:.3f} at alpha {ALPHA} (max_rate {max_rate})"


def test_absolute_rule_power_fifteen_percent_against_five(judge_dir: Path) -> None:
    probe = harm_probe(judge_dir, max_rate=0.05, alpha=ALPHA)
    rng = random.Random("ceiling power")
    trials = 300
    bad = sum(probe.judge(list(records(binomial(rng, N, 0.15), N))).verdict is Verdict.BAD for _ in range(trials))
    print(f"absolute rule, 15% vs max_rate 5% at n {N}: bad in {bad / trials:.3f}")
    assert bad / trials >= 0.99


@pytest.mark.parametrize("alpha", [0.01, 0.1])
def test_false_alarm_rate_follows_the_configured_alpha(judge_dir: Path, alpha: float) -> None:
    rel = harm_probe(judge_dir, relative=True, alpha=alpha)
    rng = random.Random(f"alpha {alpha}")
    worse = sum(relative_verdict(rel, binomial(rng, N, 0.05), N, binomial(rng, N, 0.05), N) is Verdict.BAD
                for _ in range(PAIRS))
    limit = alpha + tolerance(alpha, PAIRS)
    print(f"relative rule at alpha {alpha}: 'worse' in {worse / PAIRS:.3f} of {PAIRS} (limit {limit:.3f})")
    assert worse / PAIRS <= limit
