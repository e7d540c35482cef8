"""Local parallel steps (`-j K`): right culprit, untouched checkout, complete journal (kill and resume: tests/e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.cli import bisect, completed_runs, dirty_user_state, journal_events, probe_script
from tests.fixtures.procs import assert_no_worktrees
from tests.fixtures.repos import GitRepo, linear_history, snapshot


@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_finds_culprit_checkout_untouched_journal_complete(repo: GitRepo, tmp_path: Path, jobs: int) -> None:
    shas = linear_history(repo, 40, culprit=23)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe = probe_script(tmp_path)
    res = bisect(repo.path, shas[0], probe, "-j", str(jobs),
                   "--build", "echo built > built.txt")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[22]} is the first bad commit" in res.stdout
    assert snapshot(repo.path) == before
    assert_no_worktrees(repo)
    events = journal_events(repo.path)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["culprit"] == shas[22] and events[-1]["status"] == "found"
    steps = [e for e in events if e["event"] == "step"]
    # Complete: every probe run is journaled once, step numbers are 1..n, counts match the end event.
    runs = completed_runs(tmp_path)
    assert sorted(runs) == sorted(s["commit"] for s in steps)
    assert len(runs) == len(set(runs))
    assert sorted(s["step"] for s in steps) == list(range(1, len(steps) + 1))
    assert sum(events[-1]["steps"].values()) == len(steps)
    # The default bounds policy: the good bound is probed only when the culprit's parent is it.
    assert {s["role"] for s in steps} >= {"bad-bound", "search"}
    assert all(s["build"]["status"] == "ok" for s in steps)
    # Several worktrees were used at once, each with its own worker slot.
    assert len({s["worker"] for s in steps}) == jobs
    # Fewer rounds than plain bisection needs steps: at most ceil(log_{K+1} 39) + 1 search rounds.
    search = [s for s in steps if s["role"] == "search"]
    assert len(search) <= jobs * 5


def test_bad_bound_and_first_midpoint_share_the_first_round(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 40, culprit=23)
    res = bisect(repo.path, shas[0], probe_script(tmp_path), "-j", "2")
    assert res.returncode == 0, res.stderr + res.stdout
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    first = [s["role"] for s in steps if s["round"] == 1]
    assert sorted(first) == ["bad-bound", "search"]
    # Each later round is a round of the search (or the confirmation): no round of the bad bound alone.
    assert all(s["role"] != "bad-bound" for s in steps if s["round"] > 1)


def test_a_good_bad_bound_stops_after_the_shared_round(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 40, culprit=23)
    res = bisect(repo.path, shas[0], "true", "-j", "2")
    assert res.returncode == 1 and f"the bad bound {shas[-1][:10]} is good" in res.stdout
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    assert sorted((s["round"], s["role"], s["verdict"]) for s in steps) == [(1, "bad-bound", "good"), (1, "search", "good")]
