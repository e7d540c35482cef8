"""The basic probe on a real torch classifier, in the probe's subprocess (slow: torch start-up)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bisector.core.model import Verdict
from bisector.probes.registry import make_probe
from tests.fixtures import mlfixtures as mf


@pytest.fixture(scope="module")
def classifier_setup(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("basic-classifier")
    mf.classifier_cases(root / "cases.jsonl", n=12)
    mf.classifier_project(root / "ok", "ok")
    mf.classifier_project(root / "shuffled", "shuffled")
    return root


@pytest.mark.parametrize("variant, verdict", [("ok", Verdict.GOOD), ("shuffled", Verdict.BAD)])
def test_torch_classifier_predictions(classifier_setup, variant, verdict, tmp_path):
    p = make_probe({"type": "basic", "model": "src.serve:load", "cases": "cases.jsonl", "threshold": 0.75},
                   user_cwd=classifier_setup, frozen_dir=tmp_path / "frozen")
    obs = p.run(mf.make_ctx(classifier_setup / variant, tmp_path / "logs"))
    assert obs.verdict is verdict, obs.summary
    n_failed, n = obs.counts
    assert n == 12
    if variant == "ok":
        assert n_failed == 0
    else:
        assert n_failed >= 6 and "input" in obs.evidence["failures"][0]
