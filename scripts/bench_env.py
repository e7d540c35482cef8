"""Environment per revision: restoring a cached environment, and what a search with one lock pays.

    python scripts/bench_env.py [--venv PATH] [--runs N] [--keep]

1. restore: a large environment (default: the virtualenv running this script, e.g. one with
   torch, ~1 GB) is put into an environment cache (`bisector.io.envcache.EnvCache`, entry made
   by hard links, no copy) and restored into a fresh `.venv` folder N times, as each step does
   (`EnvCache.restore`: folders made, files hard-linked, bin/ scripts rewritten). Prints the
   size, the file count and the min / median / max restore time. Target: <= 1.5 s for 1 GB.
   Then what a step with the same key as the step before pays (the copy kept: set aside,
   fingerprinted, moved back), and `cp -al` of the same folder for scale. The load average is
   printed first: on a shared machine the numbers move with it.
2. one lock: a tiny project (a wheel made here, `uv.lock`, no network) gets its environment
   through `bisector.io.env.prepare_env` for 8 steps in a row, as 8 steps of a search whose
   lock never changes: the first runs `uv sync` (built), the other 7 only restore.

Needs uv (`pip install 'bisector[env]'`). Both parts use a temporary folder on the file system
of the state folder (hard links need one file system).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bisector.io.env import EnvSettings, prepare_env, uv_version
from bisector.io.envcache import EnvCache, _link_tree, _size, set_aside
from tests.fixtures.envrepos import lock, pyproject, tinydep_wheels
from tests.fixtures.repos import GitRepo


def bench_restore(venv: Path, work: Path, runs: int) -> None:
    cache = EnvCache(work / "envs")
    key = "be" * 12
    entry = cache.env_path(key)
    entry.parent.mkdir(parents=True)
    t0 = time.monotonic()
    _link_tree(str(venv), str(entry), b"\0", b"\0")  # the entry, by links (nothing to rewrite)
    (entry.parent / "meta.json").write_text("{}")
    print(f"entry made by links in {time.monotonic() - t0:.2f} s")
    files = sum(len(f) for _, _, f in os.walk(entry))
    size = _size(entry)
    times = []
    for i in range(runs):
        dest = work / f"ws{i}" / ".venv"
        dest.parent.mkdir()
        t0 = time.monotonic()
        cache.restore(key, dest)
        times.append(time.monotonic() - t0)
    print(f"restore of {venv} ({size / 1e9:.2f} GB, {files} files), {runs} runs: "
          f"min {min(times):.2f} s, median {statistics.median(times):.2f} s, max {max(times):.2f} s")
    t0 = time.monotonic()
    for i in range(runs):
        shutil.rmtree(work / f"ws{i}")
    print(f"removing one restored copy: {(time.monotonic() - t0) / runs:.2f} s")
    # The next step with the same key: the copy is set aside before the checkout's clean and
    # moved back after a fingerprint check (EnvCache.restore with `aside`), instead of being
    # removed and restored again.
    dest, aside = work / "ws" / ".venv", work / "ws-aside"
    dest.parent.mkdir()
    t0 = time.monotonic()
    cache.restore(key, dest, aside)
    first = time.monotonic() - t0
    kept = []
    for _ in range(runs):
        t0 = time.monotonic()
        set_aside(dest, aside)
        assert cache.restore(key, dest, aside), "the unchanged copy was not kept"
        kept.append(time.monotonic() - t0)
    print(f"same key as the step before: restore + fingerprint {first:.2f} s once, then kept (set aside, "
          f"fingerprint, moved back) median {statistics.median(kept):.2f} s, instead of remove + restore")
    t0 = time.monotonic()
    subprocess.run(["cp", "-al", str(entry), str(work / "cp-al")], check=True)
    print(f"`cp -al` of the same entry (for scale): {time.monotonic() - t0:.2f} s")


def bench_one_lock(work: Path, steps: int = 8) -> None:
    os.environ.setdefault("UV_CACHE_DIR", str(work / "uv-cache"))
    os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")
    os.environ.pop("VIRTUAL_ENV", None)
    repo = GitRepo.init(work / "repo")
    tinydep_wheels(repo.path / "wheels")
    repo.write({"pyproject.toml": pyproject("tinydep==1.0")})
    lock(repo.path)
    repo.commit(message="locked")
    settings = EnvSettings(mode="uv")
    rows = []
    for step in range(steps):
        t0 = time.monotonic()
        _, info = prepare_env(repo.path, settings, work / "logs" / f"step-{step}")
        rows.append((info["built"], time.monotonic() - t0, info["restore_seconds"]))
    built = [r for r in rows if r[0]]
    hits = [r for r in rows if not r[0]]
    print(f"{steps} steps with one uv.lock: {len(built)} sync(s); "
          f"first step {built[0][1]:.2f} s (sync + restore), "
          f"the others median {statistics.median(r[1] for r in hits):.3f} s (restore only)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix), help="the environment to restore")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print it")
    args = parser.parse_args()
    print(f"uv {uv_version()}, Python {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs")
    work = Path(tempfile.mkdtemp(prefix="bench-env-"))
    try:
        bench_restore(args.venv.resolve(), work / "restore", args.runs)
        bench_one_lock(work / "lock")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
