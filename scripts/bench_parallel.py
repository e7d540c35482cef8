"""Parallel steps: rounds and wall time of `bisector run -j K`, locally, on a local Dask cluster and on Slurm.

    python scripts/bench_parallel.py [--commits 1000] [--sleep 0.2] [--culprits 137,500,873]
                                     [--local 1,2,4] [--dask 2,4] [--slurm 2] [--noisy-trials 500]

Slurm rows (`--slurm K`) use the Slurm that `sinfo` reaches (SLURM_CONF), or with --start-slurm a
single-node one started in the scratch folder (tests/fixtures/slurm.py; Debian packages, root).

Builds a linear history of --commits commits with `git fast-import` (commit i writes n.txt = i and
state.txt = broken from the culprit on), a probe that sleeps --sleep seconds then fails on
"broken", and runs the real CLI for each K: locally (worker threads) and on a Dask cluster the
script starts on 127.0.0.1 (`dask scheduler` + `dask worker --nworkers K --nthreads 1`, engine
retries off). Rounds are counted from the journal: steps of one round start together and the
next round starts when the last one ends (start = ts - duration). The bound printed is
ceil(log_{K+1} N) + 1 search rounds. The noisy part simulates probes flipped with probability p
and counts rounds of `Search(...).next(K)` to reach 99% confidence. Public tools only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _bench import ROOT, add_keep_option, temp_dir

ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
    "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0",
}


def make_history(path: Path, n: int, culprit: int) -> None:
    """n commits on main through one `git fast-import` stream (well under a second for 1,000)."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, env=ENV)
    out = []
    for i in range(1, n + 1):
        msg = f"commit {i}\n".encode()
        out.append(b"commit refs/heads/main\nmark :%d\n" % i)
        out.append(b"committer bench <bench@example.com> %d +0000\n" % (1767225600 + 60 * i))
        out.append(b"data %d\n%s" % (len(msg), msg))
        if i > 1:
            out.append(b"from :%d\n" % (i - 1))
        n_txt = f"{i}\n".encode()
        state = b"broken\n" if i >= culprit else b"ok\n"
        out.append(b"M 100644 inline n.txt\ndata %d\n%s\n" % (len(n_txt), n_txt))
        out.append(b"M 100644 inline state.txt\ndata %d\n%s\n" % (len(state), state))
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet"], input=b"".join(out), check=True, env=ENV)
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], check=True, env=ENV)


def rev_of(repo: Path, i: int) -> str:
    """The sha of commit i (1-based) on main."""
    n = int(subprocess.run(["git", "-C", str(repo), "rev-list", "--count", "main"], capture_output=True, text=True,
                           check=True).stdout)
    return subprocess.run(["git", "-C", str(repo), "rev-parse", f"main~{n - i}"], capture_output=True, text=True,
                          check=True).stdout.strip()


def rounds_of(steps: list[dict]) -> list[list[dict]]:
    """Group journaled steps into rounds: a step joins the current round if it started before it ended."""
    rounds: list[list[dict]] = []
    end = -math.inf
    for s in sorted(steps, key=lambda s: s["step"]):
        start = s["ts"] - s["duration"]
        if rounds and start < end:
            rounds[-1].append(s)
            end = max(end, s["ts"])
        else:
            rounds.append([s])
            end = s["ts"]
    return rounds


def start_cluster(tmp: Path, workers: int) -> tuple[str, list[subprocess.Popen[bytes]]]:
    sched_file = tmp / "scheduler.json"
    log = open(tmp / "cluster.log", "wb")
    sched = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(sched_file)], stdout=log, stderr=subprocess.STDOUT, env=ENV)
    procs = [sched]
    deadline = time.monotonic() + 60
    while not (sched_file.exists() and sched_file.read_text().strip()):
        if time.monotonic() > deadline or sched.poll() is not None:
            stop_cluster(procs)
            raise SystemExit("dask scheduler did not start: see " + str(tmp / "cluster.log"))
        time.sleep(0.05)
    time.sleep(0.1)
    address = json.loads(sched_file.read_text())["address"]
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", str(workers), "--nthreads", "1",
         "--no-dashboard", "--host", "127.0.0.1", "--local-directory", str(tmp / "dask-worker")],
        stdout=log, stderr=subprocess.STDOUT, env=ENV))
    log.close()
    from distributed import Client

    with Client(address, timeout=30) as c:
        c.wait_for_workers(workers, timeout=120)
    return address, procs


