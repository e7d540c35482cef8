"""The pure search: a posterior over which candidate is the first bad commit; `next()` asks, `record()` tells.

Model: the culprit c is the first bad commit, a revision X is bad iff c is an ancestor-or-self of X;
or there is no culprit at all (key None: every revision is good and the failure was noise). Each
observation multiplies the weight of every hypothesis by its likelihood; a deterministic probe has
likelihoods 1 and 0, which we keep as bitsets of dead suspects, so the zero-noise case stays exact
and reproduces `git bisect` choice for choice. Imports nothing but the standard library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from bisector.core.dag import Dag as _Dag
from bisector.core.errors import ContradictionError, UsageError
from bisector.core.model import Verdict

_NEG_INF = float("-inf")
_GRID = 12  # points of the grid on which an unknown noise rate is learned
_MAX_RATE = 0.45  # a symmetric flip rate above this makes the probe useless


@dataclass(frozen=True)
class Counts:
    """`k_bad` of `n` runs of the probe failed at one revision (binomial observation)."""

    k_bad: int
    n: int

    def __post_init__(self) -> None:
        if self.n < 1 or not 0 <= self.k_bad <= self.n:
            raise UsageError(f"invalid counts {self.k_bad}/{self.n}: need n >= 1 and 0 <= k_bad <= n")


@dataclass(frozen=True)
class NoiseModel:
    """Rates of one probe run: P(fail | good revision) and P(fail | bad revision)."""

    fail_if_good: float = 0.0
    fail_if_bad: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fail_if_good < self.fail_if_bad <= 1.0:
            raise UsageError(
                f"invalid noise model ({self.fail_if_good}, {self.fail_if_bad}): "
                "need 0 <= fail_if_good < fail_if_bad <= 1"
            )

    @classmethod
    def symmetric(cls, p: float) -> "NoiseModel":
        """Each verdict flips with probability p."""
        return cls(p, 1.0 - p)

    @classmethod
    def flaky(cls, f: float) -> "NoiseModel":
        """A bad revision always fails; a good one fails with probability f."""
        return cls(f, 1.0)

    @property
    def kind(self) -> str:
        if self.fail_if_good == 0.0 and self.fail_if_bad == 1.0:
            return "deterministic"
        if self.fail_if_bad == 1.0:
            return "flaky"
        if abs(self.fail_if_good + self.fail_if_bad - 1.0) < 1e-12:
            return "symmetric"
        return "two-rate"


@dataclass
class SearchResult:
    status: str  # "found" | "ambiguous" | "running" | "no_culprit"
    culprit: str | None
    probability: float
    candidates: list[str] = field(default_factory=list)


def _xlog(count: int, q: float) -> float:
    """count * log(q), with 0 * log(0) = 0."""
    if count == 0:
        return 0.0
    return count * math.log(q) if q > 0.0 else _NEG_INF


def _safe_log(q: float) -> float:
    return math.log(q) if q > 0.0 else 0.0


def _h2(q: float) -> float:
    return 0.0 if q <= 0.0 or q >= 1.0 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m if m == _NEG_INF else m + math.log(sum(math.exp(x - m) for x in xs))


class Search:
    """Ask/tell search for the first bad revision among `parents` (see the module docstring).

    `parents`: candidate -> its parents that are candidates too, in `git rev-list` order (newest
    first); `bad` is the single head. Options, all keyword-only:
    - `noise`: None or 0 (deterministic probe), a symmetric flip probability, or a `NoiseModel`.
    - `learn_noise`: learn the rate(s) of the noise family (symmetric unless `noise` says flaky or
      two-rate) on a grid that starts at `noise_floor`, integrating over the unknown rate.
    - `confidence`: stop when one hypothesis reaches this probability (noisy searches).
    - `no_culprit_prior`: prior mass of "no culprit" (default 0.05 under noise, 0 otherwise).
    - `confirm`: under noise, before stopping require a pass at the culprit's parents and a fail
      at the culprit (default on under noise; a deterministic search never re-asks).
    - `good`: the known-good revisions (outside the candidates); runs recorded there calibrate noise.
    - `calibration_runs`: under `learn_noise`, runs wanted at each bound before searching.
    - `build_cost`, `cost`, `built`: cost of building an unbuilt revision in units of one probe run
      (default for all / per revision) and the revisions already built; with costs the choice
      maximizes expected information per cost instead of splitting the mass in half.
    """

    def __init__(
        self,
        parents: Mapping[str, tuple[str, ...]],
        bad: str,
        *,
        noise: float | NoiseModel | None = None,
        confidence: float = 0.99,
        learn_noise: bool = False,
        noise_floor: float = 0.02,
        no_culprit_prior: float | None = None,
        confirm: bool | None = None,
        good: Iterable[str] = (),
        calibration_runs: int = 0,
        build_cost: float = 0.0,
        cost: Mapping[str, float] | None = None,
        built: Iterable[str] = (),
    ):
        if bad not in parents:
            raise UsageError(f"the bad revision {bad} is not among the candidates")
        if not 0.5 < confidence < 1.0:
            raise UsageError(f"confidence {confidence} must be between 0.5 and 1")
        self._dag = dag = _Dag(parents)
        self._n = n = len(dag.revs)
        self._bad = dag.index[bad]
        if dag.anc[self._bad] != dag.all:
            stray = next(r for i, r in enumerate(dag.revs) if not dag.anc[self._bad] >> i & 1)
            raise UsageError(f"candidate {stray} is not an ancestor of the bad revision {bad}")
        if isinstance(noise, (int, float)):
            noise = NoiseModel.symmetric(float(noise)) if noise else None
        if noise is not None and noise.kind == "deterministic":
            noise = None
        if learn_noise and noise is None:
            noise = NoiseModel.symmetric(noise_floor)
        self.noise = noise
        self.learn_noise = learn_noise
        self.confidence = confidence
        noisy = noise is not None
        self._prior_none = (0.05 if noisy else 0.0) if no_culprit_prior is None else no_culprit_prior
        if not 0.0 <= self._prior_none < 1.0:
            raise UsageError(f"no_culprit_prior {self._prior_none} must be in [0, 1)")
        self._confirm = noisy and (True if confirm is None else confirm)
        self._grid = self._make_grid(noise, learn_noise, noise_floor)
        # Rates below which an observation is impossible: those observations kill suspects.
        self._min_q0 = min(q0 for q0, _, _ in self._grid)
        self._max_q1 = max(q1 for _, q1, _ in self._grid)
        self._good = {g: None for g in good}
        self._calibration_runs = calibration_runs if learn_noise else 0
        self._build_cost = build_cost
        self._cost = dict(cost or {})
        self._costly = build_cost > 0 or any(self._cost.values())
        self._built = {dag.index[r] for r in built if r in dag.index}
        # Invariants: `_alive` holds the suspects no observation has ruled out (likelihood > 0);
        # `_K[i]`/`_P[i]` count failed/passed runs at candidate i; `_skipped` is never proposed.
        self._alive = dag.all
        self._none_alive = self._prior_none > 0.0
        self._K = [0] * n
        self._P = [0] * n
        self._Kg = self._Pg = 0
        self._skipped = 0
        self._streak: list[int] = []  # revisions skipped since the last real answer
        self._observed_bad: dict[int, None] = {}
        self._observed_good: dict[int, None] = {}
        self.runs = 0
        self._cache: dict | None = None

    # ----------------------------------------------------------------- model
    @staticmethod
    def _make_grid(noise: NoiseModel | None, learn: bool, floor: float) -> list[tuple[float, float, float]]:
        """(fail_if_good, fail_if_bad, log prior weight) points the noise rates range over."""
        if noise is None:
            return [(0.0, 1.0, 0.0)]
        if not learn:
            return [(noise.fail_if_good, noise.fail_if_bad, 0.0)]
        lo = max(floor, 1e-4)

        def pts(a: float, b: float, k: int) -> list[float]:
            return [a + (b - a) * j / (k - 1) for j in range(k)]

        if noise.kind == "flaky":
            # Log-spaced (a log-uniform prior): measured cheaper for flakes at the same accuracy;
            # for symmetric flips the linear grid keeps accuracy at p = 0.3 (docs/benchmarks.md).
            grid = [(lo * (0.7 / lo) ** (j / (_GRID - 1)), 1.0) for j in range(_GRID)]
        elif noise.kind == "symmetric":
            grid = [(p, 1.0 - p) for p in pts(lo, _MAX_RATE, _GRID)]
        else:
            grid = [(a, b) for a in pts(lo, _MAX_RATE, 8) for b in pts(1 - _MAX_RATE, 1 - lo, 8)]
        lp = -math.log(len(grid))
        return [(a, b, lp) for a, b in grid]

    def _obs_counts(self, obs: Verdict | Counts) -> tuple[int, int] | None:
        if isinstance(obs, Counts):
            return obs.k_bad, obs.n
        if obs == Verdict.BAD:
            return 1, 1
        if obs == Verdict.GOOD:
            return 0, 1
        if obs == Verdict.SKIP:
            return None
        raise UsageError(f"cannot record verdict {obs!r}: an aborted probe stops the search")

    # ------------------------------------------------------------------ tell
    def record(self, rev: str, obs: Verdict | Counts) -> None:
        """Record one observation at `rev`; raises ContradictionError if it cannot hold."""
        counts = self._obs_counts(obs)
        if rev in self._good:
            if counts is None:
                return
            k, n = counts
            if k and self._min_q0 == 0.0:
                raise ContradictionError(f"the good bound {rev} was observed bad: it does not reproduce as good")
            self._Kg += k
            self._Pg += n - k
            self.runs += n
            self._cache = None
            return
        i = self._dag.index.get(rev)
        if i is None:
            raise UsageError(f"unknown revision {rev}: it is not among the candidates")
        if counts is None:
            self._skipped |= 1 << i
            self._streak.append(i)
            self._cache = None
            return
        k, n = counts
        alive, none_alive = self._alive, self._none_alive
        if n - k and self._max_q1 == 1.0:  # a pass is impossible at a bad revision
            alive &= ~self._dag.anc[i]
        if k and self._min_q0 == 0.0:  # a fail is impossible at a good revision
            alive &= self._dag.anc[i]
            none_alive = False
        if not alive and not none_alive:
            raise ContradictionError(self._contradiction(i, k, n))
        self._alive, self._none_alive = alive, none_alive
        self._streak = []
        self._K[i] += k
        self._P[i] += n - k
        if k:
            self._observed_bad[i] = None
        if n - k:
            self._observed_good[i] = None
        self._built.add(i)
        self.runs += n
        self._cache = None

    def _contradiction(self, i: int, k: int, n: int) -> str:
        dag, rev = self._dag, self._dag.revs[i]
        if k and n - k:
            return f"{rev} both passed and failed, but the probe is deterministic: rerun it or declare noise"
        if n - k:  # observed good
            if i in self._observed_bad:
                return f"{rev} observed good, but it was observed bad before"
            for b in self._observed_bad:
                if dag.anc[i] >> b & 1:
                    return f"{rev} observed good, but its ancestor {dag.revs[b]} was observed bad"
            bads = ", ".join(dag.revs[b] for b in self._observed_bad) or "none"
            return f"{rev} observed good, but every remaining suspect is its ancestor (observed bad: {bads})"
        if i in self._observed_good:
            return f"{rev} observed bad, but it was observed good before"
        for g in self._observed_good:
            if dag.anc[g] >> i & 1:
                return f"{rev} observed bad, but its descendant {dag.revs[g]} was observed good"
        goods = ", ".join(dag.revs[g] for g in self._observed_good) or "none"
        return f"{rev} observed bad, but none of its ancestors is still a suspect (observed good: {goods})"

    # ------------------------------------------------------------- posterior
    def _state(self) -> dict:
        """Weights, ancestor masses and the normalizer, recomputed after each observation."""
        if self._cache is not None:
            return self._cache
        dag, n = self._dag, self._n
        bits = f"{self._alive:0{n}b}"[::-1]
        if self.noise is None:
            w = [1.0 if c == "1" else 0.0 for c in bits]
            wn = self._prior_none * n / (1.0 - self._prior_none) if self._none_alive else 0.0
            grid_post = None
        else:
            w, wn, grid_post = self._noisy_weights(bits)
        A = dag.anc_sums(w)
        Z = sum(w) + wn
        self._cache = {"w": w, "wn": wn, "A": A, "Z": Z, "grid": grid_post}
        return self._cache

    def _noisy_weights(self, bits: str) -> tuple[list[float], float, list[float]]:
        n, Kt, Pt, Kg, Pg = self._n, sum(self._K), sum(self._P), self._Kg, self._Pg
        K1 = self._dag.desc_sums(self._K)  # fails at revisions that are bad if i is the culprit
        P1 = self._dag.desc_sums(self._P)
        lps = math.log((1.0 - self._prior_none) / n)
        grid = self._grid
        memo: dict[tuple[int, int], list[float]] = {}

        glogs = [(_safe_log(q1), _safe_log(1 - q1), _safe_log(q0), _safe_log(1 - q0), lp) for q0, q1, lp in grid]

        def terms(k1: int, p1: int) -> list[float]:
            # Zero-probability terms only meet zero counts in live suspects (see below).
            k0, p0 = Kt - k1 + Kg, Pt - p1 + Pg
            return [lp + k1 * l1 + p1 * m1 + k0 * l0 + p0 * m0 for l1, m1, l0, m0, lp in glogs]

        if len(grid) == 1:
            # Fixed rates: log-likelihood is linear in (k1, p1). A zero-probability term only meets
            # zero counts in a live suspect (the others are dead), so its log is taken as 0 here.
            q0, q1, _ = grid[0]
            l1, m1 = _safe_log(q1), _safe_log(1 - q1)
            l0, m0 = _safe_log(q0), _safe_log(1 - q0)
            c0 = lps + (Kt + Kg) * l0 + (Pt + Pg) * m0
            a, b = l1 - l0, m1 - m0
            lw = [c0 + a * k1 + b * p1 for k1, p1 in zip(K1, P1)]
        else:
            keys = list(zip(K1, P1))
            for key in set(keys):
                t = memo[key] = terms(*key)
                t.append(_logsumexp(t) + lps)
            lw = [memo[key][-1] for key in keys]
        if self._alive != self._dag.all:
            lw = [x if c == "1" else _NEG_INF for x, c in zip(lw, bits)]
        tn = None
        if self._none_alive and self._prior_none > 0:
            tn = [lp + _xlog(Kt + Kg, q0) + _xlog(Pt + Pg, 1 - q0) for q0, _, lp in grid]
        lwn = _logsumexp(tn) + math.log(self._prior_none) if tn else _NEG_INF
        m = max(max(lw), lwn)
        w = [math.exp(x - m) for x in lw]
        wn = math.exp(lwn - m)
        self._lazy = (K1, P1, bits, memo, tn, lps)
        return w, wn, None

    def rates(self) -> tuple[float, float]:
        """Current (fail_if_good, fail_if_bad): the model's, or the posterior mean when learned."""
        st = self._state()
        if len(self._grid) == 1:
            return self._grid[0][0], self._grid[0][1]
        if st["grid"] is None:
            st["grid"] = self._grid_posterior()
        gp = st["grid"]
        return (sum(g[0] * p for g, p in zip(self._grid, gp)), sum(g[1] * p for g, p in zip(self._grid, gp)))

    def _grid_posterior(self) -> list[float]:
        """Posterior over the noise-rate grid, marginal over the hypotheses."""
        K1, P1, bits, memo, tn, lps = self._lazy
        counts: dict[tuple[int, int], int] = {}
        for k1, p1, c in zip(K1, P1, bits):
            if c == "1":
                counts[(k1, p1)] = counts.get((k1, p1), 0) + 1
        per_key = [(memo[key], lps + math.log(c)) for key, c in counts.items()]  # memo holds lps-free terms
        acc = []
        for j in range(len(self._grid)):
            xs = [t[j] + lc for t, lc in per_key]
            if tn:
                xs.append(tn[j] + math.log(self._prior_none))
            acc.append(_logsumexp(xs))
        top = _logsumexp(acc)
        return [math.exp(a - top) for a in acc]

    def posterior(self) -> dict[str | None, float]:
        """Probability of each suspect still possible, plus key None for "no culprit" when possible."""
        st = self._state()
        Z = st["Z"]
        out: dict[str | None, float] = {r: x / Z for r, x in zip(self._dag.revs, st["w"]) if x > 0.0}
        if st["wn"] > 0.0 or self.noise is not None:
            out[None] = st["wn"] / Z
        return out

    def _top(self) -> tuple[float, int]:
        """(probability, index) of the most likely suspect; ties go to the newest."""
        st = self._state()
        if "top" not in st:
            w = st["w"]
            m = max(w)
            st["top"] = (m / st["Z"], w.index(m))
        return st["top"]

    def _ranked(self) -> list[tuple[float, int]]:
        st = self._state()
        Z, gp = st["Z"], self._dag.gitpos
        return sorted(((x / Z, i) for i, x in enumerate(st["w"]) if x > 0.0), key=lambda t: (-t[0], -gp[t[1]]))

    # ------------------------------------------------------------------- ask
    def _eligible(self) -> list[int]:
        """Suspects worth probing: not skipped, and (deterministically) with an answer not yet implied."""
        st = self._state()
        if "elig" in st:
            return st["elig"]
        A, Z, w = st["A"], st["Z"], st["w"]
        skipped = self._skipped
        if self.noise is None:
            elig = [i for i in range(self._n) if w[i] > 0.0 and A[i] < Z and not skipped >> i & 1]
        else:
            # Under noise a revision may be asked again, but only while its answer is still uncertain.
            lo, hi = 1e-4 * Z, (1 - 1e-4) * Z
            elig = [i for i, (x, a) in enumerate(zip(w, A)) if x > 0.0 and lo < a < hi]
            if skipped:
                elig = [i for i in elig if not skipped >> i & 1]
        st["elig"] = elig
        return elig

    def needs_calibration(self) -> list[str]:
        """Bounds that want more runs before searching (only with `learn_noise` and `calibration_runs`)."""
        want = []
        if self._calibration_runs:
            if self._good and self._Kg + self._Pg < self._calibration_runs:
                want.append(next(iter(self._good)))
            if self._K[self._bad] + self._P[self._bad] < self._calibration_runs:
                want.append(self._dag.revs[self._bad])
        return want

    def counts_at_bounds(self) -> dict[str, Counts | None]:
        b = self._bad
        nb = self._K[b] + self._P[b]
        ng = self._Kg + self._Pg
        return {
            "good": Counts(self._Kg, ng) if ng else None,
            "bad": Counts(self._K[b], nb) if nb else None,
        }

    def _evidence(self, i: int) -> float:
        """Log-likelihood ratio bad:good of the runs at candidate i under the current rates."""
        q0, q1 = self.rates()
        k, p = self._K[i], self._P[i]
        if k and q0 == 0.0:
            return math.inf
        if p and q1 == 1.0:
            return -math.inf
        return _xlog(k, q1) - _xlog(k, q0) + _xlog(p, 1 - q1) - _xlog(p, 1 - q0)

    def confirmation(self) -> list[str]:
        """Revisions still to run before the top suspect counts as confirmed (empty when not pending)."""
        if not self._confirm:
            return []
        top, c = self._top()
        if top < self.confidence:
            return []
        todo = [p for p in self._dag.parents[c] if not self._skipped >> p & 1 and self._evidence(p) >= 0]
        if not self._skipped >> c & 1 and self._evidence(c) <= 0:
            todo.append(c)
        return [self._dag.revs[i] for i in todo]

    @property
    def confirmation_pending(self) -> bool:
        return bool(self.confirmation())

    def _finished(self) -> bool:
        if self.needs_calibration():
            return False
        if self.noise is not None:
            post_none = self._state()["wn"] / self._state()["Z"]
            if post_none >= self.confidence:
                return True
            if self._top()[0] >= self.confidence:
                return not self.confirmation_pending
        return self._choice() is None

    def _choice(self) -> int | None:
        """The single revision to probe next (None: nothing informative left), cached per state."""
        st = self._state()
        if "choice" in st:
            return st["choice"]
        choice = None
        if self.noise is not None and not self._costly and not self._streak:
            # Fast path: the revision whose ancestor mass is closest to half, if it is eligible.
            A, Z, w = st["A"], st["Z"], st["w"]
            sc = [abs(2.0 * a - Z) for a in A]
            i = sc.index(min(sc))
            if w[i] > 0.0 and 1e-4 * Z < A[i] < (1 - 1e-4) * Z and not self._skipped >> i & 1:
                choice = i
        if choice is None:
            elig = self._eligible()
            choice = self._pick(elig) if elig else None
        st["choice"] = choice
        return choice

    @property
    def done(self) -> bool:
        return self._finished()

    def next(self, k: int = 1) -> list[str]:
        """Up to k revisions to probe next (k > 1: at posterior quantiles i/(k+1)); [] when done."""
        if k < 1:
            raise UsageError(f"next(k) needs k >= 1, got {k}")
        cal = self.needs_calibration()
        if cal:
            return cal[:k]
        if self._finished():
            return []
        conf = self.confirmation()
        if conf:
            return conf[:k]
        if k > 1:
            elig = self._eligible()
            st = self._state()
            A, Z, gp = st["A"], st["Z"], self._dag.gitpos
            chosen: list[int] = []
            for j in range(1, k + 1):
                t = j / (k + 1)
                rest = elig if self.noise is not None else [i for i in elig if i not in chosen]
                if not rest:
                    break
                chosen.append(min(rest, key=lambda i: (abs(A[i] / Z - t), gp[i])))
            return [self._dag.revs[i] for i in chosen]
        return [self._dag.revs[self._choice()]]

    def _score(self, i: int, A: list[float], Z: float) -> float:
        """Lower is better: distance from an even split, or minus information per cost."""
        if not self._costly:
            return abs(2.0 * A[i] - Z)
        a = A[i] / Z
        q0, q1 = self.rates()
        gain = _h2(a * q1 + (1 - a) * q0) - a * _h2(q1) - (1 - a) * _h2(q0)
        rev = self._dag.revs[i]
        build = 0.0 if i in self._built else self._cost.get(rev, self._build_cost)
        return -gain / (1.0 + build)

    def _pick(self, elig: list[int]) -> int:
        st = self._state()
        A, Z, gp = st["A"], st["Z"], self._dag.gitpos
        score = {i: self._score(i, A, Z) for i in elig}
        if self._streak:
            # Skips since the last real answer mark an untestable stretch: keep clear of it, at a
            # radius (share of the mass) that doubles with each skip in a row, so a broken build
            # is jumped over, not walked; replaying the observations replays the choices.
            radius = 0.05 * 2 ** (len(self._streak) - 1) * Z
            while radius > 1e-9 * Z:
                away = [i for i in elig if min(abs(A[i] - A[s]) for s in self._streak) >= radius]
                if away:
                    elig = away
                    break
                radius /= 2
        elif self.noise is None and not self._costly and min(score.values()) <= 1.0:
            # git's shortcut (approx_halfway): an exact half-split is taken from the merges first,
            # then from the other non-roots, each in git's list order (oldest first).
            alive = self._alive

            def group(i: int) -> int:
                ps = sum(1 for p in self._dag.parents[i] if alive >> p & 1)
                return 0 if ps >= 2 else 1 if ps == 1 else 2

            return min((i for i in elig if score[i] <= 1.0), key=lambda i: (group(i), gp[i]))
        # Otherwise git's best_bisection(): the best split, the first in list order among equals.
        return min(elig, key=lambda i: (score[i], gp[i]))

    # ---------------------------------------------------------------- result
    def remaining(self) -> int:
        """Suspects still possible (under noise: with probability above 1e-9)."""
        if self.noise is None:
            return self._alive.bit_count()
        return sum(1 for p, _ in self._ranked() if p > 1e-9)

    def estimated_steps(self) -> int:
        """About how many more probe runs: ceil(log2(remaining)) when deterministic."""
        if self.done:
            return 0
        if self.noise is None:
            return math.ceil(math.log2(max(1, self.remaining())))
        post = [p for p in self.posterior().values() if p > 0]
        entropy = -sum(p * math.log2(p) for p in post)
        q0, q1 = self.rates()
        capacity = _h2((q0 + q1) / 2) - (_h2(q0) + _h2(q1)) / 2
        need = entropy + math.log2(self.confidence / (1 - self.confidence))
        return max(1, math.ceil(need / max(capacity, 1e-6)))

    def result(self) -> SearchResult:
        st = self._state()
        ranked = self._ranked()
        revs = self._dag.revs
        p_none = st["wn"] / st["Z"]
        top = [revs[i] for _, i in ranked[:10]]
        if self.noise is not None and p_none >= self.confidence:
            return SearchResult("no_culprit", None, p_none, top)
        done = self._finished()
        if ranked and ranked[0][0] >= self.confidence and done:
            return SearchResult("found", revs[ranked[0][1]], ranked[0][0], top)
        if not done:
            return SearchResult("running", None, ranked[0][0] if ranked else 0.0, top)
        if self.noise is None:
            return SearchResult("ambiguous", None, ranked[0][0], [revs[i] for _, i in ranked])
        cover, acc = [], 0.0
        for p, i in ranked:
            cover.append(revs[i])
            acc += p
            if acc >= self.confidence:
                break
        return SearchResult("ambiguous", None, ranked[0][0], cover)

    @classmethod
    def from_settings(cls, candidates: Any, settings: Mapping[str, Any]) -> "Search":
        """The search a session runs: `candidates` (a `core.model.Candidates`) and the journaled
        `search` settings (noise, flaky, learn_noise, confidence, calibration_runs, noise_floor)."""
        noise: Any = None
        if settings.get("flaky") is not None:
            noise = NoiseModel.flaky(settings["flaky"]) if settings["flaky"] > 0 else None
            if noise is None:
                noise = NoiseModel.flaky(settings.get("noise_floor", 0.02))
        elif settings.get("noise"):
            noise = NoiseModel.symmetric(settings["noise"])
        learn = bool(settings.get("learn_noise"))
        if noise is None and not learn:
            return cls(candidates.parents, candidates.bad)
        return cls(
            candidates.parents,
            candidates.bad,
            noise=noise,
            learn_noise=learn,
            confidence=settings.get("confidence", 0.99),
            noise_floor=settings.get("noise_floor", 0.02),
            good=candidates.goods,
            calibration_runs=settings.get("calibration_runs", 3) if learn else 0,
        )
