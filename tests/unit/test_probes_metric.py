"""The metric probe: DVC-declared and explicit metrics files, absolute and relative conditions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures import mlfixtures as mf
from bisector.journal.codec import encode_observation
from bisector.core.errors import UsageError
from bisector.probes.metric import Condition, dvc_metrics_files, lookup
from bisector.probes.registry import make_probe
from bisector.core.model import Verdict


def metric(tmp_path: Path, **spec):
    return make_probe({"type": "metric", **spec}, user_cwd=tmp_path, frozen_dir=tmp_path / "frozen")


def run(probe, ws: Path, tmp_path: Path):
    return probe.run(mf.make_ctx(ws, tmp_path / "logs"))


@pytest.mark.parametrize("fmt", ["json", "yaml", "toml"])
def test_dvc_declared_metrics_in_each_format(fmt, tmp_path):
    good = mf.metric_project(tmp_path / "good", {"accuracy": 0.95, "eval": {"loss": 0.2}}, fmt=fmt)
    bad = mf.metric_project(tmp_path / "bad", {"accuracy": 0.70, "eval": {"loss": 0.9}}, fmt=fmt)
    p = metric(tmp_path, condition=["accuracy >= 0.9", "eval.loss < 0.5"])
    obs = run(p, good, tmp_path)
    assert obs.verdict is Verdict.GOOD, obs.summary
    assert obs.evidence["values"] == {"accuracy": 0.95, "eval.loss": 0.2}
    assert obs.evidence["sources"]["accuracy"] == f"metrics.{fmt}"
    obs = run(p, bad, tmp_path)
    assert obs.verdict is Verdict.BAD
    assert obs.summary == "accuracy = 0.7 fails >= 0.9; eval.loss = 0.9 fails < 0.5"
    assert [r["holds"] for r in obs.evidence["results"]] == [False, False]


def test_relative_condition_against_the_good_bound(tmp_path):
    p = metric(tmp_path, condition="accuracy >= good - 0.02")
    assert p.needs_baseline
    good = run(p, mf.metric_project(tmp_path / "g", {"accuracy": 0.93}), tmp_path)
    assert good.verdict is Verdict.SKIP and "no baseline yet" in good.summary
    p.set_baseline(good)
    assert not p.needs_baseline and p.config()["baseline"] == {"accuracy": 0.93}
    assert run(p, mf.metric_project(tmp_path / "ok", {"accuracy": 0.92}), tmp_path).verdict is Verdict.GOOD
    drop = run(p, mf.metric_project(tmp_path / "drop", {"accuracy": 0.85}), tmp_path)
    assert drop.verdict is Verdict.BAD
    assert drop.evidence["results"][0]["limit"] == pytest.approx(0.91)


def test_baseline_from_the_spec(tmp_path):
    p = metric(tmp_path, condition="loss <= good * 1.1", baseline=0.5, file="out/m.json")
    ws = tmp_path / "ws"
    (ws / "out").mkdir(parents=True)
    (ws / "out" / "m.json").write_text('{"loss": 0.56}')
    obs = run(p, ws, tmp_path)
    assert obs.verdict is Verdict.BAD and obs.summary == "loss = 0.56 fails <= 0.55"


def test_missing_file_or_metric_is_skip_with_a_clear_summary(tmp_path):
    p = metric(tmp_path, condition="accuracy >= 0.9")
    nothing = run(p, mf.metric_project(tmp_path / "none", None), tmp_path)
    assert nothing.verdict is Verdict.SKIP
    assert nothing.summary == "metric `accuracy` not found in metrics.json (missing)"
    other = run(p, mf.metric_project(tmp_path / "other", {"f1": 0.9}), tmp_path)
    assert other.verdict is Verdict.SKIP and "metric `accuracy` not found in metrics.json" in other.summary
    no_dvc = run(p, mf.metric_project(tmp_path / "nodvc", {"accuracy": 1.0}, dvc=False), tmp_path)
    assert no_dvc.verdict is Verdict.SKIP and "set `file = " in no_dvc.summary
    text = run(p, mf.metric_project(tmp_path / "text", {"accuracy": "high"}), tmp_path)
    assert text.verdict is Verdict.SKIP and "not a number" in text.summary
    strict = metric(tmp_path, condition="accuracy >= 0.9", on_missing="bad")
    assert run(strict, mf.metric_project(tmp_path / "none2", None), tmp_path).verdict is Verdict.BAD


def test_dvc_yaml_top_level_metrics_and_stage_wdir(tmp_path):
    (tmp_path / "dvc.yaml").write_text(
        "metrics:\n  - top.json\nstages:\n  eval:\n    wdir: sub\n    cmd: x\n    metrics:\n      - m.json\n      - {n.yaml: {cache: false}}\n"
    )
    assert dvc_metrics_files(tmp_path) == ["top.json", "sub/m.json", "sub/n.yaml"]


def test_lookup_and_conditions():
    doc = {"eval": {"acc": 1}, "a.b": 2, "x": {"y.z": 3}}
    assert lookup(doc, "eval.acc") == 1 and lookup(doc, "a.b") == 2 and lookup(doc, "x.y.z") == 3
    assert lookup(doc, "eval.nope") is None
    c = Condition("acc >= good * 0.95")
    assert c.relative and c.limit(1.0) == pytest.approx(0.95) and c.limit(None) is None
    assert Condition("loss<0.3").limit(None) == 0.3
    for text in ("accuracy", "accuracy >= best", "accuracy => 0.9", ">= 0.9", "acc >= good ** 2"):
        with pytest.raises(UsageError, match="cannot parse the metric condition"):
            Condition(text)


def test_config_errors(tmp_path):
    with pytest.raises(UsageError, match="needs `condition"):
        metric(tmp_path)
    with pytest.raises(UsageError, match="exactly one relative condition"):
        metric(tmp_path, condition="acc >= 0.9", baseline=0.5)
    with pytest.raises(UsageError, match="unknown key `conditon`"):
        metric(tmp_path, condition="acc >= 0.9", conditon="x")
    metric(tmp_path, condition="acc >= 0.9", timeout=3)  # set by --timeout on every probe: accepted


def test_a_diverged_metric_is_bad_and_the_evidence_stays_strict_json(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "m.json").write_text('{"loss": NaN}')
    obs = run(metric(tmp_path, condition="loss < 1", file="m.json"), ws, tmp_path)
    assert obs.verdict is Verdict.BAD and obs.summary == "loss = nan is not finite"
    json.dumps(encode_observation(obs), allow_nan=False)
