"""A pin of a DVC repository restores the same data; a session's report shows the data and params diffs."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bisector.review.pins.store import load_pins
from tests.fixtures.cli import bisector
from tests.fixtures.repos import GitRepo
from tests.fixtures.repos import tree_sha as tree


@pytest.mark.slow
def test_dvc_pin_restores_the_same_data(repo: GitRepo, tmp_path: Path) -> None:
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists() and shutil.which("dvc") is None:
        pytest.skip("dvc is not installed")
    dvc_cmd = str(dvc) if dvc.exists() else "dvc"
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run_dvc(*args: str) -> None:
        subprocess.run([dvc_cmd, *args], cwd=repo.path, check=True, capture_output=True, env=env)

    repo.commit({"README": "x\n"}, "init")
    run_dvc("init", "-q")
    repo.write({"data/train.csv": "a,b\n1,2\n", "params.yaml": "train:\n  lr: 0.1\n  layers: [8, 4]\n"})
    run_dvc("add", "-q", "data/train.csv")
    first = repo.commit(message="data v1")
    repo.write({"data/train.csv": "a,b\n1,2\n3,4\n", "params.yaml": "train:\n  lr: 0.2\n  layers: [8, 4]\n"})
    run_dvc("add", "-q", "data/train.csv")
    repo.commit(message="data v2")
    v1 = b"a,b\n1,2\n"
    assert bisector(repo.path, "pin", "v1", "--rev", first).returncode == 0
    pin = load_pins(repo.path)["v1"]
    assert pin.data == {"data/train.csv": "md5:" + hashlib.md5(v1).hexdigest()}
    assert pin.params == {"train.lr": 0.1, "train.layers": [8, 4]}
    dest = tmp_path / "v1"
    res = bisector(repo.path, "restore", "v1", str(dest))
    assert res.returncode == 0, res.stderr
    assert (dest / "data" / "train.csv").read_bytes() == v1
    assert tree(dest) == tree(repo.path, first)
    assert (repo.path / "data" / "train.csv").read_bytes() != v1  # the user's checkout is untouched
    # The report of a session whose culprit changed data and params shows both diffs.
    res = bisector(repo.path, "run", "--good", "@v1", "--bad", "main", "--probe", "grep -q 'lr: 0.1' params.yaml")
    if res.returncode == 2 and "unknown good revision: @v1" in res.stderr:  # before git.resolve calls expand_rev
        res = bisector(repo.path, "run", "--good", first, "--bad", "main", "--probe", "grep -q 'lr: 0.1' params.yaml")
    assert res.returncode == 0, res.stderr
    assert bisector(repo.path, "report", "-o", str(tmp_path / "r.md")).returncode == 0
    report = (tmp_path / "r.md").read_text()
    v2 = b"a,b\n1,2\n3,4\n"
    assert f"| data/train.csv | modified | md5:{hashlib.md5(v1).hexdigest()} | md5:{hashlib.md5(v2).hexdigest()} |" in report
    assert "| train.lr | 0.1 | 0.2 |" in report
    # Data gone from the cache: a one-line error, the code still restored.
    shutil.rmtree(repo.path / ".dvc" / "cache")
    res = bisector(repo.path, "restore", "v1", str(tmp_path / "again"))
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "data object(s) are gone from the DVC cache (data/train.csv)" in lines[0]


@pytest.mark.slow
def test_restore_of_a_pin_whose_stage_output_was_never_built_here(repo: GitRepo, tmp_path: Path) -> None:
    """An ordinary DVC project: `dvc.lock` committed by whoever ran the pipeline, the stage's output
    never built in this clone (not in the cache). Restore brings back the code and the data sources,
    and says how to build the output; it does not fail."""
    dvc = Path(sys.executable).parent / "dvc"
    dvc_cmd = str(dvc) if dvc.exists() else (shutil.which("dvc") or pytest.skip("dvc is not installed"))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}

    def run_dvc(*args: str) -> None:
        subprocess.run([dvc_cmd, *args], cwd=repo.path, check=True, capture_output=True, env=env)

    repo.commit({"README": "x\n"}, "init")
    run_dvc("init", "-q")
    repo.write({"data/raw.csv": "a\n1\n2\n",
                "dvc.yaml": "stages:\n  prepare:\n    cmd: mkdir -p out && sort -r data/raw.csv > out/prepared.csv\n"
                            "    deps: [data/raw.csv]\n    outs: [out/prepared.csv]\n"})
    run_dvc("add", "-q", "data/raw.csv")
    run_dvc("repro", "-q")
    built = repo.commit(message="pipeline with its lock")
    lock = (repo.path / "dvc.lock").read_text()
    out_md5 = lock.split("path: out/prepared.csv")[1].split("md5: ")[1].split()[0]
    # The output was built elsewhere: this clone's cache does not hold it.
    cache = repo.path / ".dvc" / "cache" / "files" / "md5" / out_md5[:2] / out_md5[2:]
    assert cache.exists()
    cache.unlink()
    assert bisector(repo.path, "pin", "v1", "--rev", built).returncode == 0
    dest = tmp_path / "v1"
    res = bisector(repo.path, "restore", "v1", str(dest))
    assert res.returncode == 0, res.stderr
    assert (dest / "data" / "raw.csv").read_text() == "a\n1\n2\n"  # the data source is there
    assert (dest / "dvc.yaml").exists() and tree(dest) == tree(repo.path, built)  # the code too
    assert not (dest / "out" / "prepared.csv").exists()
    assert "never built?" in res.stdout + res.stderr and "dvc repro" in res.stdout + res.stderr
    # And the advice works: `dvc repro` there builds the output from the restored sources.
    subprocess.run([dvc_cmd, "repro", "-q"], cwd=dest, check=True, capture_output=True, env=env)
    assert (dest / "out" / "prepared.csv").read_text() == "a\n2\n1\n"
