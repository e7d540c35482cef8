"""The Dask executor against a real CLI cluster (scheduler + 2 workers as separate processes on loopback)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

pytest.importorskip("distributed")
psutil = pytest.importorskip("psutil")

from tests.fixtures.cli import BISECTOR, hang_once_probe, journal_events, probe_script, retried_step, run_interrupted  # noqa: E402
from tests.fixtures.cli import bisector_process as bisector  # noqa: E402  (a real process: Dask clients and workers)
from tests.fixtures.cli import wait_for as _wait_for  # noqa: E402
from tests.fixtures.repos import GitRepo, linear_history, snapshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _die_with_us() -> None:  # pragma: no cover - runs in the child
    """Cluster processes die with the test process even if pytest is killed (Linux)."""
    import ctypes

    ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Cluster:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        env = {
            **os.environ,
            # Engine retries off: a lost worker surfaces as KilledWorker, and bisector decides.
            "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
            "DVC_NO_ANALYTICS": "1",
            "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
        }
        self.env = env
        sched_file = tmp / "scheduler.json"
        self.scheduler = self._start(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(sched_file)], "scheduler.log")
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            if time.monotonic() > deadline or self.scheduler.poll() is not None:
                raise RuntimeError("dask scheduler did not start: " + (tmp / "scheduler.log").read_text())
            time.sleep(0.05)
        time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        # Two `dask worker` nannies, one single-threaded worker process each (restarted if killed).
        self.nannies = [
            self._start(
                [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--nworkers", "1", "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(tmp / f"worker-{i}"),
                 "--death-timeout", "30"], f"worker-{i}.log")
            for i in range(2)
        ]
        self.wait_for_workers(2)

    def _start(self, cmd: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.tmp / log, "wb")
        try:
            return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=self.env, preexec_fn=_die_with_us)
        finally:
            out.close()

    @property
    def url(self) -> str:
        return "dask://" + self.address.removeprefix("tcp://")

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the nannies)."""
        return [c.pid for n in self.nannies for c in psutil.Process(n.pid).children()]

    def wait_for_workers(self, n: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=30) as c:
            c.wait_for_workers(n, timeout=timeout)

    def stop(self) -> None:
        procs = [*self.nannies, self.scheduler]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        yield c
    finally:
        tree = _our_descendants()  # scheduler, nannies, workers (restarted ones too)
        c.stop()
    # No process of the cluster (nor a worker it spawned), nor any other child of ours, outlives it.
    deadline = time.monotonic() + 10
    while (left := _alive(tree) + _our_descendants()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"leftover processes: {[(p.pid, p.cmdline()) for p in left]}"


def _alive(procs: list["psutil.Process"]) -> list["psutil.Process"]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _our_descendants() -> list["psutil.Process"]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _processes_in(path: Path) -> list["psutil.Process"]:
    """Live processes whose working directory is under `path` (a probe's cwd is its worktree)."""
    root = os.path.realpath(path)
    out = []
    for p in psutil.process_iter():
        try:
            cwd = os.readlink(f"/proc/{p.pid}/cwd").removesuffix(" (deleted)")
            if cwd.startswith(root + os.sep) and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except (psutil.Error, OSError):
            pass
    return out










def _no_worktrees_left(repo: GitRepo) -> None:
    assert repo.git("worktree", "list", "--porcelain").count("worktree ") == 1
    sessions = repo.path / ".git" / "bisector" / "sessions"
    assert not sessions.exists() or not any(sessions.glob("**/wt"))


def test_dask_run_finds_culprit(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 24, culprit=15)
    before = snapshot(repo.path)
    probe = probe_script(tmp_path)
    build = f"echo built > built.txt && echo $$ >> {tmp_path}/builds.log"
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe),
                   "--executor", cluster.url, "-j", "2", "--build", build)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[14]} is the first bad commit" in res.stdout
    events = journal_events(repo.path)
    steps = [e for e in events if e["event"] == "step"]
    assert events[-1]["event"] == "end" and events[-1]["culprit"] == shas[14]
    # Both workers took steps (each in its own process, named host:pid), every build ran.
    assert len({s["worker"] for s in steps}) == 2
    assert all(s["build"]["status"] == "ok" for s in steps)
    assert len((tmp_path / "builds.log").read_text().splitlines()) == len(steps)
    journaled = [s["commit"] for s in steps]
    assert len(journaled) == len(set(journaled))
    assert snapshot(repo.path) == before
    _no_worktrees_left(repo)
    assert not _processes_in(repo.path)


