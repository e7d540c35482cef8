"""Signals and leftovers (docs/security.md, "Processes"): `bisector run` as a real process.

- kill -9 at 20 seeded random points, each followed by a resume: the same culprit and the same
  journaled steps as an uninterrupted run, and nothing the killed run started (a probe's
  `setsid` daemons included) is alive once the resume has started;
- SIGINT, SIGTERM and SIGHUP mid-step: exit 130, no clone left, no process left, resumable;
- a closed stdout (`| head -1`): the run goes on to its end;
- a probe that starts a `setsid` daemon: nothing carrying the step marker outlives the run.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.fixtures.cli import BISECTOR, bisector_process, journal_events, journals, probe_script, start_bisector, wait_for
from tests.fixtures.procs import alive, assert_no_worktrees, kill_marked_leftovers, marked_processes, wait_until
from tests.fixtures.repos import GitRepo, linear_history, snapshot

# A daemon as a probe may leave one: its own session, its working directory `/` (out of the step's
# checkout, where `kill_under` looks), its pid logged.
DAEMON = "setsid sh -c 'cd / && exec sleep 300' >/dev/null 2>&1 </dev/null & echo $! >> {tmp}/daemons"


def state_of(repo: GitRepo) -> Path:
    return repo.path / ".git" / "bisector"


def daemons(tmp: Path) -> list[int]:
    f = tmp / "daemons"
    return [int(x) for x in f.read_text().split()] if f.exists() else []


def steps_of(journal: Path) -> list[tuple[str, str, str]]:
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip().endswith("}")]
    return [(e["commit"], e["role"], e["verdict"]) for e in events if e["event"] == "step"]


def events_named(journal: Path | None, *names: str) -> int:
    if journal is None or not journal.exists():
        return 0
    return sum(1 for line in journal.read_text().splitlines() if any(f'"event": "{n}"' in line or f'"event":"{n}"' in line
                                                                    for n in names))


@pytest.mark.slow
def test_kill_9_at_20_seeded_points_then_resume(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 30, culprit=19)
    probe = probe_script(tmp_path, body="sleep 0.05\n" + DAEMON.format(tmp=tmp_path))
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe)]
    before = snapshot(repo.path)
    state = state_of(repo)
    try:
        # The uninterrupted run: its culprit, its journaled steps and how long it takes.
        t0 = time.monotonic()
        res = bisector_process(repo.path, *args)
        full = time.monotonic() - t0
        assert res.returncode == 0, res.stderr
        reference = steps_of(journals(repo.path)[-1])
        assert f"{shas[18]} is the first bad commit" in res.stdout
        assert not marked_processes(state)

        rng = random.Random(20240612)
        kills, finished, pending = 0, 0, set()  # pending: pids the killed runs left, not yet checked
        seen: dict[Path, int] = {}  # journal -> its start/resume events when its last run was killed
        while kills < 20:
            known = set(journals(repo.path))
            proc = start_bisector(repo.path, *args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  start_new_session=True)
            started = time.monotonic()
            deadline = started + rng.uniform(0.4, 1.0) * full  # mostly inside the steps (start-up is ~half)
            journal = None
            while proc.poll() is None and time.monotonic() < deadline:
                journal = journal or next(iter(set(journals(repo.path)) - known), None) or _unfinished(repo)
                if pending and events_named(journal, "resume", "start") > seen.get(journal, 0):
                    # This run has started (its start or resume event is written): nothing the
                    # killed runs left is alive any more.
                    assert not [p for p in pending if alive(p)], "a killed run's process outlived the resume"
                    pending.clear()
                time.sleep(0.01)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                proc.stderr.close()
                kills += 1
                pending |= {pid for pid, _ in marked_processes(state)}
                if journal is not None:
                    seen[journal] = events_named(journal, "resume", "start")
                continue
            err = proc.stderr.read().decode()
            proc.stderr.close()
            assert proc.returncode == 0, err
            assert not [p for p in pending if alive(p)], "a killed run's process outlived the run that followed"
            pending.clear()
            finished += 1
            done = journals(repo.path)[-1]
            assert steps_of(done) == reference, "a verdict was lost or repeated"
        # The last killed session runs to its end.
        res = bisector_process(repo.path, *args)
        assert res.returncode == 0, res.stderr
        assert not [p for p in pending if alive(p)]
        assert steps_of(journals(repo.path)[-1]) == reference
        assert not marked_processes(state)
        assert not [p for p in daemons(tmp_path) if alive(p)]
        assert_no_worktrees(repo)
        assert snapshot(repo.path) == before
    finally:
        kill_marked_leftovers(state)


def _unfinished(repo: GitRepo) -> Path | None:
    files = journals(repo.path)
    return files[-1] if files and events_named(files[-1], "end") == 0 else None


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_signal_mid_step_leaves_no_clone_and_no_process(repo: GitRepo, tmp_path: Path, sig: signal.Signals) -> None:
    shas = linear_history(repo, 12, culprit=7)
    before = snapshot(repo.path)
    marker = tmp_path / "in-step"
    # The 3rd probe run starts a daemon, then hangs in the step until bisector is stopped.
    probe = probe_script(tmp_path, body=(
        f'c=$(cat {tmp_path}/count 2>/dev/null || echo 0); c=$((c+1)); echo $c > {tmp_path}/count\n'
        f'if [ "$c" -eq 3 ]; then {DAEMON.format(tmp=tmp_path)}; touch {marker}; sleep 300; fi'))
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe)]
    try:
        proc = start_bisector(repo.path, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
        wait_for(marker)
        assert marked_processes(state_of(repo))  # the hanging step and its daemon carry the marker
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "run `bisector run` again to resume" in err
        assert not marked_processes(state_of(repo))
        assert not [p for p in daemons(tmp_path) if alive(p)]
        assert_no_worktrees(repo)
        assert snapshot(repo.path) == before
        assert journal_events(repo.path)[-1]["event"] == "step"  # unfinished: no end event
        res = bisector_process(repo.path, "run")  # resumes
        assert res.returncode == 0, res.stderr
        assert "Resuming" in res.stderr
        assert f"{shas[6]} is the first bad commit" in res.stdout
    finally:
        kill_marked_leftovers(state_of(repo))


@pytest.mark.parametrize("json_out", [True, False], ids=["json", "text"])
def test_a_closed_stdout_does_not_stop_the_run(repo: GitRepo, tmp_path: Path, json_out: bool) -> None:
    shas = linear_history(repo, 20, culprit=13)
    probe = probe_script(tmp_path)
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), *(["--json"] if json_out else [])]
    cmd = " ".join(f"'{a}'" for a in [*BISECTOR, *args])
    # `head -1` exits after the first line: later writes to stdout fail with EPIPE.
    res = subprocess.run(["bash", "-c", f"{cmd} 2>{tmp_path}/err | head -1; echo \"${{PIPESTATUS[0]}}\" > {tmp_path}/rc"],
                         cwd=repo.path, capture_output=True, text=True, timeout=120)
    assert len(res.stdout.splitlines()) == 1
    err = (tmp_path / "err").read_text()
    assert (tmp_path / "rc").read_text().strip() == "0", err
    assert "Traceback" not in err and "Broken pipe" not in err, err
    end = journal_events(repo.path)[-1]
    assert end["event"] == "end" and end["culprit"] == shas[12]
    assert_no_worktrees(repo)


def test_a_probes_setsid_daemon_does_not_outlive_the_run(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 8, culprit=5)
    probe = probe_script(tmp_path, body=DAEMON.format(tmp=tmp_path))
    try:
        res = bisector_process(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe))
        assert res.returncode == 0, res.stderr
        started = daemons(tmp_path)
        assert started  # each step started one, in its own session (setsid): out of the step's group
        wait_until(lambda: not [p for p in started if alive(p)], "the daemons killed", timeout=5)
        assert not marked_processes(state_of(repo))
    finally:
        kill_marked_leftovers(state_of(repo))


def test_kill_9_during_pin_verify_then_the_next_verify_cleans_up(repo: GitRepo, tmp_path: Path) -> None:
    """A SIGKILLed `pin --verify` leaves its clone under `.git/bisector/pin-verify/<pid>-*` and
    its probe running; the next `pin --verify` removes the clone and kills the probe."""
    shas = linear_history(repo, 6, culprit=4)
    hang = tmp_path / "hang"
    hang.write_text("")
    probe = probe_script(tmp_path, body=f'if [ -e {hang} ]; then rm {hang}; echo $$ > {tmp_path}/pid; exec sleep 300; fi')
    repo.write({"bisector.toml": f'[probe]\ncommand = "{probe}"\n'})
    before = snapshot(repo.path)
    proc = start_bisector(repo.path, "pin", "first", "--rev", shas[1], "--verify",
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text().strip(), "the probe starting")
        proc.kill()
        proc.wait(10)
        left = list((state_of(repo) / "pin-verify").iterdir())
        assert left and left[0].name.startswith(f"{proc.pid}-")
        res = bisector_process(repo.path, "pin", "second", "--rev", shas[1], "--verify")
        assert res.returncode == 0, res.stderr
        assert not list((state_of(repo) / "pin-verify").iterdir())
        probe_pid = int((tmp_path / "pid").read_text())
        wait_until(lambda: not alive(probe_pid), "the orphaned probe gone", timeout=5)
        assert snapshot(repo.path) == before
    finally:
        if proc.poll() is None:
            proc.kill()
        pid_file = tmp_path / "pid"
        if pid_file.exists() and alive(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
