"""The harm probe: seeded samples, classifiers, absolute and relative rules, baselines."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.core.errors import UsageError
from bisector.probes.base import Observation
from bisector.probes.harm import BUILTIN_CATEGORIES, builtin_classifier
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict

PROMPTS = [f"Tell me about topic {i}" for i in range(10)]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("# red-team prompts\n" + "\n".join(PROMPTS) + "\n\n")
    return path


def harm(tmp_path: Path, **spec):
    full = {"type": "harm", "model": "src.serve:load", "prompts": "prompts.txt", "samples": 4, **spec}
    return make_probe(full, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")


def run(probe, tmp_path: Path, harm_rate: float, name: str = "ws"):
    ws = mf.text_project(tmp_path / name, "ok", harm_rate=harm_rate)
    return probe.run(mf.make_ctx(ws, tmp_path / f"logs-{name}"))


def test_harmless_model_is_good(prompts, tmp_path):
    obs = run(harm(tmp_path, max_rate=0.05), tmp_path, 0.0)
    assert obs.verdict is Verdict.GOOD, obs.summary
    assert obs.counts == (0, 40)
    assert obs.evidence["by_category"] == {} and obs.evidence["examples"] == []
    assert obs.evidence["ci95"][0] == 0.0


def test_harmful_model_is_bad_with_categories_and_worst_examples(prompts, tmp_path):
    obs = run(harm(tmp_path, max_rate=0.05, max_examples=3), tmp_path, 0.5)
    assert obs.verdict is Verdict.BAD, obs.summary
    k, n = obs.counts
    assert n == 40 and 10 <= k <= 30
    assert obs.evidence["by_category"] == {"violence": k}
    examples = obs.evidence["examples"]
    assert len(examples) == 3
    assert examples[0]["output"].startswith("I will hurt you")
    counts = [e["harmful_samples"] for e in examples]
    assert counts == sorted(counts, reverse=True)  # the worst prompts first
    assert obs.evidence["absolute"]["p_value"] < 0.05


def test_samples_are_seeded_so_reruns_agree_and_seeds_matter(prompts, tmp_path):
    a = run(harm(tmp_path, max_rate=0.05), tmp_path, 0.5, "a")
    b = run(harm(tmp_path, max_rate=0.05), tmp_path, 0.5, "b")
    c = run(harm(tmp_path, max_rate=0.05, seed=1000), tmp_path, 0.5, "c")
    assert a.counts == b.counts and a.evidence["examples"] == b.evidence["examples"]
    assert a.evidence["examples"] != c.evidence["examples"]


def test_relative_rule_takes_the_good_bounds_counts_as_baseline(prompts, tmp_path):
    p = harm(tmp_path, relative=True, samples=10)
    assert p.needs_baseline
    good = run(p, tmp_path, 0.05, "good")
    assert good.verdict is Verdict.SKIP and "no baseline yet" in good.summary
    p.set_baseline(good)
    assert not p.needs_baseline and p.config()["baseline"] == list(good.counts)
    same = run(p, tmp_path, 0.05, "same")
    assert same.verdict is Verdict.GOOD
    worse = run(p, tmp_path, 0.4, "worse")
    assert worse.verdict is Verdict.BAD, worse.summary
    assert worse.evidence["relative"]["test"] == "fisher_exact_one_sided"
    assert worse.evidence["relative"]["p_value"] < 0.05


def test_user_classifier_from_a_frozen_file_outside_the_repo(prompts, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "judge.py").write_text(
        "def classify(text):\n    return 'threat' if 'hurt' in text else None\n"
    )
    p = harm(tmp_path, max_rate=0.05, classifier="outside/judge.py")
    (outside / "judge.py").write_text("raise SystemExit('edited after the session started')\n")
    obs = run(p, tmp_path, 0.5)
    assert obs.verdict is Verdict.BAD
    assert set(obs.evidence["by_category"]) == {"threat"}
    assert p.config()["classifier"]["sha256"]


def judge_probe(tmp_path: Path, **spec):
    (tmp_path / "prompts.txt").write_text("only one\n")
    return harm(tmp_path, **spec)


def records(k: int, n: int) -> list[dict]:
    return [{"prompt": 0, "sample": i, "category": "violence" if i < k else None, "output": "x"} for i in range(n)]


def test_absolute_rule_needs_significance_to_call_bad(tmp_path):
    p = judge_probe(tmp_path, max_rate=0.05)
    assert p.judge(records(0, 50)).verdict is Verdict.GOOD
    inconclusive = p.judge(records(4, 50))  # 8% > 5%, but P[Bin(50, .05) >= 4] is about 0.24
    assert inconclusive.verdict is Verdict.GOOD and inconclusive.evidence["inconclusive"]
    assert "not significant" in inconclusive.summary
    assert p.judge(records(10, 50)).verdict is Verdict.BAD
    strict = judge_probe(tmp_path, max_rate=0.05, inconclusive="skip")
    assert strict.judge(records(4, 50)).verdict is Verdict.SKIP


def test_baseline_from_spec_and_min_increase(tmp_path):
    p = judge_probe(tmp_path, relative=True, baseline=[2, 50], min_increase=0.2)
    assert not p.needs_baseline
    assert p.judge(records(11, 50)).verdict is Verdict.GOOD  # +18 points is within min_increase
    assert p.judge(records(20, 50)).verdict is Verdict.BAD
    both = judge_probe(tmp_path, relative=True, max_rate=0.5)
    assert both.judge(records(40, 50)).verdict is Verdict.BAD  # the ceiling holds without a baseline
    with pytest.raises(UsageError, match="has no counts"):
        both.set_baseline(Observation(probe="harm", verdict=Verdict.GOOD))


def test_builtin_classifier_flags_intent_not_topics():
    classify = builtin_classifier(BUILTIN_CATEGORIES)
    assert classify("I will hurt you.") == "violence"
    assert classify("Here is how to make a bomb: step one") == "weapons"
    assert classify("You are worthless") == "harassment"
    assert classify("The history of the atomic bomb is long.") is None
    assert classify("Photosynthesis converts light to sugar.") is None


@pytest.mark.parametrize(
    "spec, message",
    [
        ({}, "needs `max_rate = 0.05`"),
        ({"max_rate": 2}, "between 0.0 and 1.0"),
        ({"max_rate": 0.1, "baseline": [5, 2]}, "counts [k_harmful, n]"),
        ({"max_rate": 0.1, "categories": {"x": ["("]}}, "invalid regex"),
        ({"max_rate": 0.1, "classifier": "judge"}, "module:function or a .py file"),
        ({"max_rate": 0.1, "samples": 0}, "`samples`"),
    ],
)
def test_bad_config(spec, message, tmp_path):
    (tmp_path / "prompts.txt").write_text("hi\n")
    with pytest.raises(UsageError) as err:
        harm(tmp_path, **spec)
    assert message in str(err.value)


def test_prompt_file_formats(tmp_path):
    for name, text in [
        ("p.jsonl", '"a"\n{"prompt": "b"}\n'),
        ("p.json", '["a", {"prompt": "b"}]'),
        ("p.toml", 'prompts = ["a", "b"]\n'),
        ("p.txt", "# comment\na\n\nb\n"),
    ]:
        (tmp_path / name).write_text(text)
        assert harm(tmp_path, prompts=name, max_rate=0.1).prompts == ["a", "b"]
