"""Materialization overhead per step on a large DVC-tracked dataset (default 1 GB, 200 files).

    python scripts/bench_materialize.py [--size-mb 1000] [--files 200] [--revs 8] [--keep]

Builds in a temp dir a git + DVC repository whose `data/` folder (`dvc add data`) holds
`--files` random binary files (`--size-mb` in all) plus a small `labels.csv`; the default
DVC cache (`.dvc/cache`, ext4 here: `reflink,copy` means copy) and a local remote
(`dvc push` of the last revision). `--revs` commits; from one commit to the next ONLY
`labels.csv` changes (one line appended); the commit at 2/3 appends the line "culprit".

Part A, in-process: `DvcWorkspace(repo, session).open(rev0)`, then `checkout(rev)` for each
revision in order (step 1 is the first materialization: the whole dataset is copied once).
Per step: wall time of `checkout`, split into the `git checkout` / `git clean` / `dvc ...` subprocesses
(timed by wrapping the functions bisector calls) and the rest (bisector's own Python and
git queries); bytes written, from the kernel's `write_bytes` in `/proc/self/io`, which
includes the I/O of reaped child processes (git, dvc), i.e. bytes sent to the block layer,
and `rchar` there (bytes read through read()-like calls, page cache included: a re-hash or a
copy of the data shows up as about the dataset's size);
and how many files under `data/` were (re)written (new inode or mtime, by `os.stat`).
Then, timed apart, `after_build_check(ws)` (one `dvc status`), which the session runs after
every successful non-cached build.

Part A', diagnostic: the same revisions again in the same worktree, by hand with the
public CLIs: `git checkout --force --detach REV`, `git clean -ffdq -e .dvc/config.local`
(no `-x`: ignored files, hence DVC's data, are kept), `dvc checkout --force`. This shows
what the data switch costs when the previous step's data is left in place. Its step 0 is
revision 0 in a fresh worktree, step 1 revision 0 again (nothing to change), step k revision k-1.

Part B, end to end: the real CLI, `bisector run --good REV0 --bad main --build true --probe
'! grep -q culprit data/labels.csv'` (a near-free probe that makes a real search: `--probe
true` would end at the bad-bound check). Per-step `duration` from the journal, minus the
build and probe durations recorded in the same event = materialization + bookkeeping
(the `dvc status` check after the build included).

Target (issue): at most 1 s per step, no full copy of unchanged data. The temp dir
(about 4x the dataset at the peak: workspace, cache, remote, worktree) is deleted at the end.
Uses python, git and dvc only.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from _bench import ROOT, add_keep_option, bisector_run, temp_dir

import bisector.io.data.workspace as dws
from bisector.io.data.buildcheck import after_build_check
import bisector.io.workspace as bws
from bisector.io.data.dvccli import dvc_executable

PROBE = "! grep -q culprit data/labels.csv"
TIMES: dict[str, float] = defaultdict(float)


def proc_io(key: str) -> int:
    """A counter of /proc/self/io; it includes the I/O of our reaped children (git, dvc)."""
    for line in open("/proc/self/io"):
        k, v = line.split(":")
        if k == key:
            return int(v)
    return 0


def write_bytes() -> int:
    return proc_io("write_bytes")  # bytes sent (dirtied) to the block layer: real writes


def rchar() -> int:
    return proc_io("rchar")  # bytes read by read()-like calls, page cache included: hashing shows here


def snapshot(d: Path) -> dict[str, tuple[int, int, int]]:
    out = {}
    if d.is_dir():
        for p in d.rglob("*"):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(d))] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def rewritten(before: dict, after: dict) -> tuple[int, int]:
    files = [k for k, v in after.items() if before.get(k) is None or before[k][:2] != v[:2]]
    return len(files), sum(after[k][2] for k in files)


def du(d: Path) -> int:
    return sum(p.lstat().st_blocks * 512 for p in d.rglob("*")) if d.is_dir() else 0


def timed(name_of, fn):
    def wrapper(*args, **kw):
        t0 = time.monotonic()
        try:
            return fn(*args, **kw)
        finally:
            TIMES[name_of(args)] += time.monotonic() - t0
    return wrapper


def instrument() -> None:
    """Time the subprocesses `DvcWorkspace.checkout` runs, by name (no change to bisector)."""
    bws.git = timed(lambda a: "git " + a[1], bws.git)  # Workspace.checkout: git checkout, git clean
    dws.git = timed(lambda a: "git " + a[1], dws.git)
    dws.git_ok = timed(lambda a: "git " + a[1], dws.git_ok)
    dws.run_dvc = timed(lambda a: "dvc " + a[1], dws.run_dvc)


def make_repo(base: Path, size_mb: int, n_files: int, n_revs: int, env: dict) -> tuple[Path, list[str]]:
    repo, remote = base / "repo", base / "remote"
    repo.mkdir()
    remote.mkdir()
    dvc = dvc_executable()

    def sh(*args: str, extra: dict | None = None) -> None:
        subprocess.run(args, cwd=repo, env={**env, **(extra or {})}, check=True, capture_output=True)

    sh("git", "init", "-q", "-b", "main")
    sh("git", "config", "commit.gpgsign", "false")
    sh(dvc, "init", "-q")
    sh(dvc, "remote", "add", "-d", "storage", str(remote))
    data = repo / "data"
    data.mkdir()
    per_file = size_mb * 1024 * 1024 // n_files
    for i in range(n_files):
        (data / f"shard-{i:04d}.bin").write_bytes(random.Random(i).randbytes(per_file))
    labels = "".join(f"shard-{i:04d}.bin,{i % 3}\n" for i in range(n_files))
    shas = []
    culprit = max(1, (2 * n_revs) // 3)
    for r in range(n_revs):
        labels += f"rev-{r},{'culprit' if r == culprit else 'ok'}\n"
        (data / "labels.csv").write_text(labels)
        t0 = time.monotonic()
        sh(dvc, "add", "-q", "data")
        add_s = time.monotonic() - t0
        sh("git", "add", "-A")
        stamp = f"@{1767225600 + r * 60} +0000"
        sh("git", "commit", "-q", "-m", f"labels, revision {r}", extra={"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp})
        shas.append(subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                                   text=True).stdout.strip())
        if r in (0, 1):
            print(f"  revision {r}: dvc add data {add_s:.1f} s", flush=True)
    t0 = time.monotonic()
    sh(dvc, "push", "-q")
    print(f"  dvc push {time.monotonic() - t0:.1f} s", flush=True)
    return repo, shas


def part_a(repo: Path, shas: list[str], session: Path) -> list[dict]:
    from bisector.io.data.workspace import DvcWorkspace

    instrument()
    ws = DvcWorkspace(repo, session)
    rows = []
    t0 = time.monotonic()
    w0 = write_bytes()
    ws.open(shas[0])
    open_s, open_b = time.monotonic() - t0, write_bytes() - w0
    print(f"  DvcWorkspace.open: {open_s:.2f} s, {open_b / 1e6:.1f} MB written (worktree, no data yet)")
    try:
        for i, rev in enumerate(shas):
            before = snapshot(ws.path / "data")
            TIMES.clear()
            w0, r0 = write_bytes(), rchar()
            t0 = time.monotonic()
            ws.checkout(rev)
            wall = time.monotonic() - t0
            wb, rb = write_bytes() - w0, rchar() - r0
            n, nbytes = rewritten(before, snapshot(ws.path / "data"))
            parts = dict(TIMES)
            # What the session runs next after a successful build (step.execute_step): `dvc status`.
            r1, t1 = rchar(), time.monotonic()
            modified = after_build_check(ws)
            status_s, status_r = time.monotonic() - t1, rchar() - r1
            rows.append({"step": i + 1, "rev": rev, "wall": wall, "write": wb, "read": rb, "files": n,
                         "file_bytes": nbytes, "parts": parts, "info": dict(ws.step_info), "status": status_s,
                         "status_read": status_r, "modified": modified})
        used = du(ws.path / "data")
        print(f"  worktree data/ after the last step: {used / 1e6:.0f} MB on disk")
    finally:
        ws.close()
    return rows


def part_a2(repo: Path, shas: list[str], session: Path, env: dict) -> list[dict]:
    """By hand: checkout, clean without -x, dvc checkout --force (the data is kept between steps)."""
    from bisector.io.data.workspace import DvcWorkspace

    ws = DvcWorkspace(repo, session)
    ws.open(shas[0])
    denv = {**env, **ws.env()}
    wt = ws.path
    dvc = dvc_executable()
    rows = []
    try:
        order = [shas[0], *shas]  # first: materialize once; then every revision in turn
        for i, rev in enumerate(order):
            before = snapshot(wt / "data")
            parts = {}
            w0, r0 = write_bytes(), rchar()
            t0 = time.monotonic()
            for name, argv in (("git checkout", ["git", "checkout", "-q", "--force", "--detach", rev]),
                               ("git clean", ["git", "clean", "-ffdq", "-e", ".dvc/config.local"]),
                               ("dvc checkout", [dvc, "checkout", "--force", "-q"])):
                t1 = time.monotonic()
                subprocess.run(argv, cwd=wt, env=denv, check=True, capture_output=True)
                parts[name] = time.monotonic() - t1
            wall = time.monotonic() - t0
            wb, rb = write_bytes() - w0, rchar() - r0
            n, nbytes = rewritten(before, snapshot(wt / "data"))
            rows.append({"step": i, "rev": rev, "wall": wall, "write": wb, "read": rb, "files": n,
                         "file_bytes": nbytes, "parts": parts})
    finally:
        ws.close()
    return rows


def part_b(repo: Path, shas: list[str], env: dict) -> dict:
    r = bisector_run(repo, ["--good", shas[0], "--bad", "main", "--build", "true", "--probe", PROBE], env)
    steps = []
    for e in r.steps:
        build = e.get("build", {}).get("duration") or 0.0
        probe = sum(o.get("duration") or 0.0 for o in e.get("observations", []))
        steps.append({"step": e.get("step"), "role": e.get("role"), "commit": e["commit"], "verdict": e["verdict"],
                      "duration": e["duration"], "build": build, "probe": probe,
                      "overhead": e["duration"] - build - probe, "build_status": e.get("build", {}).get("status")})
    return {"argv": r.argv, "wall": r.wall, "rc": r.rc, "steps": steps, "culprit": r.end.get("culprit")}


def mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=1000, help="dataset size (default 1000)")
    ap.add_argument("--files", type=int, default=200, help="binary files in data/ (default 200)")
    ap.add_argument("--revs", type=int, default=8, help="revisions (default 8)")
    add_keep_option(ap)
    ap.add_argument("--dir", default=None, help="parent of the temp dir (default: the system temp dir)")
    args = ap.parse_args()
    with temp_dir("bench-materialize-", args.keep, args.dir) as base:
        bench(args, base)


def bench(args: argparse.Namespace, base: Path) -> None:
    env = {
        **os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT),
        "GIT_AUTHOR_NAME": "Bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "Bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
        "DVC_SITE_CACHE_DIR": str(base / "dvc-site"),  # not /var/tmp/dvc (the user's machine-wide one)
    }
    os.environ.update({k: env[k] for k in ("DVC_NO_ANALYTICS", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL",
                                           "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL")})
    t0 = time.monotonic()
    print(f"repository: {args.files} x {args.size_mb / args.files:.1f} MB random files + labels.csv in data/ "
          f"(dvc add data), {args.revs} revisions, only labels.csv changes between them; in {base}")
    repo, shas = make_repo(base, args.size_mb, args.files, args.revs, env)
    print(f"  built in {time.monotonic() - t0:.1f} s")

    startup = []
    for _ in range(3):
        t1 = time.monotonic()
        subprocess.run([dvc_executable(), "--version"], cwd=repo, env=env, check=True, capture_output=True)
        startup.append(time.monotonic() - t1)
    print(f"  `dvc --version` (CLI start-up, no repository work): median {sorted(startup)[1]:.2f} s of 3; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    print("\nA. DvcWorkspace.checkout(rev), successive revisions (step 1 = first materialization)")
    rows = part_a(repo, shas, base / "session-a")
    keys = ["git checkout", "git clean", "dvc checkout", "dvc fetch"]
    print(f"{'step':>4} {'wall s':>7} " + " ".join(f"{k:>12}" for k in keys) + f" {'other s':>7} "
          f"{'MB written':>10} {'MB read':>7} {'files rewritten':>15} {'MB rewritten':>12} {'+ dvc status s':>14} "
          f"{'(MB read)':>9}")
    for r in rows:
        p = r["parts"]
        other = r["wall"] - sum(p.values())
        print(f"{r['step']:>4} {r['wall']:>7.2f} " + " ".join(f"{p.get(k, 0):>12.2f}" for k in keys)
              + f" {other:>7.2f} {mb(r['write']):>10} {mb(r['read']):>7} {r['files']:>15} {mb(r['file_bytes']):>12}"
              + f" {r['status']:>14.2f} {mb(r['status_read']):>9}" + (f"  modified: {r['modified']}" if r["modified"] else ""))
    later = rows[1:]
    if later:
        print(f"steps 2..{len(rows)}: mean {sum(r['wall'] for r in later) / len(later):.2f} s, "
              f"max {max(r['wall'] for r in later):.2f} s, mean {mb(sum(r['write'] for r in later) / len(later))} "
              f"MB written per step; + after_build_check (`dvc status`) mean "
              f"{sum(r['status'] for r in later) / len(later):.2f} s")

    print("\nA'. by hand in one worktree: git checkout --force, git clean -ffd (no -x), dvc checkout --force")
    rows2 = part_a2(repo, shas, base / "session-a2", env)
    keys2 = ["git checkout", "git clean", "dvc checkout"]
    print(f"{'step':>4} {'wall s':>7} " + " ".join(f"{k:>12}" for k in keys2) +
          f" {'MB written':>10} {'MB read':>7} {'files rewritten':>15} {'MB rewritten':>12}")
    for r in rows2:
        print(f"{r['step']:>4} {r['wall']:>7.2f} " + " ".join(f"{r['parts'][k]:>12.2f}" for k in keys2)
              + f" {mb(r['write']):>10} {mb(r['read']):>7} {r['files']:>15} {mb(r['file_bytes']):>12}")
    later2 = rows2[1:]
    print(f"steps 1..{len(later2)}: mean {sum(r['wall'] for r in later2) / len(later2):.2f} s, "
          f"mean {mb(sum(r['write'] for r in later2) / len(later2))} MB written per step")

    print("\nB. bisector run (real CLI), per-step duration from the journal")
    b = part_b(repo, shas, env)
    print(f"{'step':>4} {'role':<12} {'commit':<10} {'verdict':<7} {'duration':>8} {'build':>6} {'probe':>6} "
          f"{'overhead':>8}")
    for s in b["steps"]:
        print(f"{s['step']:>4} {s['role'] or '':<12} {s['commit'][:10]:<10} {s['verdict']:<7} {s['duration']:>8.2f} "
              f"{s['build']:>6.2f} {s['probe']:>6.2f} {s['overhead']:>8.2f}")
    ov = [s["overhead"] for s in b["steps"]]
    print(f"{len(ov)} steps; overhead (duration - build - probe) mean {sum(ov) / len(ov):.2f} s, "
          f"max {max(ov):.2f} s; whole run {b['wall']:.1f} s, exit {b['rc']}, culprit "
          f"{(b['culprit'] or '-')[:10]} (planted {shas[max(1, (2 * len(shas)) // 3)][:10]})")
    print(f"  load average at the end {os.getloadavg()[0]:.1f}")
    print("  command: " + shlex.join(["python", *b["argv"][1:]]).replace(str(repo), "REPO").replace(shas[0], "REV0"))


if __name__ == "__main__":
    main()
