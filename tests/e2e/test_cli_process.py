"""The CLI as a real process, where the process boundary is the point: SIGKILL (mid step, mid journal
write, mid round) and resume, Ctrl-C, the manual probe on a live stdin, and what start-up imports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.cli import (
    answer_questions,
    bisector_process,
    completed_runs,
    dirty_user_state,
    journal_events,
    journals,
    probe_script,
    start_bisector,
    wait_for,
)
from tests.fixtures.journals import bisector_tearing
from tests.fixtures.procs import (
    assert_no_processes_in,
    assert_no_worktrees,
    kill_leftovers,
    wait_until,
)
from tests.fixtures.repos import GitRepo, linear_history, snapshot


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
    proc = start_bisector(repo.path, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
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
    raw = journals(repo.path)[-1].read_bytes()
    assert not raw.endswith(b"\n")  # the torn line is there
    # Resume with the same command: same culprit, no completed step repeated.
    res = bisector_process(repo.path, *args)
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
    proc = start_bisector(repo.path, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(marker)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "resume" in err
    assert snapshot(repo.path) == before  # worktree removed, nothing else touched
    res = bisector_process(repo.path, "run")  # no bounds: resumes the unfinished session
    assert res.returncode == 0, res.stderr
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert snapshot(repo.path) == before


def start_and_kill_mid_round(repo: GitRepo, tmp_path: Path, args: list[str], journaled: int) -> None:
    """Start `bisector run`, wait for the hanging probe and `journaled` step events, SIGKILL bisector."""
    marker = tmp_path / "in-step"
    proc = start_bisector(repo.path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(marker.exists, "the hanging probe")
        wait_until(lambda: len([e for e in journal_events(repo.path) if e["event"] == "step"]) == journaled,
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
    # These tests count the steps of the bounds round: both bounds are probed.
    (repo.path / "bisector.toml").write_text('[search]\nbounds = "check"\n')
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
        res = bisector_process(repo.path, *args)
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
    # These tests count the steps of the bounds round: both bounds are probed.
    (repo.path / "bisector.toml").write_text('[search]\nbounds = "check"\n')
    probe = hanging_probe(tmp_path, after=2, exec_=exec_)
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"]
    try:
        start_and_kill_mid_round(repo, tmp_path, args, journaled=3)
        res = bisector_process(repo.path, *args)
        assert res.returncode == 0, res.stderr
        assert_no_processes_in(repo.path, timeout=2)
    finally:
        kill_leftovers(repo.path)


def test_manual_probe_in_a_real_run(repo: GitRepo) -> None:
    shas = linear_history(repo, 12, culprit=8)
    repo.write({"bisector.toml": '[[probes]]\ntype = "manual"\n'})
    code, out, asked = answer_questions(repo.path, ["run", "--good", shas[0], "--bad", "main"],
                                        lambda sha, _: "bad" if shas.index(sha) >= 7 else "good")
    assert code == 0, out
    assert f"{shas[7]} is the first bad commit" in out
    assert len(asked) == len(set(asked)) <= 2 + 4


def test_manual_probe_with_undo(repo: GitRepo) -> None:
    shas = linear_history(repo, 12, culprit=8)

    def answer(sha: str, n: int) -> str:
        right = "bad" if shas.index(sha) >= 7 else "good"
        wrong = "good" if right == "bad" else "bad"
        return {2: wrong, 3: "undo"}.get(n, right)  # the second search question, then undo

    code, out, asked = answer_questions(repo.path, ["run", "--good", shas[0], "--bad", "main", "--probe", "manual"], answer)
    assert code == 0, out
    assert f"{shas[7]} is the first bad commit" in out
    events = journal_events(repo.path)
    undo = [e for e in events if e["event"] == "undo"]
    assert len(undo) == 1
    undone = next(e for e in events if e["event"] == "step" and e["step"] == undo[0]["step"])
    assert undone["commit"] == asked[1]
    assert asked[3] == asked[1]  # the retracted question is asked again
    replay = bisector_process(repo.path, "replay", str(journals(repo.path)[-1]))
    assert replay.returncode == 0, replay.stdout + replay.stderr


def test_help_stays_light() -> None:
    res = subprocess.run([sys.executable, "-m", "bisector.cli", "--help"], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}, timeout=60, check=False)
    assert res.returncode == 0 and "sessions" in res.stdout and "replay" in res.stdout
    heavy = {"dvc", "torch", "numpy", "git", "yaml", "matplotlib", "tabulate"}
    imported = {line.split("|")[-1].strip().split(".")[0] for line in res.stderr.splitlines() if "|" in line}
    assert not heavy & imported


def test_help_does_not_import_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from bisector.cli.main import main\n"
        "r = CliRunner().invoke(main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "r = CliRunner().invoke(main, ['run', '--help'])\n"
        "assert 'Exit codes' in r.output, r.output\n"
        "heavy = [m for m in ('dvc', 'torch', 'numpy', 'git') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_a_plain_run_imports_only_what_it_uses(repo: GitRepo, tmp_path: Path) -> None:
    """`bisector run` (command probe, no DVC, not on a terminal) skips gitpython, rich, PyYAML,
    tomlkit, importlib.metadata and numpy.ma (together ~150 ms of every start), and psutil on
    Linux (the step marker is found through /proc)."""
    shas = linear_history(repo, 6, culprit=4)
    res = bisector_process(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe_script(tmp_path)),
                           env={**os.environ, "PYTHONPROFILEIMPORTTIME": "1"})
    assert res.returncode == 0, res.stderr
    imported = {line.split("|")[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "bisector.run.session" in imported and "numpy" in imported  # the list is the run's
    unused = {"git", "rich", "yaml", "tomlkit", "importlib.metadata", "numpy.ma", "dvc", "torch",
              *(("psutil",) if sys.platform.startswith("linux") else ())}
    assert not unused & imported, sorted(unused & imported)


def test_journal_view_does_not_import_torch_or_dvc(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 6, culprit=4)
    res = bisector_process(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe_script(tmp_path)))
    assert res.returncode == 0, res.stderr
    code = (
        "import sys\nfrom bisector.cli.main import main\n"
        "try:\n    main(['journal'])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('HEAVY', sorted(m for m in ('torch', 'dvc', 'numpy') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=repo.path, capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stdout
