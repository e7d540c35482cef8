"""Local parallel steps (`-j K`): right culprit, untouched checkout, complete journal, crash and resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.cli import bisector, completed_runs, dirty_user_state, journal_events, probe_script
from tests.fixtures.repos import GitRepo, linear_history, snapshot

BISECTOR = [sys.executable, "-m", "bisector.cli"]













def _wait_for(cond, what: str, timeout: float = 60) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} never happened")
        time.sleep(0.05)

def processes_in(path: Path) -> list[tuple[int, str]]:
    """Live processes whose working directory is under `path` (steps run in worktrees under .git/)."""
    root = os.path.realpath(path)
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{name}/cwd").removesuffix(" (deleted)")
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + os.sep)):
            out.append((int(name), cmd))
    return out


def assert_no_processes_in(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while (left := processes_in(path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"leftover processes: {left}"


def assert_no_worktrees(repo: GitRepo) -> None:
    assert repo.git("worktree", "list", "--porcelain").count("worktree ") == 1
    sessions = repo.path / ".git" / "bisector" / "sessions"
    assert not sessions.exists() or not any(sessions.glob("**/wt"))




@pytest.mark.parametrize("jobs", [2, 3])
def test_parallel_finds_culprit_checkout_untouched_journal_complete(repo: GitRepo, tmp_path: Path, jobs: int) -> None:
    shas = linear_history(repo, 40, culprit=23)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", str(jobs),
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
    assert {s["role"] for s in steps} >= {"bad-bound", "good-bound", "search"}
    assert all(s["build"]["status"] == "ok" for s in steps)
    # Several worktrees were used at once, each with its own worker slot.
    assert len({s["worker"] for s in steps}) == jobs
    # Fewer rounds than plain bisection needs steps: at most ceil(log_{K+1} 39) + 1 search rounds.
    search = [s for s in steps if s["role"] == "search"]
    assert len(search) <= jobs * 5


def kill_leftovers(path: Path) -> None:
    """Test hygiene: never leave a hung probe behind on a shared machine."""
    for pid, _ in processes_in(path):
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except OSError:
            pass


def start_and_kill_mid_round(repo: GitRepo, tmp_path: Path, args: list[str], journaled: int) -> None:
    """Start `bisector run`, wait for the hanging probe and `journaled` step events, SIGKILL bisector."""
    marker = tmp_path / "in-step"
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait_for(marker.exists, "the hanging probe")
        _wait_for(lambda: len([e for e in journal_events(repo.path) if e["event"] == "step"]) == journaled,
                  f"{journaled} journaled steps")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def hanging_probe(tmp_path: Path, after: int, exec_: bool = True) -> Path:
    """After `after` completed runs the first probe to take the lock hangs (the others answer)."""
    return probe_script(
        tmp_path,
        body=f'if [ "$(cat {tmp_path}/runs.log 2>/dev/null | wc -l)" -ge {after} ] && mkdir {tmp_path}/hang.d 2>/dev/null; '
        f"then touch {tmp_path}/in-step; {'exec ' if exec_ else ''}sleep 600; fi",
    )


@pytest.mark.slow
def test_sigkill_mid_round_then_resume(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 60, culprit=37)
    dirty_user_state(repo)
    before = snapshot(repo.path)
    # After 4 runs (the bounds round and one search round) a probe of the next round hangs; the
    # other step of that round completes and is journaled before bisector is killed.
    probe = hanging_probe(tmp_path, after=4)
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"]
    try:
        start_and_kill_mid_round(repo, tmp_path, args, journaled=5)
        journaled_before = [e["commit"] for e in journal_events(repo.path) if e["event"] == "step"]
        assert len(journaled_before) == 5
        runs_before = len(completed_runs(tmp_path))
        assert runs_before == 5
        res = bisector(repo.path, *args)
        assert res.returncode == 0, res.stderr + res.stdout
        assert "Resuming" in res.stderr
        assert f"{shas[36]} is the first bad commit" in res.stdout
        # No journaled step ran again; the journal holds each commit once.
        rerun = completed_runs(tmp_path)[runs_before:]
        assert not set(rerun) & set(journaled_before), "a journaled step was run again"
        journaled = [e["commit"] for e in journal_events(repo.path) if e["event"] == "step"]
        assert len(journaled) == len(set(journaled))
        assert journal_events(repo.path)[-1]["culprit"] == shas[36]
        assert snapshot(repo.path) == before
        assert_no_worktrees(repo)
        # The killed run's probe (and its children) were killed when the resumed run pruned its worktree.
        assert_no_processes_in(repo.path, timeout=2)
    finally:
        kill_leftovers(repo.path)


@pytest.mark.slow
@pytest.mark.parametrize("exec_", [True, False], ids=["exec-sleep", "child-sleep"])
def test_sigkill_mid_round_then_resume_leaves_no_process(repo: GitRepo, tmp_path: Path, exec_: bool) -> None:
    # dash's `sh -c SCRIPT` forks: PDEATHSIG takes the step's group leader only, so the script and
    # its children outlive a SIGKILLed bisector until the next run prunes the stale worktree.
    shas = linear_history(repo, 12, culprit=6)
    probe = hanging_probe(tmp_path, after=2, exec_=exec_)
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"]
    try:
        start_and_kill_mid_round(repo, tmp_path, args, journaled=3)
        res = bisector(repo.path, *args)
        assert res.returncode == 0, res.stderr
        assert_no_processes_in(repo.path, timeout=2)
    finally:
        kill_leftovers(repo.path)
