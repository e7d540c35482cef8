"""The README's first command: `bisector demo` (the ML project) and the plain git demo."""

from __future__ import annotations

import importlib.util
import subprocess

import pytest

from tests.fixtures.cli import BISECTOR


def test_plain_demo_finds_the_planted_regression() -> None:
    res = subprocess.run([*BISECTOR, "demo", "--plain"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Refactor loader: unpack channels in one go" in res.stdout
    assert "The planted regression (commit 27 of 40) was found." in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the ml demo needs torch (the ml extra)")
def test_ml_demo_finds_the_bad_annotation_batch() -> None:
    res = subprocess.run([*BISECTOR, "demo"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Add annotation batch 2; tidy the loader" in res.stdout
    assert "Culprit is the DATA" in res.stdout
    assert "modified  data/train.csv" in res.stdout
    assert "metric: accuracy" in res.stdout
    assert "The planted regression (commit 15 of 24) was found." in res.stdout


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="the ml demo needs torch (the ml extra)")
def test_ml_demo_code_scenario_finds_the_channel_swap() -> None:
    res = subprocess.run([*BISECTOR, "demo", "--scenario", "code"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Refactor loader: channel order as in the camera SDK" in res.stdout
    assert "Culprit is the CODE" in res.stdout
    assert "The planted regression (commit 15 of 24) was found." in res.stdout
