"""Probes needed by our search vs real `git bisect run` on generated histories (python and git only).

    python scripts/bench_steps.py [--sizes 200,1000] [--culprits 40]
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="200,1000")
    ap.add_argument("--culprits", type=int, default=40, help="culprit positions per history")
    ap.add_argument("--shapes", default=",".join(gitgen.SHAPES))
    args = ap.parse_args()
    print(f"{'shape':<11} {'commits':>7} {'merges':>6} {'culprits':>8} {'git mean':>8} {'ours':>6} "
          f"{'ratio':>6} {'same answer':>11} {'next() max ms':>13}")
    for n in (int(x) for x in args.sizes.split(",")):
        for kind in args.shapes.split(","):
            parents = gitgen.shape(kind, n)
            m = len(parents)
            k = min(args.culprits, m - 1)
            culprits = sorted({1 + (m - 2) * j // max(1, k - 1) for j in range(k)})
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
                cands = gitgen.candidates(repo, repo.bad, repo.good)
                s = Search(cands, repo.bad)
                s.record(repo.bad, Verdict.BAD)
                t0 = time.perf_counter()
                s.next()
                ms = (time.perf_counter() - t0) * 1000
            gm, om = git_total / len(culprits), our_total / len(culprits)
            merges = sum(len(p) > 1 for p in parents)
            print(f"{kind:<11} {m:>7} {merges:>6} {len(culprits):>8} {gm:>8.2f} {om:>6.2f} {om / gm:>6.3f} "
                  f"{same:>5}/{len(culprits):<5} {ms:>13.1f}", flush=True)


if __name__ == "__main__":
    main()
