"""End to end: `bisector run` as a real process on real repositories."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.fixtures.cli import BISECTOR, bisector, completed_runs, dirty_user_state, journal_events, probe_script, wait_for
from tests.fixtures.journals import bisector_tearing
from tests.fixtures.repos import GitRepo, linear_history, snapshot

def test_finds_culprit_and_leaves_checkout_untouched(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 20, culprit=13)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
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
    assert table.returncode == 0 and "first bad commit" in table.stdout and "check bad" in table.stdout
    log = bisector(repo.path, "log")
    assert log.returncode == 0
    assert f"# first bad commit: [{shas[12]}] commit 13" in log.stdout


def test_build_failure_is_a_skip(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 12, culprit=9)
    probe = probe_script(tmp_path)
    # The build fails on commit 6 only (the search would test it first): a skip, stepped around.
    build = "test \"$(cat n.txt)\" != 6"
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "--build", build)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[8]} is the first bad commit" in res.stdout
    events = journal_events(repo.path)
    skipped = [e for e in events if e["event"] == "step" and e["verdict"] == "skip"]
    assert [e["commit"] for e in skipped] == [shas[5]]
    assert skipped[0]["build"]["status"] == "failed"


def test_ambiguous_when_skips_hide_the_culprit(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 10, culprit=6)
    probe = tmp_path / "p.sh"
    probe.write_text('#!/bin/sh\nn=$(cat n.txt)\n[ "$n" -eq 5 ] && exit 125\ngrep -q broken state.txt && exit 1\nexit 0\n')
    probe.chmod(0o755)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
    assert res.returncode == 1, res.stderr
    assert "could not be told apart" in res.stdout
    assert shas[4][:10] in res.stdout and shas[5][:10] in res.stdout


def test_bounds_are_verified(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[5], "--bad", "main", "--probe", str(probe))
    assert res.returncode == 1
    assert f"Cannot bisect: the good bound {shas[5][:10]} is bad (command: exit 1): pick an older good revision" in res.stdout
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", shas[2], "--probe", str(probe))
    assert res.returncode == 1
    assert f"the bad bound {shas[2][:10]} is good" in res.stdout


def test_probe_abort_shows_log_tail(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    probe = tmp_path / "p.sh"
    probe.write_text('#!/bin/sh\necho "cannot reach the GPU"\n[ "$(cat n.txt)" -eq 4 ] && exit 200\ngrep -q broken state.txt && exit 1\nexit 0\n')
    probe.chmod(0o755)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
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
    probe = tmp_path / "p.sh"
    probe.write_text('#!/bin/sh\n[ "$(cat n.txt)" -eq 3 ] && sleep 30\ngrep -q broken state.txt && exit 1\nexit 0\n')
    probe.chmod(0o755)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "--timeout", "1")
    events = journal_events(repo.path)
    timed = [e for e in events if e["event"] == "step" and e["observations"] and e["observations"][0]["evidence"]["timed_out"]]
    assert timed and timed[0]["verdict"] == "skip"
    assert res.returncode == 1  # commit 3 untestable: 3 or 4
    assert "could not be told apart" in res.stdout


def probe_hanging_on_run(tmp_path: Path, n: int) -> tuple[Path, Path]:
    """The counting probe, whose n-th run touches a marker and hangs until killed."""
    marker = tmp_path / "in-step"
    probe = probe_script(
        tmp_path,
        body=f'c=$(cat {tmp_path}/count 2>/dev/null || echo 0); c=$((c+1)); echo $c > {tmp_path}/count\n'
        f'if [ "$c" -eq {n} ]; then touch {marker}; sleep 600; fi',
    )
    return probe, marker


@pytest.mark.slow
def test_sigkill_mid_step_and_mid_journal_write_then_resume(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 40, culprit=29)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe, marker = probe_hanging_on_run(tmp_path, 4)  # the 4th probe run hangs until killed
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe)]
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    wait_for(marker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    runs_after_kill = completed_runs(tmp_path)
    assert len(runs_after_kill) == 3
    # The killed run left its worktree; the journal has 3 complete steps.
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    assert len(steps) == 3
    # Second crash: a torn journal write on the 2nd new step (half a line on disk, then SIGKILL).
    res = bisector_tearing(repo.path, 2, *args)
    assert res.returncode == -signal.SIGKILL
    raw = sorted((repo.path / ".bisector" / "sessions").glob("*.jsonl"))[-1].read_bytes()
    assert not raw.endswith(b"\n")  # the torn line is there
    # Resume with the same command: same culprit, no completed step repeated.
    res = bisector(repo.path, *args)
    assert res.returncode == 0, res.stderr
    assert f"{shas[28]} is the first bad commit" in res.stdout
    assert "Resuming" in res.stderr
    runs = completed_runs(tmp_path)
    journaled = [e["commit"] for e in journal_events(repo.path) if e["event"] == "step"]
    assert len(journaled) == len(set(journaled)), "a journaled step was run again"
    # Only the step whose journal line was torn may have run twice (its result was lost).
    repeated = {c for c in runs if runs.count(c) > 1}
    assert len(repeated) <= 1
    assert snapshot(repo.path) == before


@pytest.mark.slow
def test_ctrl_c_keeps_checkout_and_resumes(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 30, culprit=11)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe, marker = probe_hanging_on_run(tmp_path, 3)
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe)]
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resume" in err
    assert snapshot(repo.path) == before  # worktree removed, nothing else touched
    res = bisector(repo.path, "run")  # no bounds: resumes the unfinished session
    assert res.returncode == 0, res.stderr
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert snapshot(repo.path) == before


def test_merges_and_first_parent(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.commit({"state.txt": "ok\n", "n.txt": "0\n"}, "base")
    repo.git("checkout", "-q", "-b", "feature")
    f1 = repo.commit({"feature.txt": "1\n"}, "feature 1")
    f2 = repo.commit({"feature.txt": "2\n", "state.txt": "broken\n"}, "feature 2 breaks it")
    repo.git("checkout", "-q", "main")
    m1 = repo.commit({"main.txt": "1\n"}, "main 1")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = repo.rev("HEAD")
    repo.commit({"main.txt": "2\n"}, "main 2")
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", base, "--bad", "main", "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    assert f"{f2} is the first bad commit" in res.stdout
    res = bisector(repo.path, "run", "--good", base, "--bad", "main", "--probe", str(probe), "--first-parent")
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
    res = bisector(repo.path, "run", "--good", good, "--bad", "main", "--probe", str(probe), "--", "src/")
    assert res.returncode == 0, res.stderr
    assert f"{culprit} is the first bad commit" in res.stdout
    assert "Bisecting 2 commits" in res.stderr


def test_good_on_a_side_branch_checks_the_merge_base(repo: GitRepo, tmp_path: Path) -> None:
    base = repo.commit({"state.txt": "ok\n"}, "base")
    repo.git("checkout", "-q", "-b", "side")
    side = repo.commit({"side.txt": "1\n"}, "side work")
    repo.git("checkout", "-q", "main")
    shas = [repo.commit({"n.txt": f"{i}\n", "state.txt": "broken\n" if i >= 3 else "ok\n"}, f"main {i}") for i in range(6)]
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", side, "--bad", "main", "--probe", str(probe))
    assert res.returncode == 0, res.stderr
    assert f"{shas[3]} is the first bad commit" in res.stdout
    assert "check merge base" in res.stderr
