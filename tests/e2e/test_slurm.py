"""The Slurm executor against a real single-node Slurm (see tests/fixtures/slurm.py).

Each test checks what Slurm itself says afterwards: `squeue` lists none of the session's jobs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("dask_jobqueue")

from tests.fixtures.cli import (
    journals,
    BISECTOR,
    bisector,
    hang_once_probe,
    journal_events,
    probe_script,
    retried_step,
    run_interrupted,
    wait_for,
)
from tests.fixtures.repos import GitRepo, linear_history
from tests.fixtures.slurm import Slurm

CONFIG = '[executor]\nkind = "slurm"\nmemory = "500MB"\n'
WORKER = re.compile(r"^slurm:(\d+)@")


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo.init(tmp_path / "repo")


def _history(repo: GitRepo, n: int, culprit: int, config: str = CONFIG) -> list[str]:
    shas = linear_history(repo, n, culprit)
    repo.write({"bisector.toml": config})  # read from the working copy, frozen into the journal
    return shas


def _session_jobs(slurm: Slurm, repo: GitRepo) -> list[str]:
    """Ids of the jobs of the repo's latest session that Slurm still queues or runs."""
    if not journals(repo.path):  # the executor failed before the journal was written: any of ours
        others = slurm.jobs("blocker")
        return [j for j in slurm.jobs() if j not in others]
    session = journal_events(repo.path)[0]["session"]
    return list(slurm.jobs(f"bisector-{session}"))


def _no_jobs_left(slurm: Slurm, repo: GitRepo) -> None:
    deadline = time.monotonic() + 20
    while (left := _session_jobs(slurm, repo)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"jobs of the session still in squeue: {left}"
    assert not list((repo.path / ".git" / "bisector" / "slurm-jobs").glob("*.txt"))


def test_slurm_run_finds_culprit_and_journals_jobs(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    shas = _history(repo, 16, culprit=11)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe),
                   "--executor", "slurm", "-j", "2")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[10]} is the first bad commit" in res.stdout
    assert re.search(r"Slurm: 2 running \(\d+, \d+\)", res.stdout + res.stderr)
    steps = [e for e in journal_events(repo.path) if e["event"] == "step"]
    jobs = {WORKER.match(s["worker"]).group(1) for s in steps if WORKER.match(s["worker"])}
    assert len(jobs) == 2 and all(WORKER.match(s["worker"]) for s in steps), [s["worker"] for s in steps]
    _no_jobs_left(slurm_cluster, repo)


def test_failure_cancels_the_jobs(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    """A probe that aborts the search (exit 200) ends the run with an error; the jobs go with it."""
    shas = _history(repo, 8, culprit=5)
    probe = probe_script(tmp_path, body="exit 200")
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2")
    assert res.returncode != 0 and "abort" in (res.stdout + res.stderr).lower(), res.stderr + res.stdout
    _no_jobs_left(slurm_cluster, repo)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_signals_cancel_the_jobs(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path, sig: int) -> None:
    shas = _history(repo, 8, culprit=5)
    marker = tmp_path / "in-step"
    probe = probe_script(tmp_path, body=f'if [ "$(cat n.txt)" -eq 8 ]; then touch {marker}; sleep 600; fi')
    proc = subprocess.Popen([*BISECTOR, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"],
                            cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker)
        assert _session_jobs(slurm_cluster, repo)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _no_jobs_left(slurm_cluster, repo)


def test_kill_9_then_the_next_start_cancels_the_jobs(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    shas = _history(repo, 8, culprit=5)
    marker = tmp_path / "in-step"
    probe = probe_script(tmp_path, body=f'if [ "$(cat n.txt)" -eq 5 ] && [ ! -e {marker} ]; then touch {marker}; sleep 600; fi')
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"]
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(marker)
        orphans = _session_jobs(slurm_cluster, repo)
        assert orphans
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    recorded = (repo.path / ".git" / "bisector" / "slurm-jobs").glob("*.txt")
    assert set(orphans) <= {line for f in recorded for line in f.read_text().split()}
    assert slurm_cluster.jobs().keys() & set(orphans)  # still queued or running: nobody cancelled them
    res = bisector(repo.path, *args)  # resumes the session; first cancels the orphans
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[4]} is the first bad commit" in res.stdout
    assert not slurm_cluster.wait_no_jobs(orphans)
    _no_jobs_left(slurm_cluster, repo)


def test_scancel_mid_step_is_retried_once(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    shas = _history(repo, 16, culprit=7)
    marker = tmp_path / "job-id"
    # The bad head's first probe writes its Slurm job id and hangs; its retry answers.
    probe = hang_once_probe(tmp_path, marker, write="$SLURM_JOB_ID")
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "-j", "2"]

    def cancel_the_job() -> None:
        wait_for(marker)
        subprocess.run(["scancel", marker.read_text().strip()], check=True)

    code, out, err = run_interrupted(repo.path, args, cancel_the_job)
    assert code == 0, err + out
    assert f"{shas[6]} is the first bad commit" in out
    job = marker.read_text().strip()
    head = [retried_step(repo.path, shas[-1])]
    assert f"Slurm job {job} CANCELLED" in " ".join(head[0]["notes"]), head[0]["notes"]
    assert not head[0]["worker"].startswith(f"slurm:{job}@")  # the retry ran in another job
    _no_jobs_left(slurm_cluster, repo)


def _node_up(slurm: Slurm, timeout: float = 30) -> None:
    """Wait until the node takes jobs again (the tests after this one need it)."""
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=slurm.env)
        if res.stdout.strip() in ("idle", "mix", "alloc"):
            return
        assert time.monotonic() < deadline, f"the Slurm node is {res.stdout.strip()!r}, not back up"
        time.sleep(0.2)


def test_a_node_failure_mid_step_is_retried_once(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    # --no-requeue: a job on a failed node ends (NODE_FAIL) instead of being queued again by Slurm.
    config = CONFIG + 'job_extra_directives = ["--no-requeue"]\n'
    shas = _history(repo, 8, culprit=5, config=config)
    marker = tmp_path / "job-id"
    probe = probe_script(
        tmp_path,
        body=f'if [ "$(cat n.txt)" -eq 5 ] && [ ! -e {marker} ]; then echo $SLURM_JOB_ID > {marker}.tmp; '
        f'mv {marker}.tmp {marker}; sleep 600; fi',
    )
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe)]
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    node = ["scontrol", "update", f"NodeName={slurm_cluster.node}"]
    try:
        wait_for(marker)
        job = marker.read_text().strip()
        subprocess.run([*node, "State=DOWN", "Reason=bisector-test"], check=True, env=slurm_cluster.env)
        deadline = time.monotonic() + 30
        while job in slurm_cluster.jobs():
            assert time.monotonic() < deadline, slurm_cluster.jobs()
            time.sleep(0.2)
        # RESUME is refused when the node already came back (ReturnToService=2 and a live slurmd).
        subprocess.run([*node, "State=RESUME"], capture_output=True, env=slurm_cluster.env)
        out, err = proc.communicate(timeout=180)
    finally:
        subprocess.run([*node, "State=RESUME"], capture_output=True, env=slurm_cluster.env)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        _node_up(slurm_cluster)
    assert proc.returncode == 0, err + out
    assert f"{shas[4]} is the first bad commit" in out
    # The culprit is always probed (the bad bound is not, when a bad candidate implies it).
    head = [e for e in journal_events(repo.path) if e["event"] == "step" and e["commit"] == shas[4]]
    assert len(head) == 1 and head[0]["verdict"] == "bad"
    notes = " ".join(head[0]["notes"])
    assert f"Slurm job {job} " in notes and "retried once" in notes, notes
    assert not head[0]["worker"].startswith(f"slurm:{job}@")
    _no_jobs_left(slurm_cluster, repo)


