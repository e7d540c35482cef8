"""Build cache: a cold `bisector run` (empty build cache) against a warm one with another probe.

    python scripts/bench_cache.py [--keep] [--no-run-cache-row]

Builds the ML demo project (`bisector.demo.ml.make_ml_demo_repo`: DVC-tracked CSVs, a torch
linear model trained by `dvc repro`, metric probe `accuracy >= 0.9` in its bisector.toml) in a
temp dir, then runs the real CLI three times on it, each a fresh session:

1. cold:  `bisector run --good FIRST --bad main` (the metric probe); the build cache
          (`<repo>/.git/bisector/cache`) is empty, so every step builds (`dvc repro` trains).
2. warm:  the same bounds with a different probe (`--probe` a command reading metrics.json):
          same (code tree, data, build command), so the build cache restores the outputs.
3. warm --no-cache (optional): the same, bisector's build cache off; DVC's own run-cache
          (filled by run 1) is all that helps. Shows what the build cache adds over DVC's.

Wall time is the whole CLI process. Builds are counted from each session's journal
(`<repo>/.bisector/sessions/*.jsonl`): `step` events by `build.status` ("ok" = built,
"cached" = restored from the build cache). Uses python, git and dvc only.
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from collections import Counter
from pathlib import Path

from _bench import ROOT, add_keep_option, bisector_run, temp_dir

from bisector.demo.ml import make_ml_demo_repo

# The warm run's probe: the same threshold as the demo's metric probe, as a command probe.
PROBE = "python -c 'import json, sys; sys.exit(json.load(open(sys.argv[1]))[sys.argv[2]] < 0.9)' metrics.json accuracy"


def quote(arg: str) -> str:
    """Shell quoting that stays readable for an argument holding single quotes only."""
    if "'" in arg and not any(c in arg for c in '"$`\\!'):
        return f'"{arg}"'
    return shlex.quote(arg)


def cache_bytes(repo: Path) -> tuple[int, int]:
    root = repo / ".git" / "bisector" / "cache"
    entries = [d for sub in root.iterdir() if sub.is_dir() and sub.name != "tmp" for d in sub.iterdir()] \
        if root.is_dir() else []
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
    return len(entries), size


def run(repo: Path, label: str, extra: list[str], env: dict[str, str]) -> dict:
    r = bisector_run(repo, ["--good", FIRST[0], "--bad", "main", *extra], env, label)
    steps = r.steps
    status = Counter(e.get("build", {}).get("status") for e in steps)
    build_s = sum(e["build"].get("duration", 0) or 0 for e in steps if e.get("build", {}).get("status") in ("ok", "cached"))
    return {
        "label": label, "wall": r.wall, "rc": r.rc, "steps": len(steps), "status": status,
        "step_s": sum(e.get("duration", 0) for e in steps), "build_s": build_s,
        "culprit": (r.end.get("culprit") or "")[:10], "argv": r.argv,
        "builds": [f"{e['build'].get('status')} {e['build'].get('duration') or 0:.1f}" for e in steps],
    }


FIRST: list[str] = []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_keep_option(ap)
    ap.add_argument("--no-run-cache-row", action="store_true", help="skip run 3 (warm, --no-cache)")
    args = ap.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT)}
    with temp_dir("bench-cache-", args.keep) as tmp:
        t0 = time.monotonic()
        repo, shas = make_ml_demo_repo(tmp)
        FIRST.append(shas[0])
        print(f"demo repo: {len(shas)} commits, built in {time.monotonic() - t0:.1f} s; "
              f"good = {shas[0][:10]} (first commit), bad = main; load average {os.getloadavg()[0]:.1f} "
              f"on {os.cpu_count()} CPUs")
        rows = [run(repo, "cold (metric probe, empty build cache)", [], env)]
        n_entries, size = cache_bytes(repo)
        print(f"build cache after cold run: {n_entries} entries, {size / 1024:.0f} KiB")
        rows.append(run(repo, "warm (command probe, build cache)", ["--probe", PROBE], env))
        if not args.no_run_cache_row:
            rows.append(run(repo, "warm --no-cache (DVC run-cache only)", ["--probe", PROBE, "--no-cache"], env))
        print()
        print(f"{'run':<40} {'wall s':>7} {'steps':>5} {'built':>5} {'cached':>6} {'other':>5} "
              f"{'sum step s':>10} {'build s':>7} {'culprit':>10}")
        for r in rows:
            st = r["status"]
            other = sum(v for k, v in st.items() if k not in ("ok", "cached"))
            print(f"{r['label']:<40} {r['wall']:>7.1f} {r['steps']:>5} {st.get('ok', 0):>5} {st.get('cached', 0):>6} "
                  f"{other:>5} {r['step_s']:>10.1f} {r['build_s']:>7.1f} {r['culprit']:>10}")
        print("\nper step, build status and build seconds (in search order):")
        for r in rows:
            print(f"  {r['label']:<40} " + ", ".join(r["builds"]))
        cold, warm = rows[0], rows[1]
        print(f"\nwarm/cold wall time: {warm['wall'] / cold['wall']:.2f} "
              f"(cold {cold['wall']:.1f} s, warm {warm['wall']:.1f} s, speed-up x{cold['wall'] / warm['wall']:.1f}); "
              f"builds {cold['status'].get('ok', 0)} -> {warm['status'].get('ok', 0)}")
        if len(rows) > 2:
            print(f"warm without the build cache (DVC run-cache only): {rows[2]['wall']:.1f} s, "
                  f"{rows[2]['status'].get('ok', 0)} builds")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")
        print("\ncommands (REPO = the demo repo):")
        for r in rows:
            print("  " + " ".join(quote(a) for a in ["python", *r["argv"][1:]]).replace(str(repo), "REPO")
                  .replace(shas[0], "FIRST"))


if __name__ == "__main__":
    main()
