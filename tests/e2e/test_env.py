"""Environment per revision with real uv: wheels built here, locked and synced without a network.

One test uses the package index; it is skipped when the index cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bisector.core.model import Attribution, Verdict
from bisector.build.run import BuildConfig
from bisector.io.env import EnvSettings, prepare_env, uv_binary
from bisector.io.envcache import EnvCache
from bisector.io.state import state_dir
from bisector.io.workspace import Workspace
from bisector.journal.read import read_events
from bisector.run.session import Handler, RunOptions, Session
from bisector.run.step import execute_step
from tests.fixtures.cli import bisector
from tests.fixtures.envrepos import (  # hermetic_uv: an autouse fixture
    env_history,
    hermetic_uv,  # noqa: F401
    needs_uv,
    pyproject,
    tinydep_wheels,
    unpacked,
)
from tests.fixtures.repos import GitRepo

pytestmark = needs_uv


class Messages(Handler):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def on_message(self, text: str) -> None:
        self.lines.append(text)


def bisect(repo: GitRepo, monkeypatch: pytest.MonkeyPatch, good: str, **opts: Any) -> tuple[Any, Messages]:
    monkeypatch.chdir(repo.path)
    handler = Messages()
    result = Session(RunOptions(repo=repo.path, bad="main", goods=[good], probe="python check.py", **opts), handler).run()
    return result, handler


def env_of_steps(result: Any) -> list[dict[str, Any]]:
    steps = [e for e in read_events(result.journal) if e["event"] == "step"]
    return [(s["build"].get("data") or {}).get("env", {}) for s in steps]


def test_env_uv_finds_the_code_culprit_across_a_dependency_bump(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    h = env_history(repo, 12, bump_at=4, culprit_at=8)
    result, handler = bisect(repo, monkeypatch, h.shas[0], env="uv")
    assert result.status == "found" and result.culprit == h.shas[8], result.message
    assert any(line.startswith("Environments: uv ") for line in handler.lines)
    envs = env_of_steps(result)
    assert envs and all(e["status"] == "ok" and e["kind"] == "uv.lock" and e["python"] for e in envs)
    assert {e["packages"]["tinydep"] for e in envs} == {"1.0", "2.0"}  # the versions each step ran with
    keys = {e["key"] for e in envs}
    assert len(keys) == 2 and sum(e["built"] for e in envs) == 2  # one resolver run per distinct lock
    # A step after one with the same key takes the unchanged copy back instead of restoring it.
    assert any(e.get("kept") for e in envs) and all(not e.get("kept") for e in envs if e["built"])
    # The culprit changed code only: no environment attribution.
    assert result.attribution is None


def test_without_env_the_bump_is_blamed(repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    h = env_history(repo, 12, bump_at=4, culprit_at=8)
    # The environment the user has today: tinydep 1.0, which the code after the bump cannot import.
    today = unpacked(repo.path / "wheels" / "tinydep-1.0-py3-none-any.whl", tmp_path / "today")
    monkeypatch.setenv("PYTHONPATH", f"{today}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result, _ = bisect(repo, monkeypatch, h.shas[0])
    assert result.status == "found" and result.culprit == h.shas[4]  # the wrong commit


def test_a_lock_only_bump_is_found_and_attributed_to_the_environment(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    h = env_history(repo, 9, bump_at=5, bump_to="1.1")
    result, handler = bisect(repo, monkeypatch, h.shas[0], env="uv")
    assert result.status == "found" and result.culprit == h.shas[5], result.message
    att = result.attribution
    assert att.culprit_is == "environment" and att.tested is False
    assert att.changed == {"environment": True, "code": False}
    assert any("Culprit is the ENVIRONMENT" in line for line in handler.lines)
    end = next(e for e in read_events(result.journal) if e["event"] == "end")
    assert end["attribution"]["culprit_is"] == "environment"


def test_a_bump_with_code_tests_the_crossing(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    h = env_history(repo, 7, bump_at=3, bump_to="1.1", bump_touches_code=True)
    result, _ = bisect(repo, monkeypatch, h.shas[0], env="uv")
    assert result.status == "found" and result.culprit == h.shas[3]
    att = result.attribution
    assert att == Attribution("environment", {"environment": True, "code": True}, tested=True,
                              crossings={"culprit_code_parent_env": Verdict.GOOD})
    end = next(e for e in read_events(result.journal) if e["event"] == "end")
    assert end["attribution"] == {"culprit_is": "environment", "changed": {"environment": True, "code": True},
                                  "tested": True, "culprit_code_parent_env": "good"}
    steps = [e for e in read_events(result.journal) if e["event"] == "step"]
    [crossing] = [s for s in steps if s["role"] == "crossing"]
    env = crossing["build"]["data"]["env"]
    assert crossing["commit"] == h.shas[3] and env["from_rev"] == h.shas[2] and env["packages"] == {"tinydep": "1.0"}


def test_environments_are_built_once_per_lock_across_searches_and_workers(
        repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    h = env_history(repo, 10, bump_at=3, culprit_at=7)
    first, _ = bisect(repo, monkeypatch, h.shas[0], env="uv")
    second, _ = bisect(repo, monkeypatch, h.shas[0], env="uv")
    built = [sum(e["built"] for e in env_of_steps(r)) for r in (first, second)]
    assert first.culprit == second.culprit == h.shas[7]
    assert built == [2, 0]  # two locks in the history; the second search builds nothing
    assert len(EnvCache.for_repo(repo.path).entries()) == 2
    # A fresh clone (its own state folder) with two workers: still one build per lock.
    clone = GitRepo(tmp_path / "clone")
    subprocess.run(["git", "clone", "-q", str(repo.path), str(clone.path)], check=True)
    third, _ = bisect(clone, monkeypatch, h.shas[0], env="uv", jobs=2)
    envs = env_of_steps(third)
    assert third.culprit == h.shas[7] and sum(e["built"] for e in envs) == len({e["key"] for e in envs}) == 2


def test_the_cli_runs_with_env_uv_and_the_cache_command_shows_and_prunes_environments(repo: GitRepo) -> None:
    h = env_history(repo, 6, bump_at=2, culprit_at=4)
    run = bisector(repo.path, "run", "--env", "uv", "--good", h.shas[0], "--bad", "main", "--probe", "python check.py")
    assert run.returncode == 0, run.stderr
    assert "Environments: uv " in run.stdout + run.stderr and h.shas[4][:10] in run.stdout
    shown = bisector(repo.path, "cache")
    assert shown.returncode == 0 and "2 environments" in shown.stdout and "uv.lock" in shown.stdout
    pruned = bisector(repo.path, "cache", "--prune")
    assert "Removed 2 environments" in pruned.stdout and EnvCache.for_repo(repo.path).entries() == []
    bad = bisector(repo.path, "run", "--env", "conda", "--good", h.shas[0], "--bad", "main")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_lock_that_cannot_be_synced_is_a_skip_with_the_resolvers_message(repo: GitRepo, tmp_path: Path) -> None:
    h = env_history(repo, 3, bump_at=1)
    broken = repo.commit({"wheels/tinydep-2.0-py3-none-any.whl": None}, "lose the wheel the lock names")
    ws = Workspace(repo.path, state_dir(repo.path) / "sessions" / "t")
    ws.open(broken)
    try:
        suite = None  # never reached: the environment fails first
        out = execute_step(ws, suite, BuildConfig(env=EnvSettings(mode="uv")), broken, 1, tmp_path / "logs")
    finally:
        ws.close()
    assert out.verdict.value == "skip" and out.build.status == "no-env" and out.observations == ()
    assert "could not be built" in out.notes[0] and "tinydep" in out.notes[0]
    env = out.build.data["env"]
    assert env["status"] == "failed" and "tinydep" in env["tail"] and env["key"]
    assert EnvCache.for_repo(repo.path).entries() == []  # a failure is not cached
    assert len(h.shas) == 3


def test_no_lock_resolves_with_the_date_of_its_inputs(repo: GitRepo, tmp_path: Path) -> None:
    tinydep_wheels(repo.path / "wheels")
    repo.commit({"requirements.txt": "tinydep\n", "check.py": "x"})
    settings = EnvSettings(mode="uv", uv_args=("--no-index", "--find-links", str(repo.path / "wheels")))
    variables, info = prepare_env(repo.path, settings, tmp_path / "logs")
    assert info["kind"] == "requirements" and info["exclude_newer"].startswith("2026-01-01")
    assert "resolved with releases up to" in info["note"]
    # The wheels were made in 2020 by date, but uv reads upload dates only from an index:
    # from a folder the newest version wins.
    assert info["packages"] == {"tinydep": "2.0"} and info["built"] is True
    assert variables["VIRTUAL_ENV"] == str(repo.path / ".venv")
    out = subprocess.run(["python", "-c", "import tinydep, sys; print(tinydep.__file__, sys.prefix)"],
                         env={**os.environ, **variables}, capture_output=True, text=True, check=True)
    assert str(repo.path / ".venv") in out.stdout
    shutil.rmtree(repo.path / ".venv")


def _index_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=3).close()
        return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _index_reachable(), reason="the package index (pypi.org) cannot be reached")
def test_a_lock_from_the_package_index(repo: GitRepo, tmp_path: Path) -> None:
    repo.write({"pyproject.toml": pyproject("six==1.16.0")})
    try:
        subprocess.run([uv_binary() or "uv", "lock", "--quiet"], cwd=repo.path, check=True, capture_output=True,
                       env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"}, timeout=120)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"uv lock against the index failed: {exc}")
    repo.commit(message="lock six")
    variables, info = prepare_env(repo.path, EnvSettings(mode="uv"), tmp_path / "logs")
    assert info["kind"] == "uv.lock" and info["packages"] == {"six": "1.16.0"}
    assert Path(variables["VIRTUAL_ENV"], "bin", "python").exists()
