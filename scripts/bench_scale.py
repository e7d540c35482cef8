"""Wall time, probes and peak memory of `bisector run` vs `git bisect run` on long histories.

Builds each history with `git fast-import` (the file `bad` exists at every descendant of the
planted culprit), then runs both tools with the same trivial probe (`test ! -e bad`): one
untimed warm-up run of each, whose memory is sampled, then `--reps` timed runs of each,
interleaved and not sampled, and prints per size: probes of each, median wall of each, the
ratio, the median CPU time (user + system) of each process tree, and the peak memory of each
process tree.
Each size also prints `floor/git`: the median wall of `python -c "import numpy, click"` (the
interpreter and the two libraries every `bisector run` needs before any work, numpy being the
array library of `core`) divided by git's median wall. Where it is near 1, the 1.2x target
leaves no room for the run's own work (the walk, a checkout per step, the probes).
The noisy row runs `bisector run --noise P` with a probe that flips its verdict with
probability P and prints its per-step overhead: wall per step minus the probe's own wall.

Memory, the same method for both tools: every 5 ms the process tree is walked (psutil) and,
for each distinct address space, `/proc/PID/smaps_rollup` is read; the tree's PSS (shared pages
divided among the processes mapping them) and its RSS are summed. A child that shares its
parent's address space (between `vfork` and `exec`, as Python starts subprocesses) is the same
address space and is counted once (`kcmp(KCMP_VM)`); a `fork`ed child (as git starts its own)
shares pages copy-on-write, which PSS divides. The peak of each sum is reported. The timed runs
are not sampled: the sampler takes a core, and reading `smaps_rollup` holds the memory-map lock
of the process it reads, which slows a run whose git walk and numpy import run side by side
(`--sample-timed` samples them anyway, to compare; docs/benchmarks.md).

bisector's modules are compiled once into a bytecode cache (`PYTHONPYCACHEPREFIX` in the
temporary folder; `PYTHONDONTWRITEBYTECODE` is dropped), as an installed package has them.

    python scripts/bench_scale.py [--sizes linear:1000,linear:10000,merges:20000,linear:100000]
                                  [--reps 3] [--noise 0.1] [--noise-size 100000] [--keep DIR]
                                  [--sample-timed]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
BISECTOR = [sys.executable, "-m", "bisector.cli"]
PROBE = "test ! -e bad"
FLIP = "r=$(od -An -N2 -tu2 /dev/urandom); b=0; [ -e bad ] && b=1; [ $r -lt {cut} ] && b=$((1-b)); exit $b"


def env_for(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") and k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=str(home / ".gitconfig"), LC_ALL="C",
               PYTHONPYCACHEPREFIX=str(home.parent / "pycache"),
               PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    return env


_LIBC = ctypes.CDLL(None, use_errno=True)
_KCMP = {"x86_64": 312, "aarch64": 272}.get(os.uname().machine)


def same_address_space(a: int, b: int) -> bool:
    """Whether processes a and b share one address space (a vfork child before its exec)."""
    return _KCMP is not None and _LIBC.syscall(_KCMP, a, b, 1, 0, 0) == 0  # KCMP_VM


def rollup(pid: int) -> tuple[int, int]:
    """(PSS, RSS) of one process in bytes, from /proc/PID/smaps_rollup."""
    pss = rss = 0
    with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
        for line in f:
            if line.startswith(b"Pss:"):
                pss = int(line.split()[1]) * 1024
            elif line.startswith(b"Rss:"):
                rss = int(line.split()[1]) * 1024
    return pss, rss


def tree_memory(top: psutil.Process) -> tuple[int, int]:
    """(PSS, RSS) summed over the tree under `top`, each address space once."""
    counted: list[int] = []
    pss = rss = 0
    for p in [top, *top.children(recursive=True)]:
        try:
            if any(same_address_space(p.pid, q) for q in counted):
                continue
            ps, rs = rollup(p.pid)
        except (OSError, psutil.Error):
            continue  # gone meanwhile
        counted.append(p.pid)
        pss += ps
        rss += rs
    return pss, rss


def shape(kind: str, n: int) -> list[tuple[int, ...]]:
    """Parents by creation index: a line, or a main line with a 3-commit branch merged every 10 commits."""
    if kind == "linear":
        return [()] + [(i - 1,) for i in range(1, n)]
    parents: list[tuple[int, ...]] = [()]
    tip = 0
    while len(parents) < n - 1:
        side = tip
        for _ in range(3):
            parents.append((side,))
            side = len(parents) - 1
        for _ in range(min(6, n - 2 - len(parents))):
            parents.append((tip,))
            tip = len(parents) - 1
        parents.append((tip, side))
        tip = len(parents) - 1
    return parents


def build(path: Path, parents: list[tuple[int, ...]], culprit: int, env: dict[str, str]) -> list[str]:
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], env=env, check=True)
    bad = [False] * len(parents)
    out = []
    for i, ps in enumerate(parents):
        bad[i] = i == culprit or any(bad[p] for p in ps)
        t = 1_700_000_000 + 60 * i
        msg = f"commit {i}\n"
        out.append(f"commit refs/heads/main\nmark :{i + 1}\nauthor B <b@example.com> {t} +0000\n"
                   f"committer B <b@example.com> {t} +0000\ndata {len(msg)}\n{msg}")
        if ps:
            out.append(f"from :{ps[0] + 1}\n" + "".join(f"merge :{p + 1}\n" for p in ps[1:]))
        out.append("deleteall\nM 100644 inline README\ndata 6\nhello\n")
        if bad[i]:
            out.append("M 100644 inline bad\ndata 2\nx\n")
        out.append("\n")
    marks = path / ".git" / "marks"
    subprocess.run(["git", "-C", str(path), "fast-import", "--quiet", f"--export-marks={marks}"],
                   input="".join(out), text=True, env=env, check=True)
    by_mark = dict(line.split() for line in marks.read_text().splitlines())
    subprocess.run(["git", "-C", str(path), "checkout", "-q", "-f", "main"], env=env, check=True)
    return [by_mark[f":{i + 1}"] for i in range(len(parents))]


def cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measured(cmd: list[str], cwd: Path, env: dict[str, str], sample: bool = False
             ) -> tuple[float, tuple[float, float, float], subprocess.CompletedProcess]:
    """(wall seconds, (peak PSS MB, peak RSS MB, CPU seconds) of the process tree, result). CPU
    time (user + system, every process of the tree) moves less with the machine's load. Memory
    is sampled only with `sample` (0 otherwise): the sampler takes a core and each read of
    `smaps_rollup` holds the target's memory-map lock, which would slow the run it measures."""
    peak = [0, 0]
    done = threading.Event()
    cpu0 = cpu_of_children()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def sampler() -> None:
        try:
            top = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                pss, rss = tree_memory(top)
            except psutil.NoSuchProcess:
                break
            peak[0], peak[1] = max(peak[0], pss), max(peak[1], rss)
            done.wait(0.005)

    t = threading.Thread(target=sampler, daemon=True)
    if sample:
        t.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    done.set()
    if sample:
        t.join()
    cpu = cpu_of_children() - cpu0
    return wall, (peak[0] / 2**20, peak[1] / 2**20, cpu), subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def floor_wall(env: dict[str, str], reps: int) -> float:
    """Median wall of starting the interpreter and importing numpy and click, nothing else."""
    walls = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy, click"], env=env, check=True)
        walls.append(time.perf_counter() - t)
    return statistics.median(walls)


