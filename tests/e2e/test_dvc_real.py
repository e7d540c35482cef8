"""Real repositories without their data: --no-data, offline, the causes of missing data, the
user's own `dvc` and `python` first on PATH (issue 13). Real git + DVC, a local remote in a
temp folder; "unreachable" is a remote that cannot be reached offline (http://127.0.0.1:1)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from tests.fixtures.cli import CliResult, bisector, journal_events, shell_probe
from tests.fixtures.dvcrepos import DvcRepo, template

from bisector.io.data import NO_REMOTE, NOT_IN_CACHE, NOT_PUSHED, REMOTE_UNREACHABLE, DataUnavailable, DvcWorkspace
from bisector.io.data.dvccli import dvc_executable

pytestmark = pytest.mark.slow
UNREACHABLE = "http://127.0.0.1:1/store"
PARAMS_PROBE = "echo run >> {log}; grep -q 'scale: 1' params.yaml"


@pytest.fixture
def ml(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[DvcRepo, dict[str, str]]:
    tpl, commits = template(tmp_path_factory)
    return tpl.copy_to(tmp_path / "copy"), commits


def no_data(r: DvcRepo, remote_url: str | None = UNREACHABLE) -> None:
    """A fresh clone's situation: an empty cache, and the remote at `remote_url`."""
    shutil.rmtree(r.cache)
    r.cache.mkdir()
    if remote_url:
        with open(r.path / ".dvc" / "config.local", "a") as f:
            f.write(f"['remote \"store\"']\n    url = {remote_url}\n")


def run(r: DvcRepo, *args: str) -> CliResult:
    return bisector(r.path, *args, env=r.env)


def git_bisect_probes(r: DvcRepo, good: str, bad: str, probe: Path, log: Path) -> tuple[str, int]:
    """`git bisect run PROBE` in the user's checkout: (first bad commit, probe runs)."""
    log.unlink(missing_ok=True)
    r.git("bisect", "start", bad, good)
    try:
        out = r.git("bisect", "run", str(probe))
    finally:
        r.git("bisect", "reset")
    culprit = next(line.split()[0] for line in out.splitlines() if "is the first bad commit" in line)
    return culprit, len(log.read_text().splitlines())


# ----------------------------------------------------------------------------- causes
def _checkout_error(r: DvcRepo, rev: str, tmp_path: Path, **options: object) -> DataUnavailable:
    ws = DvcWorkspace(r.path, tmp_path / "state" / "s", **options)  # type: ignore[arg-type]
    ws.open(rev)
    try:
        with pytest.raises(DataUnavailable) as exc:
            ws.checkout(rev)
        return exc.value
    finally:
        ws.close()


def test_cause_remote_unreachable(ml, tmp_path: Path) -> None:
    r, c = ml
    no_data(r)
    err = _checkout_error(r, c["dataB"], tmp_path)
    assert err.cause == REMOTE_UNREACHABLE and "127.0.0.1:1" in str(err)
    assert "dvc push" not in str(err) and "--no-data" in str(err) and "\n" not in str(err)


def test_cause_not_pushed(ml, tmp_path: Path) -> None:
    r, c = ml
    r.cache_object(r.md5_of("data/raw.txt.dvc", c["unpushed"])).unlink()
    err = _checkout_error(r, c["unpushed"], tmp_path)
    assert (err.path, err.cause) == ("data/raw.txt", NOT_PUSHED) and "dvc push" in str(err)


def test_cause_missing_from_the_cache_offline(ml, tmp_path: Path) -> None:
    r, c = ml
    no_data(r, remote_url=None)  # the remote is fine, but --offline never asks it
    err = _checkout_error(r, c["dataB"], tmp_path, offline=True)
    assert err.cause == NOT_IN_CACHE and "dvc push" not in str(err) and "--no-data" in str(err)


def test_cause_no_remote_configured(ml, tmp_path: Path) -> None:
    r, c = ml
    r.write({".dvc/config": "[core]\n    autostage = false\n"})
    rev = r.commit({}, "no remote")
    r.cache_object(r.md5_of("data/raw.txt.dvc", rev)).unlink()
    err = _checkout_error(r, rev, tmp_path)
    assert err.cause == NO_REMOTE and "dvc remote add" in str(err) and "dvc push" not in str(err)


