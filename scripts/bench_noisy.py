"""Noisy search vs plain bisection and repeat-k voting on simulated linear histories.

    python scripts/bench_noisy.py [--trials 2000] [--sizes 100,1000] [--procs 2]

Each trial plants a culprit uniformly among N commits (c1..cN; the good bound c0 is outside),
starts from one observed failure at the bad head, and answers each probe run at revision i with
"bad" iff i >= culprit, flipped with probability p (symmetric) or, for one-sided flakes, a good
revision fails with probability f (a bad one always fails). Runs count every probe run the method
makes after that first failure, confirmation included. "no culprit" trials: every revision is good
and the head's first failure was noise; success = status "no_culprit".
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bisector.core.search import NoiseModel, Search  # noqa: E402
from bisector.core.model import Verdict  # noqa: E402
from tests.fixtures import histories  # noqa: E402

MAX_RUNS = 3000  # a trial that has not stopped by then counts as wrong, with these runs


SHAPE = "linear"
_HISTORIES: dict = {}


def history(n: int) -> tuple[dict[str, tuple[str, ...]], str, list[int]]:
    """(candidates newest first, head, ancestor bitsets) for c1..cN; c0 (the good bound) is outside.

    Linear by default; `--shape` takes a DAG shape from tests/fixtures/histories.py (its root is the good bound).
    """
    key = (SHAPE, n)
    if key not in _HISTORIES:
        ps = histories.linear(n + 1) if SHAPE == "linear" else histories.shape(SHAPE, n + 1)
        parents = histories.as_candidates(ps, prefix="c", root=False)
        _HISTORIES[key] = (parents, f"c{len(ps) - 1}", histories.ancestors(ps))
    return _HISTORIES[key]


def probe(rng: random.Random, bad: bool, kind: str, rate: float) -> bool:
    """One run: True if it fails."""
    if kind == "flaky":
        return True if bad else rng.random() < rate
    return bad != (rng.random() < rate)


def trial_ours(n: int, kind: str, rate: float, culprit: int | None, learn: bool, seed: int) -> tuple[bool, int]:
    rng = random.Random(seed)
    parents, head, anc = history(n)
    if learn:
        noise = NoiseModel.flaky(0.1) if kind == "flaky" else None
        s = Search(parents, head, noise=noise, learn_noise=True)
    else:
        noise = NoiseModel.flaky(rate) if kind == "flaky" else NoiseModel.symmetric(rate)
        s = Search(parents, head, noise=noise)
    s.record(head, Verdict.BAD)
    runs = 0
    while runs < MAX_RUNS and (nxt := s.next()):
        i = int(nxt[0][1:])
        fail = probe(rng, culprit is not None and histories.is_bad(anc, i, culprit), kind, rate)
        s.record(nxt[0], Verdict.BAD if fail else Verdict.GOOD)
        runs += 1
    res = s.result()
    if culprit is None:
        return res.status == "no_culprit", runs
    return res.status == "found" and res.culprit == f"c{culprit}", runs


def trial_repeat(n: int, kind: str, rate: float, culprit: int, k: int, seed: int) -> tuple[bool, int]:
    """Plain bisection where each step votes over up to k runs (k = 1: plain bisection).

    Symmetric noise: majority of k, stopping as soon as one side has a majority.
    Flakes ("deflake-k"): a pass is final; a revision is bad after k failures.
    """
    rng = random.Random(seed)
    lo, hi = 0, n  # culprit in (lo, hi]
    runs = 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        bad = mid >= culprit
        if kind == "flaky":
            fails = 0
            while fails < k:
                runs += 1
                if not probe(rng, bad, kind, rate):
                    break
                fails += 1
            verdict_bad = fails == k
        else:
            need = k // 2 + 1
            fails = passes = 0
            while fails < need and passes < need:
                runs += 1
                if probe(rng, bad, kind, rate):
                    fails += 1
                else:
                    passes += 1
            verdict_bad = fails == need
        if verdict_bad:
            hi = mid
        else:
            lo = mid
    return hi == culprit, runs


def trial_parallel(n: int, rate: float, workers: int, seed: int) -> tuple[bool, int, int]:
    """k workers per round at posterior quantiles (symmetric noise known): (right, rounds, runs)."""
    rng = random.Random(seed)
    parents, head, anc = history(n)
    culprit = random.Random(seed * 7919 + 1).randint(1, int(head[1:]))
    s = Search(parents, head, noise=rate)
    s.record(head, Verdict.BAD)
    rounds = runs = 0
    while runs < MAX_RUNS and (nxt := s.next(workers)):
        rounds += 1
        for rev in nxt:
            fail = probe(rng, histories.is_bad(anc, int(rev[1:]), culprit), "sym", rate)
            s.record(rev, Verdict.BAD if fail else Verdict.GOOD)
            runs += 1
    return s.result().culprit == f"c{culprit}", rounds, runs


def run_parallel(task: tuple) -> list[tuple[bool, int, int]]:
    global SHAPE
    n, rate, workers, seeds, SHAPE = task
    return [trial_parallel(n, rate, workers, seed) for seed in seeds]


def run_chunk(task: tuple) -> list[tuple[bool, int]]:
    global SHAPE
    method, n, kind, rate, k, seeds, no_culprit, SHAPE = task
    out = []
    last = int(history(n)[1][1:])
    for seed in seeds:
        culprit = None if no_culprit else random.Random(seed * 7919 + 1).randint(1, last)
        if method == "repeat":
            out.append(trial_repeat(n, kind, rate, culprit, k, seed))
        else:
            out.append(trial_ours(n, kind, rate, culprit, method == "learned", seed))
    return out


SEED_OFFSET = 0


def measure(pool: Pool, method: str, n: int, kind: str, rate: float, trials: int, k: int = 1,
            no_culprit: bool = False, procs: int = 2) -> tuple[float, float, int]:
    seeds = list(range(SEED_OFFSET, SEED_OFFSET + trials))
    chunks = [seeds[i::procs * 4] for i in range(procs * 4)]
    results = [r for part in pool.map(run_chunk, [(method, n, kind, rate, k, c, no_culprit, SHAPE) for c in chunks])
               for r in part]
    acc = sum(ok for ok, _ in results) / len(results)
    runs = sorted(r for _, r in results)
    return acc, sum(runs) / len(runs), runs[min(len(runs) - 1, math.ceil(0.95 * len(runs)) - 1)]


def tune_repeat(pool: Pool, n: int, kind: str, rate: float, trials: int, procs: int) -> tuple[int, tuple]:
    """Smallest k (odd for voting) whose accuracy reaches 99%."""
    k = 1
    while True:
        stats = measure(pool, "repeat", n, kind, rate, trials, k=k, procs=procs)
        if stats[0] >= 0.99 or k >= 61:
            return k, stats
        k += 1 if kind == "flaky" else 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--sizes", default="100,1000")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cells", default="sym:0.05,sym:0.1,sym:0.2,sym:0.3,flaky:0.1,flaky:0.3")
    ap.add_argument("--no-baselines", action="store_true")
    ap.add_argument("--parallel", type=int, default=500, help="trials of the 4-worker run (0: skip)")
    ap.add_argument("--only-parallel", action="store_true")
    ap.add_argument("--skip-no-culprit", action="store_true")
    ap.add_argument("--seed-offset", type=int, default=0, help="use seeds offset.. offset+trials-1")
    ap.add_argument("--shape", default="linear", help="linear, or a DAG shape of tests/fixtures/histories.py (no baselines)")
    args = ap.parse_args()
    global SHAPE, SEED_OFFSET
    SHAPE, SEED_OFFSET = args.shape, args.seed_offset
    if SHAPE != "linear":
        args.no_baselines = True  # the baselines here bisect a line
    cells = [(c.split(":")[0], float(c.split(":")[1])) for c in args.cells.split(",") if c]
    t0 = time.time()
    print(f"shape: {SHAPE}; trials per cell: {args.trials} (seeds from {SEED_OFFSET}); "
          "accuracy / mean runs / p95 runs")
    hdr = f"{'N':>5} {'noise':<22} | {'ours, known':^19} | {'ours, learned':^19}"
    if not args.no_baselines:
        hdr += f" | {'plain bisection':^19} | {'repeat-k (k)':^24}"
    print(hdr)
    with Pool(args.procs) as pool:
        for n in ([] if args.only_parallel else [int(x) for x in args.sizes.split(",")]):
            for kind, rate in cells:
                name = f"{'p' if kind == 'sym' else 'flaky f'}={rate}"
                kind = "flaky" if kind == "flaky" else "sym"
                row = f"{n:>5} {name:<22}"
                for method in ("known", "learned"):
                    a, m, p95 = measure(pool, method, n, kind, rate, args.trials, procs=args.procs)
                    row += f" | {a:6.1%} {m:6.1f} {p95:5d}"
                if not args.no_baselines:
                    a, m, p95 = measure(pool, "repeat", n, kind, rate, args.trials, k=1, procs=args.procs)
                    row += f" | {a:6.1%} {m:6.1f} {p95:5d}"
                    k, (a, m, p95) = tune_repeat(pool, n, kind, rate, args.trials, args.procs)
                    row += f" | {a:6.1%} {m:6.1f} {p95:5d} ({k:2d})"
                print(row, flush=True)
            for kind, rate in () if args.skip_no_culprit else (("sym", 0.1), ("sym", 0.3), ("flaky", 0.1)):
                name = f"{'p' if kind == 'sym' else 'flaky f'}={rate}"
                row = f"{n:>5} {'no culprit, ' + name:<22}"
                for method in ("known", "learned"):
                    a, m, p95 = measure(pool, method, n, kind, rate, args.trials, no_culprit=True, procs=args.procs)
                    row += f" | {a:6.1%} {m:6.1f} {p95:5d}"
                print(row + "   (accuracy = status no_culprit)", flush=True)
        if args.parallel:
            n, seeds = max(int(x) for x in args.sizes.split(",")), list(range(args.parallel))
            res = [r for part in pool.map(run_parallel, [(n, 0.1, 4, seeds[i::8], SHAPE) for i in range(8)])
                   for r in part]
            print(f"parallel, 4 workers, N={n}, p=0.1, {len(res)} trials: accuracy "
                  f"{sum(r[0] for r in res) / len(res):.1%}, mean rounds {sum(r[1] for r in res) / len(res):.2f}, "
                  f"mean runs {sum(r[2] for r in res) / len(res):.1f}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
