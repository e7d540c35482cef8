"""`bisector run` against `git bisect run` on a DVC project with a real pipeline (prepare /
featurize / train / evaluate, params and metrics, in the shape of DVC's get-started example,
small data made locally): builds, probes and wall, cold and warm, with the data, without it
(remote unreachable) and offline.

    python scripts/bench_real.py [--commits 16] [--culprit 9] [--keep]

git's side is the script a user would write: `dvc checkout && dvc repro && check` for the
metric question, the bare check for the params question. "cold": the DVC run-cache and
bisector's build cache are empty; "warm": the same search again.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from _bench import add_keep_option, bisector_run, temp_dir

from tests.fixtures.dvcrepos import DvcRepo

PARAMS = "prepare:\n  seed: 7\nfeaturize:\n  max_features: {mf}\ntrain:\n  margin: 1\n"
PIPELINE = """\
stages:
  prepare:
    cmd: {py} src/prepare.py
    deps: [src/prepare.py, data/raw.csv]
    params: [prepare.seed]
    outs: [data/prepared.csv]
  featurize:
    cmd: {py} src/featurize.py
    deps: [src/featurize.py, data/prepared.csv]
    params: [featurize.max_features]
    outs: [data/features.csv]
  train:
    cmd: {py} src/train.py
    deps: [src/train.py, data/features.csv]
    params: [train.margin]
    outs: [model.json]
  evaluate:
    cmd: {py} src/evaluate.py
    deps: [src/evaluate.py, model.json, data/prepared.csv]
    metrics:
    - metrics.json:
        cache: false