def stop_cluster(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def run_one(template: Path, work: Path, good: str, culprit_sha: str, probe: Path, jobs: int,
            executor: str | None, name: str = "local") -> dict:
    repo = work / f"repo-{name}-{jobs}-{culprit_sha[:7]}"
    subprocess.run(["git", "clone", "-q", str(template), str(repo)], check=True, env=ENV)
    if name == "slurm":
        (repo / "bisector.toml").write_text('[executor]\nmemory = "500MB"\n')
    cmd = [sys.executable, "-m", "bisector.cli", "run", "--good", good, "--bad", "main", "--probe", str(probe),
           "-j", str(jobs)]
    if executor:
        cmd += ["--executor", executor]
    t0 = time.monotonic()
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, env=ENV)
    wall = time.monotonic() - t0
    journal = sorted((repo / ".bisector" / "sessions").glob("*.jsonl"))[-1]
    events = [json.loads(line) for line in journal.read_text().splitlines() if line.strip()]
    steps = [e for e in events if e["event"] == "step"]
    rounds = rounds_of(steps)
    search_rounds = [r for r in rounds if all(s["role"] == "search" for s in r)]
    end = events[-1]
    return {
        "ok": res.returncode == 0 and end.get("culprit") == culprit_sha,
        "rounds": len(rounds),
        "search_rounds": len(search_rounds),
        "steps": len(steps),
        "wall": wall,
        "candidates": events[0]["candidates"],
        "stderr": res.stderr[-2000:] if res.returncode else "",
    }


