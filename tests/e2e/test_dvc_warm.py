"""The warm path on real git + DVC repositories: a step whose build the build cache holds runs
no `dvc repro` and no `dvc checkout`; its data inputs are placed from the DVC cache, or left
where they are when they still hold their bytes (issue 13, warm searches)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from tests.fixtures.cli import bisector, journal_events, shell_probe
from tests.fixtures.dvcrepos import DvcRepo, template

from bisector.io.data import CORRUPTED, DataUnavailable, DvcWorkspace

pytestmark = pytest.mark.slow

# Good while the model was trained with scale 1 (the culprit is the `params` commit); exit 200
# (abort) when the model was not made from the data in the workspace: a stale or wrong input.
PROBE = """\
raw=$(cat data/raw.txt)
grep -q ":$raw:" model.txt || { echo "model.txt does not match data/raw.txt ($raw)"; exit 200; }
grep -q ':1$' model.txt
"""


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[DvcRepo, dict[str, str]]:
    tpl, commits = template(tmp_path_factory)
    return tpl.copy_to(tmp_path / "copy"), commits


def counting_dvc(tmp_path: Path, log: Path) -> Path:
    """A folder holding a `dvc` that logs its arguments, then runs the real one: a build spelled
    `dvc repro` runs the `dvc` first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real = Path(sys.executable).parent / "dvc"
    fake = bin_dir / "dvc"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {log}\nexec {real} \"$@\"\n")
    fake.chmod(0o755)
    return bin_dir


def test_second_run_over_the_same_range_runs_no_dvc_repro_and_no_dvc_checkout(ml, tmp_path: Path) -> None:
    r, c = ml
    calls = tmp_path / "dvc-calls.log"
    env = {**r.env, "PATH": f"{counting_dvc(tmp_path, calls)}{os.pathsep}{r.env.get('PATH', '')}"}
    probe = shell_probe(tmp_path, PROBE)
    args = ("run", "--good", c["init"], "--bad", c["both"], "--probe", str(probe))

    first = bisector(r.path, *args, env=env)
    assert first.returncode == 0, first.stderr + first.stdout
    assert f"{c['params']} is the first bad commit" in first.stdout
    cold = [e for e in journal_events(r.path) if e["event"] == "step"]
    repros = [line for line in calls.read_text().splitlines() if line.startswith("repro")]
    assert len(repros) == sum(1 for e in cold if e["build"]["status"] == "ok") > 0

    calls.unlink()
    second = bisector(r.path, *args, env=env)
    assert second.returncode == 0, second.stderr + second.stdout
    assert f"{c['params']} is the first bad commit" in second.stdout
    warm = [e for e in journal_events(r.path) if e["event"] == "step"]
    assert [(e["commit"], e["verdict"]) for e in warm] == [(e["commit"], e["verdict"]) for e in cold]
    assert not calls.exists()  # no `dvc` at all on the build's PATH: no `dvc repro`
    for e in warm:
        build = e["build"]
        assert build["status"] == "cached" and build.get("log") is None, build
        assert build["data"]["checkout"] == "none", build["data"]  # no `dvc checkout` either
        assert set(build["data"]["timings"]) == {"checkout", "data", "build", "probe"}
    placed = [p for e in warm for p in e["build"]["data"].get("placed", [])]
    # The first step places every input; later ones only those whose hash changed since.
    assert {"data/raw.txt", "data/labels.txt"} <= set(placed)
    assert placed.count("data/raw.txt") >= 1  # (re-placing a changed input: test_inputs_are_placed_then_left_alone_then_redone_when_changed)


def _open(r: DvcRepo, tmp_path: Path, rev: str, **options: object) -> DvcWorkspace:
    ws = DvcWorkspace(r.path, tmp_path / "state" / "s", **options)  # type: ignore[arg-type]
    ws.open(rev)
    return ws


def _inputs_only(ws: DvcWorkspace, rev: str) -> dict:
    ws.checkout(rev, defer_data=True)
    ws.materialize(outputs=False)
    return ws.step_info


def test_inputs_are_placed_then_left_alone_then_redone_when_changed(ml, tmp_path: Path) -> None:
    r, c = ml
    ws = _open(r, tmp_path, c["init"])
    try:
        info = _inputs_only(ws, c["init"])
        assert info["checkout"] == "none" and sorted(info["placed"]) == ["data/labels.txt", "data/raw.txt"]
        assert (ws.path / "data/raw.txt").read_text() == "alpha\n"
        assert not (ws.path / "model.txt").exists()  # outputs are left to the build cache

        info = _inputs_only(ws, c["readme"])  # same data: nothing to do
        assert info["checkout"] == "none" and "placed" not in info

        (ws.path / "data/raw.txt").write_text("written by a probe\n")  # same hash declared, other bytes
        info = _inputs_only(ws, c["init"])
        assert info.get("placed") == ["data/raw.txt"] and (ws.path / "data/raw.txt").read_text() == "alpha\n"

        info = _inputs_only(ws, c["dataB"])  # another hash: placed again
        assert info.get("placed") == ["data/raw.txt"] and (ws.path / "data/raw.txt").read_text() == "bravo\n"

        info = _inputs_only(ws, c["images"])  # a folder input, not there yet: placed
        assert "data/images" in info["placed"]
        assert (ws.path / "data/images/b/c.txt").read_text() == "image c\n"

        (ws.path / "data/images/a.txt").write_text("changed\n")
        (ws.path / "data/images/extra.txt").write_text("extra\n")
        info = _inputs_only(ws, c["images"])  # an existing folder is updated by `dvc checkout`
        assert info["checkout"] == "inputs" and "data/images" not in info.get("placed", [])
        assert (ws.path / "data/images/a.txt").read_text() == "image a\n"
        assert not (ws.path / "data/images/extra.txt").exists()

        ws.checkout(c["readme"])  # not deferred: every output too, as before
        assert ws.step_info["checkout"] == "all" and (ws.path / "model.txt").exists()
    finally:
        ws.close()


def test_a_corrupted_object_is_caught_before_it_is_placed(ml, tmp_path: Path) -> None:
    r, c = ml
    obj = r.cache_object(r.md5_of("data/raw.txt.dvc", c["dataB"]))
    obj.chmod(0o644)
    obj.write_text("rotten\n")
    ws = _open(r, tmp_path, c["dataB"], verify=True)
    try:
        with pytest.raises(DataUnavailable) as exc:
            _inputs_only(ws, c["dataB"])
        assert exc.value.cause == CORRUPTED and exc.value.path == "data/raw.txt"
        assert not (ws.path / "data/raw.txt").exists()
    finally:
        ws.close()
