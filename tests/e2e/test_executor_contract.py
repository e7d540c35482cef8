"""One contract, three executors: local threads, a Dask cluster and Slurm run the same scenarios
and must agree on the culprit, the steps (revision, role, verdict) and the journal's shape."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cli import bisector, journal_events, probe_script
from tests.fixtures.repos import GitRepo, linear_history

EXECUTORS = ["local", "dask", "slurm"]
CONFIG = '[executor]\nmemory = "500MB"\n'  # only the slurm executor reads it


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("distributed")
    pytest.importorskip("psutil")
    from tests.e2e.test_dask import Cluster

    c = Cluster(tmp_path_factory.mktemp("dask-contract"))
    try:
        yield c
    finally:
        c.stop()


def _executor_args(name: str, request: pytest.FixtureRequest) -> list[str]:
    if name == "local":
        return []
    if name == "dask":
        return ["--executor", request.getfixturevalue("dask_cluster").url]
    pytest.importorskip("dask_jobqueue")
    request.getfixturevalue("slurm_cluster")
    return ["--executor", "slurm"]


def _linear(repo: GitRepo, tmp_path: Path) -> tuple[list[str], Path, str]:
    shas = linear_history(repo, 20, culprit=13)
    return shas, probe_script(tmp_path), f"{shas[12]} is the first bad commit"


def _skipped_neighbour(repo: GitRepo, tmp_path: Path) -> tuple[list[str], Path, str]:
    """The commit before the culprit cannot be tested (exit 125): the culprit is one of two."""
    shas = linear_history(repo, 12, culprit=8)
    probe = probe_script(tmp_path, body='[ "$(cat n.txt)" -eq 7 ] && exit 125')
    return shas, probe, "could not be told apart"


SCENARIOS: dict[str, Callable[[GitRepo, Path], tuple[list[str], Path, str]]] = {
    "linear": _linear, "skipped-neighbour": _skipped_neighbour,
}
_seen: dict[str, dict[str, Any]] = {}  # scenario -> what the first executor found


def _shape(events: list[dict[str, Any]]) -> dict[str, Any]:
    steps = [e for e in events if e["event"] == "step"]
    end = events[-1]
    return {
        "events": [e["event"] for e in events if e["event"] != "step"],
        "step_keys": sorted({k for s in steps for k in s}),
        "steps": sorted((s["commit"], s["role"], s["verdict"]) for s in steps),
        "end": {k: end.get(k) for k in ("status", "culprit", "candidates", "steps")},
    }


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("executor", EXECUTORS)
def test_executors_agree(executor: str, scenario: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    args = _executor_args(executor, request)
    repo = GitRepo.init(tmp_path / "repo")
    shas, probe, expected = SCENARIOS[scenario](repo, tmp_path)
    repo.write({"bisector.toml": CONFIG})
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2", *args)
    assert res.returncode in (0, 1), res.stderr + res.stdout
    assert expected in res.stdout, res.stdout
    events = journal_events(repo.path)
    shape = _shape(events)
    # Revisions differ per repository only by hash; compare them by their place in the history.
    place = {sha: i for i, sha in enumerate(shas)}
    shape["steps"] = sorted((place.get(c, c), r, v) for c, r, v in shape["steps"])
    shape["end"]["culprit"] = place.get(shape["end"]["culprit"], shape["end"]["culprit"])
    shape["end"]["candidates"] = sorted(place.get(c, c) for c in shape["end"]["candidates"] or [])
    workers = {e["worker"] for e in events if e["event"] == "step"}
    prefix = {"local": "local-", "slurm": "slurm:"}.get(executor)
    if prefix:
        assert all(w.startswith(prefix) for w in workers), workers
    first = _seen.setdefault(scenario, {**shape, "executor": executor})
    assert {**shape, "executor": first["executor"]} == first, f"{executor} differs from {first['executor']}"
