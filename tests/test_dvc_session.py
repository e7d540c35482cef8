"""`bisector run` end to end on a real git + DVC repository with a local remote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dvcrepos import DvcRepo, template
from repos import snapshot

pytestmark = pytest.mark.slow
BISECTOR = [sys.executable, "-m", "bisector.cli"]


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[DvcRepo, dict[str, str]]:
    tpl, commits = template(tmp_path_factory)
    return tpl.copy_to(tmp_path / "copy"), commits


def run(r: DvcRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*BISECTOR, *args], cwd=r.path, capture_output=True, text=True, env=r.env, timeout=300)


def probe(tmp_path: Path, body: str) -> str:
    p = tmp_path / "probe.sh"
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(0o755)
    return str(p)


def events(r: DvcRepo) -> list[dict]:
    path = sorted((r.path / ".bisector" / "sessions").glob("*.jsonl"))[-1]
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_code_axis_finds_data_culprit_and_attributes_it(ml, tmp_path: Path) -> None:
    r, c = ml
    before = snapshot(r.path)
    # The model is broken once it was trained on "charlie" (the `both` commit changed code and data).
    p = probe(tmp_path, "! grep -q charlie model.txt")
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    assert "Culprit is the DATA" in res.stdout
    assert "modified  data/raw.txt" in res.stdout
    ev = events(r)
    crossings = [e for e in ev if e["event"] == "step" and e["role"] == "crossing"]
    assert len(crossings) == 2
    assert ev[-1]["attribution"]["culprit_is"] == "data"
    # Every step ran `dvc repro` on checked-out data (never stale): the build log says so.
    steps = [e for e in ev if e["event"] == "step" and e["role"] != "crossing"]
    assert all(e["build"]["status"] in ("ok", "cached") for e in steps)
    assert snapshot(r.path) == before
    # A second search over the same range with another probe rebuilds nothing (build cache).
    p2 = tmp_path / "p2.sh"
    p2.write_text("#!/bin/sh\n! grep -q charlie model.txt\n")
    p2.chmod(0o755)
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", str(p2))
    assert res.returncode == 0, res.stderr
    steps = [e for e in events(r) if e["event"] == "step" and e["role"] != "crossing"]
    assert steps and all(e["build"]["status"] == "cached" for e in steps)
    assert snapshot(r.path) == before


def test_code_culprit_attributed_to_code(ml, tmp_path: Path) -> None:
    r, c = ml
    p = probe(tmp_path, "! grep -q '^v3:' model.txt")
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", p)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    assert "Culprit is the CODE" in res.stdout


def test_data_axis_with_fixed_code(ml, tmp_path: Path) -> None:
    r, c = ml
    p = probe(tmp_path, "! grep -q charlie model.txt")
    res = run(r, "run", "--axis", "data", "--good", c["init"], "--bad", c["images"], "--probe", p)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    assert "first bad DATA revision" in res.stdout
    ev = events(r)
    assert ev[0]["axis"] == "data" and ev[0]["code_rev"] == c["images"]
    # Only data revisions are candidates: init's successors where inputs changed.
    assert ev[0]["candidates"] <= 5
    assert all(e["commit"] == c["images"] for e in ev if e["event"] == "step")


def test_missing_data_makes_the_bound_unusable_with_a_reason(ml, tmp_path: Path) -> None:
    r, c = ml
    md5 = r.md5_of("data/raw.txt.dvc", c["unpushed"])
    r.cache_object(md5).unlink()
    p = probe(tmp_path, "! grep -q charlie model.txt")
    res = run(r, "run", "--good", c["init"], "--bad", c["unpushed"], "--probe", p)
    assert res.returncode == 1
    assert "Cannot bisect: the bad bound" in res.stdout
    assert "data/raw.txt" in res.stdout and "not pushed to the remote" in res.stdout