def git_bisect(repo: Path, good: str, bad: str, env: dict[str, str], probe: str, sample: bool = False
               ) -> tuple[float, tuple[float, float, float], str, int]:
    subprocess.run(["git", "-C", str(repo), "bisect", "reset"], env=env, capture_output=True)
    script = f"git bisect start {bad} {good} >/dev/null && git bisect run sh -c '{probe}' >/dev/null"
    wall, peak, res = measured(["sh", "-c", script], repo, env, sample)
    log = subprocess.run(["git", "-C", str(repo), "bisect", "log"], env=env, capture_output=True, text=True).stdout
    subprocess.run(["git", "-C", str(repo), "bisect", "reset"], env=env, capture_output=True)
    first = [ln for ln in log.splitlines() if ln.startswith("# first bad commit:")]
    probes = sum(ln.startswith(("# good:", "# bad:", "# skip:")) for ln in log.splitlines()) - 2  # the bounds
    return wall, peak, first[0].split("[", 1)[1][:40] if first else "?", probes


def our_bisect(repo: Path, good: str, bad: str, env: dict[str, str], probe: str, *extra: str, sample: bool = False
               ) -> tuple[float, tuple[float, float, float], str, int]:
    shutil.rmtree(repo / ".bisector", ignore_errors=True)
    wall, peak, res = measured([*BISECTOR, "run", "--good", good, "--bad", bad, "--probe", probe, *extra], repo, env, sample)
    culprit = next((ln.split()[0] for ln in res.stdout.splitlines() if ln.endswith("is the first bad commit")), "?")
    journal = sorted((repo / ".bisector" / "sessions").glob("*.jsonl"))
    steps = [json.loads(ln) for ln in journal[-1].read_text().splitlines() if ln.strip()] if journal else []
    probes = sum(1 for e in steps if e.get("event") == "step" and e.get("role") == "search")
    if res.returncode != 0 and culprit == "?":
        print(res.stderr[-2000:], file=sys.stderr)
    return wall, peak, culprit, probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="linear:1000,linear:10000,merges:20000,linear:100000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--noise", type=float, default=0.1, help="0 skips the noisy row")
    ap.add_argument("--noise-size", type=int, default=100000)
    ap.add_argument("--keep", metavar="DIR", help="build the repositories here and keep them")
    ap.add_argument("--sample-timed", action="store_true",
                    help="sample memory during the timed runs too (the old method; shows what sampling costs)")
    args = ap.parse_args()
    base = Path(args.keep or tempfile.mkdtemp(prefix="bench-scale-"))
    base.mkdir(parents=True, exist_ok=True)
    (base / "home").mkdir(exist_ok=True)
    (base / "home" / ".gitconfig").write_text("[user]\n\tname = B\n\temail = b@example.com\n")
    env = env_for(base / "home")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)", flush=True)
    subprocess.run([sys.executable, "-c", "import numpy, click"], env=env, check=True)  # warm the caches
    floor = floor_wall(env, max(5, args.reps))
    print(f"floor: python -c 'import numpy, click' takes {floor:.3f} s (median of {max(5, args.reps)})", flush=True)
    print(f"{'history':<15} {'probes git/ours':>15} {'same':>4} {'git s':>7} {'ours s':>7} {'ratio':>6} {'floor/git':>9} "
          f"{'cpu s git/ours':>15} {'PSS MB git/ours':>15} {'RSS MB git/ours':>15}", flush=True)
    try:
        for spec in args.sizes.split(","):
            kind, n = spec.split(":")
            parents = shape(kind, int(n))
            culprit = int(len(parents) * 0.37)
            repo = base / spec.replace(":", "-")
            shas = build(repo, parents, culprit, env)
            # Warm-up (page cache, bytecode), not timed: the runs whose memory is sampled.
            g_mem = git_bisect(repo, shas[0], shas[-1], env, PROBE, sample=True)
            o_mem = our_bisect(repo, shas[0], shas[-1], env, PROBE, sample=True)
            g_runs, o_runs = [], []
            for _ in range(args.reps):  # interleaved, so both see the same machine load
                g_runs.append(git_bisect(repo, shas[0], shas[-1], env, PROBE, sample=args.sample_timed))
                o_runs.append(our_bisect(repo, shas[0], shas[-1], env, PROBE, sample=args.sample_timed))
            gw, ow = statistics.median(r[0] for r in g_runs), statistics.median(r[0] for r in o_runs)
            same = all(r[2] == shas[culprit] for r in [g_mem, o_mem, *g_runs, *o_runs])
            gm, om = g_mem[1][:2], o_mem[1][:2]
            gc, oc = statistics.median(r[1][2] for r in g_runs), statistics.median(r[1][2] for r in o_runs)
            print(f"{spec:<15} {g_runs[0][3]:>7}/{o_runs[0][3]:<7} {'yes' if same else 'NO':>4} {gw:>7.2f} {ow:>7.2f} "
                  f"{ow / gw:>6.2f} {floor / gw:>9.2f} {gc:>7.2f}/{oc:<7.2f} {gm[0]:>7.0f}/{om[0]:<7.0f} {gm[1]:>7.0f}/{om[1]:<7.0f}", flush=True)
        if args.noise:
            n = args.noise_size
            parents = shape("linear", n)
            culprit = int(n * 0.37)
            repo = base / f"noisy-{n}"
            shas = build(repo, parents, culprit, env) if not repo.exists() else None
            if shas is None:
                shutil.rmtree(repo)
                shas = build(repo, parents, culprit, env)
            flip = FLIP.format(cut=int(65536 * args.noise))
            t0 = time.perf_counter()
            for _ in range(20):
                subprocess.run(["sh", "-c", flip], cwd=repo, env=env)
            probe_s = (time.perf_counter() - t0) / 20
            wall, peak, found, _ = our_bisect(repo, shas[0], shas[-1], env, flip, "--noise", str(args.noise), sample=True)
            journal = sorted((repo / ".bisector" / "sessions").glob("*.jsonl"))[-1]
            steps = sum(1 for ln in journal.read_text().splitlines() if '"event": "step"' in ln or '"event":"step"' in ln)
            print(f"noisy linear:{n} --noise {args.noise}: culprit {'right' if found == shas[culprit] else 'WRONG ' + found}, "
                  f"{steps} steps, wall {wall:.1f} s, peak PSS {peak[0]:.0f} MB (RSS {peak[1]:.0f} MB), per-step overhead "
                  f"{wall / max(1, steps) - probe_s:.3f} s (probe alone {probe_s * 1000:.0f} ms)", flush=True)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