"""
SRC = {
    "src/params.py": "import yaml\nP = yaml.safe_load(open('params.yaml'))\n",
    "src/prepare.py": "import sys; sys.path.insert(0, 'src')\nrows = [l.split(',') for l in open('data/raw.csv').read().split()]\n"
                      "rows.sort(key=lambda r: r[1])\nopen('data/prepared.csv', 'w').write('\\n'.join(','.join(r) for r in rows))\n",
    "src/featurize.py": "import sys; sys.path.insert(0, 'src'); from params import P\n"
                        "rows = open('data/prepared.csv').read().split()[:P['featurize']['max_features']]\n"
                        "open('data/features.csv', 'w').write('\\n'.join(rows))\n",
    "src/train.py": "import json, sys; sys.path.insert(0, 'src'); from params import P\n"
                    "rows = [l.split(',') for l in open('data/features.csv').read().split()]\n"
                    "ones = [float(x) for x, y in rows if y == '1']\n"
                    "t = sum(ones) / len(ones) - P['train']['margin'] if ones else 1e9\n"
                    "json.dump({'threshold': t}, open('model.json', 'w'))\n",
    "src/evaluate.py": "import json\nt = json.load(open('model.json'))['threshold']\n"
                       "rows = [l.split(',') for l in open('data/prepared.csv').read().split()]\n"
                       "acc = sum((float(x) > t) == (y == '1') for x, y in rows) / len(rows)\n"
                       "json.dump({'acc': round(acc, 4)}, open('metrics.json', 'w'))\n",
}
METRIC_CHECK = "import json, sys\nsys.exit(0 if json.load(open('metrics.json'))['acc'] >= 0.8 else 1)\n"


def raw_csv(n: int = 400) -> str:
    return "\n".join(f"{(i % 2) * 2 + (i * 37 % 10) / 10:.2f},{i % 2}" for i in range(n)) + "\n"


def build_project(base: Path, commits: int, culprit: int) -> tuple[DvcRepo, list[str]]:
    """init, then `commits` commits: code edits (a stage reruns) and docs edits; the culprit sets
    featurize.max_features from 400 to 100 (only label-0 rows left: accuracy 0.5)."""
    r = DvcRepo.create(base)
    r.dvc_init()
    py = sys.executable
    shas = [r.dvc_commit({**SRC, "dvc.yaml": PIPELINE.format(py=py), "params.yaml": PARAMS.format(mf=400)},
                         {"data/raw.csv": raw_csv()}, "init", repro=True)]
    for i in range(1, commits + 1):
        files: dict[str, str] = {"NOTES.md": f"note {i}\n"}
        if i % 3 == 0:
            files["src/train.py"] = SRC["src/train.py"] + f"# revision {i}\n"
        if i == culprit:
            files["params.yaml"] = PARAMS.format(mf=100)
        shas.append(r.dvc_commit(files, None, f"commit {i}", repro=True))
    r.push_all()
    return r, shas


def counter_script(path: Path, body: str, log: Path) -> Path:
    path.write_text(f"#!/bin/sh\necho run >> {log}\n{body}\n")
    path.chmod(0o755)
    return path


def git_bisect(r: DvcRepo, good: str, bad: str, script: Path, log: Path) -> tuple[str, int, int, float]:
    """(culprit, probes, builds, wall) of `git bisect run SCRIPT` in the checkout."""
    log.unlink(missing_ok=True)
    builds = log.with_suffix(".builds")
    builds.unlink(missing_ok=True)
    t0 = time.monotonic()
    r.git("bisect", "start", bad, good)
    out = r.git("bisect", "run", str(script))
    wall = time.monotonic() - t0
    r.git("bisect", "reset")
    r.dvc("checkout", "-q", check=False)
    culprit = next(line.split()[0] for line in out.splitlines() if "is the first bad commit" in line)
    n_builds = len(builds.read_text().splitlines()) if builds.exists() else 0
    return culprit, len(log.read_text().splitlines()), n_builds, wall


PHASES = ("checkout", "data", "build", "probe")
BREAKDOWN: list[tuple[str, float, float, dict[str, float], int]] = []  # (label, wall, in steps, phases, dvc-free steps)


def ours(r: DvcRepo, good: str, bad: str, args: list[str], env: dict[str, str], log: Path,
         label: str = "") -> tuple[str, int, int, float]:
    """(culprit, probes, builds, wall) of `bisector run` (probes: runs of the counting probe script);
    the journal's per-step timings go to BREAKDOWN."""
    log.unlink(missing_ok=True)
    run = bisector_run(r.path, ["--good", good, "--bad", bad, *args], env)
    probes = len(log.read_text().splitlines()) if log.exists() else 0
    builds = sum(1 for s in run.steps if s["build"]["status"] in ("ok", "failed", "timeout"))
    phases = {p: 0.0 for p in PHASES}
    for s in run.steps:
        for p, t in ((s["build"].get("data") or {}).get("timings") or {}).items():
            phases[p] = phases.get(p, 0.0) + t
    no_dvc = sum(1 for s in run.steps if s["build"]["status"] in ("cached", "none")
                 and (s["build"].get("data") or {}).get("checkout", "none") == "none")
    BREAKDOWN.append((label, run.wall, sum(s["duration"] for s in run.steps), phases, no_dvc))
    return str(run.end.get("culprit")), probes, builds, run.wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=16)
    ap.add_argument("--culprit", type=int, default=9)
    add_keep_option(ap)
    args = ap.parse_args()
    rows: list[tuple[str, str, tuple[str, int, int, float]]] = []
    with temp_dir("bench-real-", args.keep) as tmp:
        t0 = time.monotonic()
        r, shas = build_project(tmp / "p", args.commits, args.culprit)
        print(f"project: {args.commits + 1} commits, culprit {shas[args.culprit][:10]}, "
              f"built in {time.monotonic() - t0:.1f} s", file=sys.stderr)
        env = {**r.env, "PYTHONPATH": os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent),
                                                                    os.environ.get("PYTHONPATH", "")) if p)}
        good, bad = shas[0], shas[-1]
        log = tmp / "runs.log"
        check = tmp / "check.py"
        check.write_text(METRIC_CHECK)
        metric_probe = counter_script(tmp / "metric.sh", f"{sys.executable} {check}", log)
        git_metric = counter_script(
            tmp / "git-metric.sh",
            f"dvc checkout -q --force >/dev/null 2>&1; echo b >> {log.with_suffix('.builds')}; "
            f"dvc repro -q >/dev/null 2>&1 || exit 125\n{sys.executable} {check}", log)
        params_probe = counter_script(tmp / "params.sh", "grep -q 'max_features: 400' params.yaml", log)
        runs = r.cache / "runs"
        # 1. data available, metric probe, build = dvc repro: cold then warm.
        for temp in ("cold", "warm"):
            if temp == "cold":
                shutil.rmtree(runs, ignore_errors=True)
            rows.append(("data, metric", f"git bisect run ({temp})", git_bisect(r, good, bad, git_metric, log)))
            if temp == "cold":
                shutil.rmtree(runs, ignore_errors=True)
                subprocess.run([sys.executable, "-m", "bisector.cli", "cache", "-C", str(r.path), "--prune"],
                               env=env, capture_output=True, check=False)
            rows.append(("data, metric", f"bisector ({temp})", ours(r, good, bad, ["--probe", str(metric_probe)], env, log, f"data, metric ({temp})")))
        # 2. offline with the data in the cache: no remote asked.
        rows.append(("data, metric, --offline", "bisector (warm)",
                     ours(r, good, bad, ["--probe", str(metric_probe), "--offline"], env, log, "data, metric, --offline")))
        # 3. no data (empty cache), remote unreachable, params question.
        shutil.rmtree(r.cache)
        r.cache.mkdir()
        with open(r.path / ".dvc" / "config.local", "a") as f:
            f.write("['remote \"store\"']\n    url = http://127.0.0.1:1/store\n")
        rows.append(("no data, params", "git bisect run", git_bisect(r, good, bad, params_probe, log)))
        rows.append(("no data, params", "bisector --no-data", ours(r, good, bad, ["--probe", str(params_probe), "--no-data"], env, log, "no data, --no-data")))
        rows.append(("no data, params", "bisector --no-data --trust-bounds",
                     ours(r, good, bad, ["--probe", str(params_probe), "--no-data", "--trust-bounds"], env, log,
                          "no data, --trust-bounds")))
    print(f"{'scenario':<26} {'tool':<34} {'same':>4} {'probes':>6} {'builds':>6} {'wall s':>7}")
    for scenario, tool, (culprit, probes, builds, wall) in rows:
        same = "yes" if culprit == shas[args.culprit] else "NO"
        print(f"{scenario:<26} {tool:<34} {same:>4} {probes:>6} {builds:>6} {wall:>7.1f}")
    git_wall = {tool.split("(")[-1].rstrip(")"): w for sc, tool, (_, _, _, w) in rows
                if sc == "data, metric" and tool.startswith("git")}
    for sc, tool, (_, _, _, w) in rows:
        if sc.startswith("data, metric") and tool.startswith("bisector"):
            temp = "cold" if "cold" in tool else "warm"
            print(f"{sc} {tool}: {w / git_wall[temp]:.2f}x git's {temp} wall")
    print("\nbisector, seconds summed over the steps (journal timings); 'outside' = wall - steps:")
    print(f"{'run':<26} {'wall':>6} {'outside':>7} " + " ".join(f"{p:>8}" for p in PHASES) + "  no-dvc steps")
    for label, wall, in_steps, phases, no_dvc in BREAKDOWN:
        print(f"{label:<26} {wall:>6.2f} {wall - in_steps:>7.2f} " + " ".join(f"{phases[p]:>8.2f}" for p in PHASES)
              + f"  {no_dvc:>5}")


if __name__ == "__main__":
    main()
