"""The noise model of a probe: binomial counts, flip rates, the grid an unknown rate is learned on.

Standard library and numpy only. Scalar helpers (`xlog`, `safe_log`, `h2`, `logsumexp`) and their
array forms (`logsumexp_rows`) are what the search's posterior is made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bisector.core.arrays import np
from bisector.core.dag import Dag
from bisector.core.errors import UsageError

NEG_INF = float("-inf")
GRID = 12  # points of the grid on which an unknown noise rate is learned
MAX_RATE = 0.45  # a symmetric flip rate above this makes the probe useless


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


def xlog(count: int, q: float) -> float:
    """count * log(q), with 0 * log(0) = 0."""
    if count == 0:
        return 0.0
    return count * math.log(q) if q > 0.0 else NEG_INF


def safe_log(q: float) -> float:
    return math.log(q) if q > 0.0 else 0.0


def h2(q: float) -> float:
    """Binary entropy in bits."""
    return 0.0 if q <= 0.0 or q >= 1.0 else -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def h2_array(q: np.ndarray) -> np.ndarray:
    """Binary entropy in bits, elementwise (0 at 0 and 1)."""
    q = np.clip(q, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = -(q * np.log2(q) + (1 - q) * np.log2(1 - q))
    return np.where((q <= 0.0) | (q >= 1.0), 0.0, out)


def logsumexp(xs: list[float]) -> float:
    m = max(xs)
    return m if m == NEG_INF else m + math.log(sum(math.exp(x - m) for x in xs))


def logsumexp_rows(x: np.ndarray) -> np.ndarray:
    """log(sum(exp(x))) along the last axis; rows of -inf give -inf."""
    m = x.max(axis=-1)
    safe = np.where(np.isfinite(m), m, 0.0)
    with np.errstate(divide="ignore"):
        return np.log(np.exp(x - safe[..., None]).sum(axis=-1)) + safe


def make_grid(noise: NoiseModel | None, learn: bool, floor: float) -> list[tuple[float, float, float]]:
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
        grid = [(lo * (0.7 / lo) ** (j / (GRID - 1)), 1.0) for j in range(GRID)]
    elif noise.kind == "symmetric":
        grid = [(p, 1.0 - p) for p in pts(lo, MAX_RATE, GRID)]
    else:
        grid = [(a, b) for a in pts(lo, MAX_RATE, 8) for b in pts(1 - MAX_RATE, 1 - lo, 8)]
    lp = -math.log(len(grid))
    return [(a, b, lp) for a, b in grid]


class Posterior:
    """The posterior half of `core.search.Search`: the weight of each hypothesis (the noisy
    likelihood over the rate grid), its ancestor masses, the rankings and the cost scores,
    recomputed once per observation and cached. `Search` holds the state these read (the
    DAG, the run counts, the live mask, the grid) and adds ask/tell."""

    _dag: Dag
    _n: int
    _grid: list[tuple[float, float, float]]
    _prior_none: float
    _cache: dict | None
    noise: NoiseModel | None
    confidence: float
    done: bool
    _alive: np.ndarray
    _all_alive: bool
    _none_alive: bool
    _K: np.ndarray
    _P: np.ndarray
    _Kg: int
    _Pg: int
    _costly: bool
    _built: set[int]
    _cost: dict[str, float]
    _build_cost: float

    def _state(self) -> dict:
        """Weights, ancestor masses and the normalizer, recomputed after each observation."""
        if self._cache is not None:
            return self._cache
        if self.noise is None:
            w = self._alive.astype(np.float64)
            wn = self._prior_none * self._n / (1.0 - self._prior_none) if self._none_alive else 0.0
        else:
            w, wn = self._noisy_weights()
        A = self._dag.anc_sums(w)
        Z = float(w.sum()) + wn
        self._cache = {"w": w, "wn": wn, "A": A, "Z": Z, "grid": None}
        return self._cache

    def _noisy_weights(self) -> tuple[np.ndarray, float]:
        n, Kt, Pt, Kg, Pg = self._n, int(self._K.sum()), int(self._P.sum()), self._Kg, self._Pg
        K1 = self._dag.desc_sums(self._K)  # fails at revisions that are bad if i is the culprit
        P1 = self._dag.desc_sums(self._P)
        lps = math.log((1.0 - self._prior_none) / n)
        grid = self._grid
        # Zero-probability terms only meet zero counts in live suspects (the others are dead), so
        # their log is taken as 0 (safe_log).
        l1, m1, l0, m0 = (np.array([safe_log(f(q0, q1)) for q0, q1, _ in grid])
                          for f in (lambda a, b: b, lambda a, b: 1 - b, lambda a, b: a, lambda a, b: 1 - a))
        lp = np.array([x for _, _, x in grid])
        if len(grid) == 1:
            # Fixed rates: the log-likelihood is linear in (k1, p1).
            c0 = lps + (Kt + Kg) * l0[0] + (Pt + Pg) * m0[0]
            lw = c0 + (l1[0] - l0[0]) * K1 + (m1[0] - m0[0]) * P1
            memo = None
        else:
            keys, inverse = np.unique(np.stack([K1, P1]), axis=1, return_inverse=True)
            inverse = inverse.reshape(-1)
            k1, p1 = keys[0][:, None], keys[1][:, None]
            k0, p0 = Kt - k1 + Kg, Pt - p1 + Pg
            memo = lp + k1 * l1 + p1 * m1 + k0 * l0 + p0 * m0  # (keys, grid)
            lw = (logsumexp_rows(memo) + lps)[inverse]
            memo = (memo, inverse)
        if not self._all_alive:
            lw = np.where(self._alive, lw, NEG_INF)
        tn = None
        if self._none_alive and self._prior_none > 0:
            tn = [x + xlog(Kt + Kg, q0) + xlog(Pt + Pg, 1 - q0) for q0, _, x in grid]
        lwn = logsumexp(tn) + math.log(self._prior_none) if tn else NEG_INF
        m = max(float(lw.max()), lwn)
        w = np.exp(lw - m)
        wn = math.exp(lwn - m)
        self._lazy = (memo, tn, lps)
        return w, wn

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
        (memo, inverse), tn, lps = self._lazy
        counts = np.bincount(inverse[self._alive], minlength=len(memo))
        used = np.flatnonzero(counts)
        xs = memo[used] + (lps + np.log(counts[used]))[:, None]  # (keys, grid)
        if tn:
            xs = np.vstack([xs, np.array(tn)[None, :] + math.log(self._prior_none)])
        acc = logsumexp_rows(xs.T).tolist()
        top = logsumexp(acc)
        return [math.exp(a - top) for a in acc]

    def posterior(self) -> dict[str | None, float]:
        """Probability of each suspect still possible, plus key None for "no culprit" when possible."""
        st = self._state()
        Z, w, revs = st["Z"], st["w"], self._dag.revs
        live = np.flatnonzero(w > 0.0)
        out: dict[str | None, float] = dict(zip([revs[i] for i in live.tolist()], (w[live] / Z).tolist()))
        if st["wn"] > 0.0 or self.noise is not None:
            out[None] = st["wn"] / Z
        return out

    def top(self, k: int = 5, *, ties: bool = False) -> list[tuple[str, float]]:
        """The k most likely suspects with their probabilities (ties: the newest first); with
        `ties`, also every suspect as likely as the k-th. One pass over the posterior, no dict."""
        return [(self._dag.revs[i], p) for p, i in self._ranked(k, ties=ties)]

    def top_by_name(self, k: int = 5) -> list[tuple[str, float]]:
        """The k most likely suspects, ties by name, largest first (the order of the journal's
        `posterior` events), in passes over the weights: never the whole posterior sorted."""
        st = self._state()
        w, Z = st["w"], st["Z"]
        idx = np.flatnonzero(w > 0.0)
        chosen = idx
        if len(idx) > k:
            vals = w[idx]
            kth = vals.max()
            while np.count_nonzero(vals >= kth) < k:
                kth = vals[vals < kth].max()
            above = idx[vals > kth]
            tied = self._dag.revs.largest(idx[vals == kth], k - len(above))
            chosen = np.concatenate([above, np.asarray(tied, dtype=np.int64)])
        revs = self._dag.revs
        top = sorted(((float(w[i]) / Z, revs[int(i)]) for i in chosen.tolist()), reverse=True)[:k]
        return [(r, p) for p, r in top]

    def probability(self, rev: str | None) -> float:
        """The posterior probability of one suspect (None: of "no culprit")."""
        st = self._state()
        if rev is None:
            return st["wn"] / st["Z"]
        i = self._dag.index.get(rev)
        return 0.0 if i is None else float(st["w"][i]) / st["Z"]

    def _top(self) -> tuple[float, int]:
        """(probability, index) of the most likely suspect."""
        st = self._state()
        if "top" not in st:
            i = int(np.argmax(st["w"]))
            st["top"] = (float(st["w"][i]) / st["Z"], i)
        return st["top"]

    def _ranked(self, k: int | None = None, *, ties: bool = False) -> list[tuple[float, int]]:
        """The k (all: None) most likely suspects as (probability, index), ties newest first."""
        st = self._state()
        w, Z, gp = st["w"], st["Z"], self._dag.gitpos
        idx = np.flatnonzero(w > 0.0)
        if k is not None and k < len(idx):
            # The k-th largest weight by walking down the distinct values (at most k passes; a
            # partition degrades on the few distinct values a posterior has).
            vals = w[idx]
            kth = vals.max()
            while np.count_nonzero(vals >= kth) < k:
                kth = vals[vals < kth].max()
            idx = idx[vals >= kth]  # every tie at the boundary, so the order below decides
        order = idx[np.lexsort((-gp[idx], -w[idx]))]
        if k is not None and not ties:
            order = order[:k]
        return list(zip((w[order] / Z).tolist(), order.tolist()))


    def remaining(self) -> int:
        """Suspects still possible (under noise: with probability above 1e-9)."""
        if self.noise is None:
            return int(self._alive.sum())
        st = self._state()
        return int(np.count_nonzero(st["w"] / st["Z"] > 1e-9))

    def estimated_steps(self) -> int:
        """About how many more probe runs: ceil(log2(remaining)) when deterministic."""
        if self.done:
            return 0
        if self.noise is None:
            return math.ceil(math.log2(max(1, self.remaining())))
        st = self._state()
        post = st["w"] / st["Z"]
        post = post[post > 0]
        entropy = -float(np.sum(post * np.log2(post)))
        pn = st["wn"] / st["Z"]
        if pn > 0:
            entropy -= pn * math.log2(pn)
        q0, q1 = self.rates()
        capacity = h2((q0 + q1) / 2) - (h2(q0) + h2(q1)) / 2
        need = entropy + math.log2(self.confidence / (1 - self.confidence))
        return max(1, math.ceil(need / max(capacity, 1e-6)))


    def _evidence(self, i: int) -> float:
        """Log-likelihood ratio bad:good of the runs at candidate i under the current rates."""
        q0, q1 = self.rates()
        k, p = int(self._K[i]), int(self._P[i])
        if k and q0 == 0.0:
            return math.inf
        if p and q1 == 1.0:
            return -math.inf
        return xlog(k, q1) - xlog(k, q0) + xlog(p, 1 - q1) - xlog(p, 1 - q0)


    def _scores(self, elig: np.ndarray, A: np.ndarray, Z: float) -> np.ndarray:
        """Lower is better: distance from an even split, or minus information per cost."""
        if not self._costly:
            return np.abs(2.0 * A[elig] - Z)
        a = A[elig] / Z
        q0, q1 = self.rates()
        gain = h2_array(a * q1 + (1 - a) * q0) - a * h2(q1) - (1 - a) * h2(q0)
        revs = self._dag.revs
        build = np.array([0.0 if i in self._built else self._cost.get(revs[i], self._build_cost)
                          for i in elig.tolist()])
        return -gain / (1.0 + build)
