"""`bisector init` in a DVC project writes a config (build `dvc repro`, a metric probe against the
good bound) with which `bisector run --good G --bad B` finds the culprit."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bisector.io.config import load_file_config
from tests.fixtures.cli import bisector
from tests.fixtures.dvcrepos import DvcRepo

pytestmark = pytest.mark.slow

TRAIN = """\
import json
raw = open("data/raw.txt").read()
json.dump({"eval": {"accuracy": 0.5 if "noisy" in raw else 0.9}}, open("metrics.json", "w"))
"""
DVC_YAML = f"""\
stages:
  train:
    cmd: {sys.executable} train.py
    deps: [train.py, data/raw.txt]
    metrics:
    - metrics.json:
        cache: false
"""


def test_init_in_a_dvc_project_then_run_works(tmp_path: Path) -> None:
    r = DvcRepo.create(tmp_path / "p")
    r.dvc_init()
    c = {"c1": r.dvc_commit({"train.py": TRAIN, "dvc.yaml": DVC_YAML}, {"data/raw.txt": "clean\n"}, "c1", repro=True)}
    c["c2"] = r.dvc_commit({"README.md": "two\n"}, None, "c2")
    c["c3"] = r.dvc_commit(None, {"data/raw.txt": "noisy labels\n"}, "c3: new data", repro=True)
    c["c4"] = r.dvc_commit({"README.md": "four\n"}, None, "c4")
    r.push_all()
    res = bisector(r.path, "init", env=r.env)
    assert res.returncode == 0, res.stderr
    assert "DVC (stages: train)" in res.stdout and "metric eval.accuracy in metrics.json" in res.stdout
    config = load_file_config(r.path)
    assert config["build"]["command"] == "dvc repro"
    assert config["probes"] == [{"type": "metric", "file": "metrics.json", "condition": "eval.accuracy >= good * 0.98"}]
    assert "# metrics.json has eval.accuracy = 0.5 now" in (r.path / "bisector.toml").read_text()
    res = bisector(r.path, "run", "--good", c["c1"], "--bad", c["c4"], env=r.env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{c['c3']} is the first bad commit" in res.stdout