def noisy(n: int, p: float, k: int, trials: int, seed: int = 1) -> str:
    try:
        from bisector.core.search import Search
        from bisector.core.model import Verdict

        revs = [f"c{i}" for i in range(1, n + 1)]
        parents = {revs[i]: ((revs[i - 1],) if i else ()) for i in range(n - 1, -1, -1)}
        Search(parents, revs[-1], noise=p, confidence=0.99)
    except Exception as exc:  # noqa: BLE001 - the noisy search is another piece of work
        return f"noisy: not available ({type(exc).__name__}: {exc})"
    rng = random.Random(seed)
    rows = []
    for kk in sorted({1, k}):
        rounds, runs, right = [], [], 0
        for _ in range(trials):
            culprit = rng.randint(1, n)
            s = Search(parents, revs[-1], noise=p, confidence=0.99)
            s.record(revs[-1], Verdict.BAD)  # the run that showed the regression
            r = m = 0
            while (nxt := s.next(kk)) and r < 1000:
                r += 1
                for rev in nxt:
                    fail = (int(rev[1:]) >= culprit) != (rng.random() < p)
                    s.record(rev, Verdict.BAD if fail else Verdict.GOOD)
                    m += 1
            res = s.result()
            right += res.status == "found" and res.culprit == f"c{culprit}"
            rounds.append(r)
            runs.append(m)
        rows.append(f"  K={kk}: rounds mean {statistics.mean(rounds):.1f}, median {statistics.median(rounds):.0f}, "
                    f"p90 {sorted(rounds)[int(0.9 * len(rounds))]}; probe runs mean {statistics.mean(runs):.1f}; "
                    f"accuracy {right / trials:.3f} ({trials} trials)")
    return f"noisy: N={n}, symmetric flips p={p}, Search(noise={p}, confidence=0.99), next(K) per round\n" + "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=1000)
    ap.add_argument("--sleep", type=float, default=0.2)
    ap.add_argument("--culprits", default="137,500,873")
    ap.add_argument("--local", default="1,2,4")
    ap.add_argument("--dask", default="2,4")
    ap.add_argument("--slurm", default="", help="K values on Slurm, e.g. 2 (default: none)")
    ap.add_argument("--start-slurm", action="store_true", help="start a single-node Slurm for the Slurm rows")
    ap.add_argument("--noisy-trials", type=int, default=500)
    ap.add_argument("--noise", type=float, default=0.1)
    add_keep_option(ap)
    args = ap.parse_args()
    n = args.commits
    culprits = [int(c) for c in args.culprits.split(",") if c]
    local = [int(k) for k in args.local.split(",") if k]
    dask = [int(k) for k in args.dask.split(",") if k]
    slurm = [int(k) for k in args.slurm.split(",") if k]
    rows = []
    with temp_dir("bench-parallel-", args.keep) as work:
        probe = work / "probe.sh"
        probe.write_text(f"#!/bin/sh\nsleep {args.sleep}\ngrep -q broken state.txt && exit 1\nexit 0\n")
        probe.chmod(0o755)
        templates = {}
        for c in culprits:
            t0 = time.monotonic()
            templates[c] = work / f"template-{c}"
            make_history(templates[c], n, c)
            gen = time.monotonic() - t0
        print(f"history: {n} commits by git fast-import in {gen:.2f} s; probe sleeps {args.sleep} s; "
              f"culprits at {', '.join(map(str, culprits))}", flush=True)
        configs = [("local", k) for k in local] + [("dask", k) for k in dask] + [("slurm", k) for k in slurm]
        slurm_daemons = None
        if slurm and args.start_slurm:
            from tests.fixtures.slurm import Slurm, install

            why = install()
            if why:
                raise SystemExit(why)
            t0 = time.monotonic()
            slurm_daemons = Slurm(work / "slurm")
            slurm_daemons.start()
            ENV["SLURM_CONF"] = str(slurm_daemons.conf)
            print(f"single-node Slurm up in {time.monotonic() - t0:.2f} s", flush=True)
        for name, k in configs:
            procs: list = []
            url = None
            try:
                if name == "dask":
                    tmp = work / f"dask-{k}"
                    tmp.mkdir()
                    t0 = time.monotonic()
                    address, procs = start_cluster(tmp, k)
                    url = "dask://" + address.removeprefix("tcp://")
                    print(f"dask cluster with {k} workers up in {time.monotonic() - t0:.1f} s", flush=True)
                elif name == "slurm":
                    url = "slurm"
                results = []
                for c in culprits:
                    good = rev_of(templates[c], 1)
                    r = run_one(templates[c], work, good, rev_of(templates[c], c), probe, k, url, name)
                    if not r["ok"]:
                        print(f"FAILED {name} K={k} culprit {c}:\n{r['stderr']}", file=sys.stderr)
                    results.append(r)
            finally:
                stop_cluster(procs)
            cands = results[0]["candidates"]
            rows.append((
                name, k,
                "/".join(str(r["search_rounds"]) for r in results),
                "/".join(str(r["rounds"]) for r in results),
                math.ceil(math.log(cands) / math.log(k + 1) - 1e-9) + 1,
                "/".join(str(r["steps"]) for r in results),
                statistics.mean(r["wall"] for r in results),
                statistics.mean(r["wall"] / r["steps"] for r in results),
                all(r["ok"] for r in results),
            ))
            print(f"  done {name} K={k}", flush=True)
        hdr = ("executor", "K", "search rounds", "all rounds", "bound", "steps", "wall s (mean)", "wall s / step",
               "right culprit")
        from tabulate import tabulate

        print()
        print(f"N = {n} candidates per run (culprits {', '.join(map(str, culprits))}; values per culprit); "
              "bound = ceil(log_{K+1} N) + 1 search rounds; all rounds add the bounds round and a confirm round when needed")
        print(tabulate([(a, b, c, d, e, f, f"{g:.2f}", f"{x:.2f}", "yes" if h else "NO") for a, b, c, d, e, f, g, x, h in rows],
                       headers=hdr, tablefmt="github"))
        print()
        print(noisy(n, args.noise, 4, args.noisy_trials))
        if slurm_daemons is not None:
            slurm_daemons.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
