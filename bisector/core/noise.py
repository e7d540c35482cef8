"""The noise model of a probe: binomial counts, flip rates, the grid an unknown rate is learned on.

Standard library and numpy only. Scalar helpers (`xlog`, `safe_log`, `h2`, `logsumexp`) and their
array forms (`logsumexp_rows`) are what the search's posterior is made of.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

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
