"""Probes of a whole `bisector run` (bounds, search, confirmation) vs real `git bisect run` on generated histories.

    python scripts/bench_steps.py [--sizes 210] [--culprits 40] [--shapes github,gitflow,...]
    python scripts/bench_steps.py --search-only [--sizes 200,1000]   (the Search alone, as before)

Histories are built with `git fast-import` (tests/fixtures/gitgen.py): the shapes of
tests/fixtures/histories.py and the real workflows of tests/fixtures/workflows.py (GitHub flow,
git-flow, long-lived feature branches, merges of merges and octopus merges). Commit 0 is the good
bound, the head the bad bound; for each planted culprit c the probe is `test ! -e bad/<c>`.
bisector's probes are counted from each session's journal (every step but crossings), git's from
`git bisect log` (git never probes the bounds).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _bench  # noqa: F401  (puts the repository root on sys.path)

from tests.fixtures import gitgen
from bisector.core.search import Search
from bisector.core.model import Verdict

DEFAULT_SHAPES = (*gitgen.WORKFLOWS, "octopus", "crisscross")


def spread(m: int, k: int) -> list[int]:
    """k culprit positions spread over commits 1..m-1 (every one when k >= m - 1)."""
    k = min(k, m - 1)
    return sorted({1 + (m - 2) * j // max(1, k - 1) for j in range(k)})


def whole_runs(kind: str, n: int, k: int) -> None:
    parents = gitgen.shape(kind, n)
    m = len(parents)
    culprits = spread(m, k)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        repo = gitgen.build(kind, n, culprits, Path(tmp) / "repo")
        for c in culprits:
            first, git = gitgen.git_bisect(repo, c)
            lazy = gitgen.bisector_run(repo, c)
            trust = gitgen.bisector_run(repo, c, "--trust-bounds")
            same = first == lazy["culprit"] == trust["culprit"] == repo.shas[c]
            rows.append((c, git, lazy, trust, same))
    merges = sum(len(p) > 1 for p in parents)
    octo = sum(len(p) > 2 for p in parents)
    git = [r[1] for r in rows]
    lazy = [r[2]["probes"] for r in rows]
    trust = [r[3]["probes"] for r in rows]
    search = [max(r[2].get("search", 0), r[3].get("search", 0)) for r in rows]
    over = [(x - g) for x, g in zip(lazy, git)]
    n_rows = len(rows)
    print(f"{kind:<10} {m:>7} {merges:>6} {octo:>5} {n_rows:>8} {sum(git) / n_rows:>8.2f} {sum(lazy) / n_rows:>6.2f} "
          f"{sum(trust) / n_rows:>6.2f} {max(over):>+9d} {sum(o == 1 for o in over):>7} "
          f"{max(t - g for t, g in zip(trust, git)):>+10d} {max(s - g for s, g in zip(search, git)):>+11d} "
          f"{sum(r[4] for r in rows):>5}/{n_rows:<5}", flush=True)
    bad = [(r[0], r[1], r[2]["probes"], r[3]["probes"]) for r in rows
           if r[2]["probes"] > r[1] + 1 or r[3]["probes"] != r[1] or not r[4]]
    for c, g, lz, tr in bad:
        print(f"    culprit {c}: git {g}, lazy {lz}, trust {tr}")


def search_only(kind: str, n: int, k: int) -> None:
    parents = gitgen.shape(kind, n)
    culprits = spread(len(parents), k)
    with tempfile.TemporaryDirectory() as tmp:
        repo = gitgen.build(kind, n, culprits, Path(tmp) / "repo")
        git_total = our_total = same = 0
        for c in culprits:
            g_first, g_probes = gitgen.git_bisect(repo, c)
            o_first, o_probes = gitgen.our_bisect(repo, c)
            same += g_first == o_first == repo.shas[c]
            git_total += g_probes
            our_total += o_probes
        # Timing of next() on the full candidate set (the most expensive call).
        s = Search(gitgen.candidates(repo, repo.bad, repo.good), repo.bad)
        s.record(repo.bad, Verdict.BAD)
        t0 = time.perf_counter()
        s.next()
        ms = (time.perf_counter() - t0) * 1000
    gm, om = git_total / len(culprits), our_total / len(culprits)
    merges = sum(len(p) > 1 for p in parents)
    print(f"{kind:<11} {len(parents):>7} {merges:>6} {len(culprits):>8} {gm:>8.2f} {om:>6.2f} {om / gm:>6.3f} "
          f"{same:>5}/{len(culprits):<5} {ms:>13.1f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default=None, help="history sizes (default 210; --search-only: 200,1000)")
    ap.add_argument("--culprits", type=int, default=40, help="culprit positions per history")
    ap.add_argument("--shapes", default=None)
    ap.add_argument("--search-only", action="store_true", help="our Search alone vs git (no bounds, no runs)")
    args = ap.parse_args()
    sizes = [int(x) for x in (args.sizes or ("200,1000" if args.search_only else "210")).split(",")]
    shapes = (args.shapes or ",".join(gitgen.SHAPES if args.search_only else DEFAULT_SHAPES)).split(",")
    if args.search_only:
        print(f"{'shape':<11} {'commits':>7} {'merges':>6} {'culprits':>8} {'git mean':>8} {'ours':>6} "
              f"{'ratio':>6} {'same answer':>11} {'next() max ms':>13}")
    else:
        print(f"{'shape':<10} {'commits':>7} {'merges':>6} {'octo':>5} {'culprits':>8} {'git mean':>8} {'lazy':>6} "
              f"{'trust':>6} {'lazy-git':>9} {'lazy+1':>7} {'trust-git':>10} {'search-git':>11} {'same':>11}")
    for n in sizes:
        for kind in shapes:
            (search_only if args.search_only else whole_runs)(kind, n, args.culprits)


if __name__ == "__main__":
    main()