def test_daemons_a_probe_left_on_a_worker_are_killed_at_the_end(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    """Steps on a worker of this machine carry the step marker (the spec's `marker`), so the
    end of the run kills a `setsid` daemon a probe left there, as it does for local steps."""
    shas = linear_history(repo, 12, culprit=8)
    daemon = f"setsid sh -c 'cd / && exec sleep 300' >/dev/null 2>&1 </dev/null & echo $! >> {tmp_path}/daemons"
    probe = probe_script(tmp_path, body=daemon)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe),
                   "--executor", cluster.url, "-j", "2")
    try:
        assert res.returncode == 0, res.stderr + res.stdout
        pids = [int(x) for x in (tmp_path / "daemons").read_text().split()]
        assert pids
        deadline = time.monotonic() + 5
        while any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids):
            assert time.monotonic() < deadline, "a daemon left by a worker's probe is alive after the run"
            time.sleep(0.05)
    finally:
        for p in [int(x) for x in (tmp_path / "daemons").read_text().split()] if (tmp_path / "daemons").exists() else []:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass


@pytest.mark.slow
def test_dask_run_on_a_dvc_repository(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory,
                                      tmp_path: Path) -> None:
    """Each step on a worker checks out its revision's DVC data (the second step on a worker too)."""
    from bisector.run import step
    from tests.fixtures.dvcrepos import template

    if not hasattr(step, "open_workspace"):
        pytest.xfail("run_step must keep each worker's opened DvcWorkspace (step.open_workspace)")

    tpl, c = template(tmp_path_factory)
    r = tpl.copy_to(tmp_path / "copy")
    before = snapshot(r.path)
    p = tmp_path / "probe.sh"
    p.write_text("#!/bin/sh\n! grep -q charlie model.txt\n")
    p.chmod(0o755)
    res = subprocess.run([*BISECTOR, "run", "--good", c["init"], "--bad", c["images"], "--probe", str(p),
                          "--executor", cluster.url, "-j", "2"],
                         cwd=r.path, capture_output=True, text=True, env=r.env, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{c['both']} is the first bad commit" in res.stdout
    assert "Culprit is the DATA" in res.stdout
    steps = [e for e in journal_events(r.path) if e["event"] == "step"]
    assert all(e["build"]["status"] in ("ok", "cached") for e in steps), steps
    by_worker: dict[str, int] = {}
    for e in steps:
        by_worker[e["worker"]] = by_worker.get(e["worker"], 0) + 1
    assert max(by_worker.values()) >= 2  # some worker ran several steps on one worktree
    assert snapshot(r.path) == before
    assert not _processes_in(r.path)


def test_dask_worker_killed_mid_step_is_retried(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 16, culprit=7)
    marker = tmp_path / "probe-pid"
    probe = hang_once_probe(tmp_path, marker)  # the bad head's first probe hangs; its retry answers
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "--executor", cluster.url, "-j", "2"]

    def kill_the_worker() -> None:
        _wait_for(marker)
        # The probe runs in its own session: kill the WORKER process that runs its step.
        workers = set(cluster.worker_pids())
        worker = next(p for p in psutil.Process(int(marker.read_text())).parents() if p.pid in workers)
        os.kill(worker.pid, signal.SIGKILL)

    code, out, err = run_interrupted(repo.path, args, kill_the_worker)
    assert code == 0, err + out
    assert f"{shas[6]} is the first bad commit" in out
    head = [retried_step(repo.path, shas[-1])]
    assert any("infrastructure failure" in n for n in head[0]["notes"]), head[0]["notes"]
    assert "KilledWorker" in " ".join(head[0]["notes"])
    _no_worktrees_left(repo)
    # The hung probe's `sleep` (orphaned when its worker died) was killed by the session's close.
    deadline = time.monotonic() + 10
    while (left := _processes_in(repo.path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [p.cmdline() for p in left]
    cluster.wait_for_workers(2)  # the nanny restarted the killed worker; the cluster is still up


def test_ctrl_c_stops_remote_steps(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 12, culprit=5)
    marker = tmp_path / "in-step"
    probe = probe_script(tmp_path, body=f'if [ "$(cat n.txt)" -eq 12 ]; then touch {marker}; sleep 600; fi')
    args = ["run", "--good", shas[0], "--bad", "main", "--probe", str(probe), "--executor", cluster.url, "-j", "2"]
    proc = subprocess.Popen([*BISECTOR, *args], cwd=repo.path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(marker)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    _no_worktrees_left(repo)
    deadline = time.monotonic() + 10
    while (left := _processes_in(repo.path)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, [p.cmdline() for p in left]
    cluster.wait_for_workers(2)  # our close() left the user's cluster running


def _spec_base(repo: GitRepo, tmp_path: Path, probe: str) -> dict:
    from bisector.build.run import BuildConfig

    return {
        "repo": str(repo.path),
        "workspace_dir": str(repo.path / ".git" / "bisector" / "sessions" / "direct" / "remote"),
        "build": BuildConfig().to_json(),
        "probe_specs": [{"type": "command", "run": probe}],
        "stop_early": True,
        "user_cwd": str(tmp_path),
        "frozen_dir": str(tmp_path / "frozen"),
        "env": {},
    }


def _request(rev: str, step: int) -> Any:
    from bisector.core.model import Point, Role, StepRequest

    return StepRequest(step, Point(rev, rev), Role.SEARCH)


def test_executor_repeats_a_probe_and_cleans_up(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    """The executor contract directly: outcomes per request, impure tasks, close removes worktrees only."""
    from bisector.run.executors.dask import DaskExecutor
    from bisector.core.model import StepResult, Verdict

    shas = linear_history(repo, 4, culprit=3)
    probe = f'echo "$BISECTOR_COMMIT $$" >> {tmp_path}/runs.log; grep -q broken state.txt && exit 1; exit 0'
    ex = DaskExecutor(cluster.address, _spec_base(repo, tmp_path, probe), jobs=2)
    ex.open(shas[-1])
    try:
        # The same revision twice (a flaky probe asked again): both really run.
        reqs = [_request(shas[1], 1), _request(shas[1], 2),
                _request(shas[2], 3)]
        got = {req.step: out for req, out in ex.run_round(reqs, tmp_path / "logs")}
        assert sorted(got) == [1, 2, 3]
        assert all(isinstance(o, StepResult) for o in got.values()), got
        assert [got[1].verdict, got[2].verdict, got[3].verdict] == [Verdict.GOOD, Verdict.GOOD, Verdict.BAD]
        runs = (tmp_path / "runs.log").read_text().splitlines()
        assert sorted(r.split()[0] for r in runs) == sorted([shas[1], shas[1], shas[2]])
        # A step that raises on the worker comes back as an exception, not a crash of the round.
        bad = [_request("0" * 40, 4)]
        [(req, out)] = list(ex.run_round(bad, tmp_path / "logs"))
        assert isinstance(out, BaseException)
        assert any((repo.path / ".git" / "bisector" / "sessions" / "direct" / "remote").glob("w*/wt"))
    finally:
        ex.close()
    _no_worktrees_left(repo)
    cluster.wait_for_workers(2)


def test_workers_without_our_filesystem_use_repo_url(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    """With `repo_url`, workers clone the remote into their cache, get the frozen probe in the spec,
    and never touch the user's repository; close() removes their session files, keeps the clone."""
    from bisector.run.executors.dask import DaskExecutor
    from bisector.core.model import Verdict

    shas = linear_history(repo, 6, culprit=4)
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(remote)], check=True)
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    body = "#!/bin/sh\ngrep -q broken state.txt && exit 1\nexit 0\n"
    script = frozen / f"{hashlib.sha256(body.encode()).hexdigest()[:12]}-probe.sh"  # content-addressed, as frozen
    script.write_text(body)
    script.chmod(0o755)
    spec = _spec_base(repo, tmp_path, str(script))
    cache = tmp_path / "worker-cache"
    spec.update(repo_url=f"file://{remote}", worker_cache=str(cache), repo=str(tmp_path / "not-on-this-worker"))
    ex = DaskExecutor(cluster.address, spec, jobs=2)
    shutil.rmtree(frozen)  # the workers must use the copy shipped in the spec
    ex.open(shas[-1])
    try:
        reqs = [_request(shas[1], 1), _request(shas[4], 2)]
        got = {req.step: out for req, out in ex.run_round(reqs, tmp_path / "logs")}
        assert got[1].verdict is Verdict.GOOD and got[2].verdict is Verdict.BAD, got
        # A commit pushed after the workers cloned is fetched on demand.
        new = repo.commit({"state.txt": "broken\n", "n.txt": "7\n"}, "commit 7")
        repo.git("push", "-q", str(remote), "main")
        [(_, out)] = list(ex.run_round([_request(new, 3)], tmp_path / "logs"))
        assert not isinstance(out, BaseException), out
        assert out.verdict is Verdict.BAD
        assert repo.git("worktree", "list", "--porcelain").count("worktree ") == 1
        assert list((cache / "sessions" / "direct" / "remote").glob("w*/wt"))
    finally:
        ex.close()
    assert not (cache / "sessions" / "direct").exists()
    assert list((cache / "repos").glob("*/.git"))


def test_run_with_repo_url_from_bisector_toml(cluster: Cluster, repo: GitRepo, tmp_path: Path) -> None:
    """`[executor] repo_url` in bisector.toml: the workers clone the remote instead of using our worktrees."""
    shas = linear_history(repo, 12, culprit=8)
    remote = tmp_path / "remote.git"
    cache = tmp_path / "worker-cache"
    repo.commit({"bisector.toml": f'[executor]\nrepo_url = "file://{remote}"\nworker_cache = "{cache}"\n'}, "config")
    subprocess.run(["git", "clone", "-q", "--bare", str(repo.path), str(remote)], check=True)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe),
                   "--executor", cluster.url, "-j", "2")
    assert res.returncode == 0, res.stderr + res.stdout
    assert f"{shas[7]} is the first bad commit" in res.stdout
    assert list((cache / "repos").glob("*/.git"))  # the workers' clone of the remote
    _no_worktrees_left(repo)


def test_refuses_multithreaded_workers(repo: GitRepo, tmp_path: Path) -> None:
    from distributed import LocalCluster

    from bisector.core.errors import UsageError
    from bisector.run.executors.dask import DaskExecutor

    shas = linear_history(repo, 2, culprit=2)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0",
                      protocol="tcp", host="127.0.0.1") as lc:
        ex = DaskExecutor(lc.scheduler_address, _spec_base(repo, tmp_path, "true"), jobs=1)
        try:
            with pytest.raises(UsageError, match="runs 2 threads.*--nthreads 1"):
                ex.open(shas[-1])
        finally:
            ex.close()


def test_unreachable_scheduler_is_a_usage_error(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 4, culprit=3)
    probe = probe_script(tmp_path)
    res = bisector(repo.path, "run", "--good", shas[0], "--bad", "main", "--probe", str(probe),
                   "--executor", "dask://127.0.0.1:1", timeout=120,
                   env={"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"})
    assert res.returncode == 2, res.stderr
    assert "Error: cannot reach the Dask scheduler at tcp://127.0.0.1:1" in res.stderr


def test_without_the_dask_extra(repo: GitRepo, tmp_path: Path) -> None:
    shas = linear_history(repo, 4, culprit=3)
    probe = probe_script(tmp_path)
    script = (
        "import sys; sys.modules['distributed'] = None\n"
        "from bisector.cli.main import main\n"
        f"main(['run', '--good', {shas[0]!r}, '--bad', 'main', '--probe', {str(probe)!r}, "
        "'--executor', 'dask://127.0.0.1:1'])\n"
    )
    res = subprocess.run([sys.executable, "-c", script], cwd=repo.path, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == (
        "Error: the dask executor needs the dask extra: pip install 'bisector[dask]'"
    )
    assert len([line for line in res.stderr.splitlines() if line.startswith("Error:")]) == 1