def test_a_job_slurm_cannot_run_is_one_error_line(slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    shas = _history(repo, 4, culprit=3, config='[executor]\nkind = "slurm"\nmemory = "900GB"\n')
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe_script(tmp_path)))
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert errors == [line for line in res.stderr.splitlines() if line.strip()], res.stderr
    assert errors[0].startswith("Error: Slurm refuses the worker job: ")


def test_a_job_that_waits_past_queue_timeout_is_one_error_line_and_cancelled(
        slurm_cluster: Slurm, repo: GitRepo, tmp_path: Path) -> None:
    # A busy cluster: another user's job holds the whole node, so bisector's job stays PENDING.
    blocker = subprocess.run(["sbatch", "--parsable", "--exclusive", "--mem=100M", "-J", "blocker",
                              "-o", "/dev/null", "--wrap", "sleep 300"],
                             capture_output=True, text=True, env=slurm_cluster.env, check=True).stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while slurm_cluster.jobs("blocker").get(blocker) != "RUNNING":
            assert time.monotonic() < deadline, f"the blocker does not run: {slurm_cluster.jobs()}"
            time.sleep(0.2)
        config = '[executor]\nkind = "slurm"\nmemory = "500MB"\nqueue_timeout = 4\n'
        shas = _history(repo, 4, culprit=3, config=config)
        t0 = time.monotonic()
        res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe_script(tmp_path)))
        took = time.monotonic() - t0
        assert res.returncode == 2, res.stderr
        errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
        line = errors[0]
        assert line.startswith("Error: no Slurm job started within queue_timeout = 4 s: job "), line
        assert "PENDING" in line and "check partition, account, qos, cores, memory and gpus" in line
        assert took < 60, took  # the limit, not Dask's or Slurm's own timeouts
        _no_jobs_left(slurm_cluster, repo)  # the pending job was cancelled on the way out
        assert slurm_cluster.jobs("blocker").get(blocker) == "RUNNING"  # another user's job: untouched
    finally:
        subprocess.run(["scancel", blocker], capture_output=True, env=slurm_cluster.env)
        slurm_cluster.wait_no_jobs([blocker])


def test_bad_executor_keys_are_usage_errors(repo: GitRepo, tmp_path: Path) -> None:
    from bisector.core.errors import UsageError
    from bisector.run.executors.slurm_jobs import SlurmOptions

    assert SlurmOptions.from_table({"gpus": 2, "qos": "high"}).directives() == ["--qos=high", "--gres=gpu:2"]
    for bad in ({"cores": "4"}, {"cores": 0}, {"job_extra_directives": "--x"}, {"queue_timeout": -1}):
        with pytest.raises(UsageError, match=r"\[executor\]"):
            SlurmOptions.from_table(bad)


def test_without_the_slurm_extra(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 4, culprit=3)
    script = (
        "import sys; sys.modules['dask_jobqueue'] = None\n"
        "from bisector.cli.main import main\n"
        f"main(['run', '--good', {shas[0]!r}, '--bad', 'main', '--probe', {str(probe_script(tmp_path))!r}, "
        "'--executor', 'slurm'])\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=repo.path, capture_output=True, text=True, timeout=120,
                         env={**os.environ})
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == "Error: the slurm executor needs the slurm extra: pip install 'bisector[slurm]'"
