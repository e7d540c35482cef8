"""`bisector run` in process on real repositories: culprit, skips, bounds, frozen probe, merges, pathspecs."""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.cli import bisect, bisector, completed_runs, dirty_user_state, journal_events, probe_script, shell_probe
from tests.fixtures.repos import GitRepo, linear_history, snapshot


def test_finds_culprit_and_leaves_checkout_untouched(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 20, culprit=13)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe = probe_script(tmp_path)
    res = bisect(repo.path, shas[0], probe)
    assert res.returncode == 0, res.stderr
    assert f"{shas[12]} is the first bad commit" in res.stdout
    assert "commit 13" in res.stdout
    assert "step 3:" in res.stderr and "candidates left" in res.stderr
    assert snapshot(repo.path) == before
    # Every commit probed at most once.
    runs = completed_runs(tmp_path)
    assert len(runs) == len(set(runs))
    events = journal_events(repo.path)
    assert events[0]["event"] == "start" and events[-1]["event"] == "end"
    assert events[-1]["culprit"] == shas[12]
    # journal and log views
    table = bisector(repo.path, "journal")
    assert table.returncode == 0 and "first bad commit" in table.stdout and "search" in table.stdout
    log = bisector(repo.path, "log")
    assert log.returncode == 0
    assert f"# first bad commit: [{shas[12]}] commit 13" in log.stdout


def test_build_failure_is_a_skip(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 12, culprit=9)
    probe = probe_script(tmp_path)
    # The build fails on commit 6 only (the search would test it first): a skip, stepped around.
    build = "test \"$(cat n.txt)\" != 6"
    res = bisect(repo.path, shas[0], probe, "--build", build)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[8]} is the first bad commit" in res.stdout
    events = journal_events(repo.path)
    skipped = [e for e in events if e["event"] == "step" and e["verdict"] == "skip"]
    assert [e["commit"] for e in skipped] == [shas[5]]
    assert skipped[0]["build"]["status"] == "failed"


def test_ambiguous_when_skips_hide_the_culprit(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 10, culprit=6)
    probe = shell_probe(tmp_path, 'n=$(cat n.txt)\n[ "$n" -eq 5 ] && exit 125\ngrep -q broken state.txt && exit 1\nexit 0\n')
    res = bisect(repo.path, shas[0], probe)
    assert res.returncode == 1, res.stderr
    assert "could not be told apart" in res.stdout
    assert shas[4][:10] in res.stdout and shas[5][:10] in res.stdout


def test_bounds_are_verified(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    probe = probe_script(tmp_path)
    res = bisect(repo.path, shas[5], probe)
    assert res.returncode == 1
    assert f"Cannot bisect: the good bound {shas[5][:10]} is bad (command: exit 1): pick an older good revision" in res.stdout
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[2], "--probe", str(probe))
    assert res.returncode == 1
    assert f"the bad bound {shas[2][:10]} is good" in res.stdout


def test_probe_abort_shows_log_tail(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    probe = shell_probe(tmp_path, 'echo "cannot reach the GPU"\n[ "$(cat n.txt)" -eq 4 ] && exit 200\ngrep -q broken state.txt && exit 1\nexit 0\n')
    res = bisect(repo.path, shas[0], probe)
    assert res.returncode == 1
    assert "the probe aborted" in res.stderr + res.stdout
    assert "cannot reach the GPU" in res.stderr + res.stdout


def test_probe_script_is_frozen_from_the_current_checkout(repo: GitRepo, tmp_path: Path) -> None:
    # The probe lives in the repo and changes over history: today's version must judge every commit.
    shas = []
    for i in range(1, 11):
        check = "#!/bin/sh\ngrep -q broken state.txt && exit 1\nexit 0\n" if i >= 10 else "#!/bin/sh\nexit 0\n"
        shas.append(repo.commit({"state.txt": "broken\n" if i >= 7 else "ok\n", "check.sh": check}, f"commit {i}"))
        (repo.path / "check.sh").chmod(0o755)
    repo.git("update-index", "--chmod=+x", "check.sh")
    repo.commit({}, "make check executable")
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", "./check.sh")
    assert res.returncode == 0, res.stderr
    assert f"{shas[6]} is the first bad commit" in res.stdout


def test_timeout_is_a_skip(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 6, culprit=4)
    probe = shell_probe(tmp_path, '[ "$(cat n.txt)" -eq 3 ] && sleep 30\ngrep -q broken state.txt && exit 1\nexit 0\n')
    res = bisect(repo.path, shas[0], probe, "--timeout", "1")
    events = journal_events(repo.path)
    timed = [e for e in events if e["event"] == "step" and e["observations"] and e["observations"][0]["evidence"]["timed_out"]]
    assert timed and timed[0]["verdict"] == "skip"
    assert res.returncode == 1  # commit 3 untestable: 3 or 4
    assert "could not be told apart" in res.stdout


def test_merges_and_first_parent(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.commit({"state.txt": "ok\n", "n.txt": "0\n"}, "base")
    repo.git("checkout", "-q", "-b", "feature")
    repo.commit({"feature.txt": "1\n"}, "feature 1")
    f2 = repo.commit({"feature.txt": "2\n", "state.txt": "broken\n"}, "feature 2 breaks it")
    repo.git("checkout", "-q", "main")
    repo.commit({"main.txt": "1\n"}, "main 1")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = repo.rev("HEAD")
    repo.commit({"main.txt": "2\n"}, "main 2")
    probe = probe_script(tmp_path)
    res = bisect(repo.path, base, probe)
    assert res.returncode == 0, res.stderr
    assert f"{f2} is the first bad commit" in res.stdout
    res = bisect(repo.path, base, probe, "--first-parent")
    assert res.returncode == 0, res.stderr
    assert f"{merge} is the first bad commit" in res.stdout


def test_pathspec_limits_candidates(repo: GitRepo, tmp_path: Path) -> None:
    good = repo.commit({"state.txt": "ok\n", "src/a.py": "1\n"}, "start")
    for i in range(6):
        repo.commit({"docs.txt": f"{i}\n"}, f"docs {i}")
    culprit = repo.commit({"src/a.py": "2\n", "state.txt": "broken\n"}, "src change")
    for i in range(6):
        repo.commit({"docs.txt": f"x{i}\n"}, f"docs x{i}")
    probe = probe_script(tmp_path)
    res = bisect(repo.path, good, probe, "--", "src/")
    assert res.returncode == 0, res.stderr
    assert f"{culprit} is the first bad commit" in res.stdout
    assert "Bisecting 2 commits" in res.stderr


def test_good_on_a_side_branch_checks_the_merge_base(repo: GitRepo, tmp_path: Path) -> None:
    repo.commit({"state.txt": "ok\n"}, "base")
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit({"side.txt": "1\n"}, "side work")
    repo.git("checkout", "-q", "main")
    shas = [repo.commit({"n.txt": f"{i}\n", "state.txt": "broken\n" if i >= 3 else "ok\n"}, f"main {i}") for i in range(6)]
    probe = probe_script(tmp_path)
    res = bisect(repo.path, side, probe)
    assert res.returncode == 0, res.stderr
    assert f"{shas[3]} is the first bad commit" in res.stdout
    assert "check merge base" in res.stderr