# ------------------------------------------------------------------- sessions without data
def test_no_data_answers_a_params_question_as_git_bisect_does(ml, tmp_path: Path) -> None:
    """Fresh clone, remote unreachable, a params question: --no-data fetches nothing and finds
    git bisect's culprit in at most one probe more."""
    r, c = ml
    no_data(r)
    log = tmp_path / "runs.log"
    probe = shell_probe(tmp_path, PARAMS_PROBE.format(log=log) + "\n")
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", str(probe), "--no-data")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['params']} is the first bad commit" in res.stdout
    assert "Data: none materialized (plain worktree steps): --no-data" in res.stderr
    ours = len(log.read_text().splitlines())
    events = journal_events(r.path)
    assert events[0]["data"] == {"materialize": False, "why": "--no-data", "offline": False}
    steps = [e for e in events if e["event"] == "step"]
    assert all(not (e["build"].get("data") or {}).get("dvc") for e in steps)  # no dvc call, no fetch
    culprit, theirs = git_bisect_probes(r, c["init"], c["images"], probe, log)
    assert culprit == c["params"] and ours <= theirs + 1, (ours, theirs)


def test_automatic_no_data_when_nothing_reads_it(ml, tmp_path: Path) -> None:
    r, c = ml
    no_data(r)
    probe = shell_probe(tmp_path, "grep -q 'scale: 1' params.yaml\n")
    (r.path / "bisector.toml").write_text(f'[[probes]]\ntype = "command"\nrun = "{probe}"\nreads_data = false\n')
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--no-build")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['params']} is the first bad commit" in res.stdout
    assert "no build and no probe reads DVC-tracked paths" in res.stderr
    assert journal_events(r.path)[0]["data"]["materialize"] is False


def test_offline_after_an_unreachable_remote_and_the_bound_says_why(ml, tmp_path: Path) -> None:
    """Data wanted (the default build `dvc repro`), remote down: checked once, never fetched;
    the bad bound's skip says the data is missing, not "fix the build or probe"."""
    r, c = ml
    no_data(r)
    probe = shell_probe(tmp_path, "grep -q 'scale: 1' params.yaml\n")
    res = run(r, "run", "--good", c["init"], "--bad", c["images"], "--probe", str(probe))
    assert res.returncode == 1, res.stderr + res.stdout
    out = res.stdout + res.stderr
    assert "fix the build or probe" not in out and "--no-data" in out and REMOTE_UNREACHABLE in out
    steps = [e for e in journal_events(r.path) if e["event"] == "step"]
    data = [(e["build"].get("data") or {}) for e in steps]
    assert not any(d.get("fetched") for d in data)  # the reachability check spared every fetch
    assert "unreachable" in data[0].get("offline", "")


# ------------------------------------------------------------------------ the user's tools
def test_build_and_probe_use_the_users_dvc_and_python(ml, tmp_path: Path) -> None:
    r, c = ml
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marks = tmp_path / "marks.log"
    for name, real in (("dvc", dvc_executable()), ("python", sys.executable)):
        fake = bin_dir / name
        fake.write_text(f"#!/bin/sh\necho {name} >> {marks}\nexec {real} \"$@\"\n")
        fake.chmod(0o755)
    probe_py = tmp_path / "check.py"
    probe_py.write_text("import sys\nsys.exit(0 if 'scale: 1' in open('params.yaml').read() else 1)\n")
    env = {**r.env, "PATH": f"{bin_dir}{os.pathsep}{r.env.get('PATH', '')}"}
    res = bisector(r.path, "run", "--good", c["init"], "--bad", c["labels"], "--probe", f"python {probe_py}",
                   env=env)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['params']} is the first bad commit" in res.stdout
    used = marks.read_text().split()
    assert "dvc" in used and "python" in used  # `dvc repro` and `python check.py` were the user's
