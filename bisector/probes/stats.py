"""Small exact statistics for probe verdicts (standard library only): Wilson intervals, rate tests."""

from __future__ import annotations

import math
from statistics import NormalDist

_NORMAL = NormalDist()


def _check_counts(k: int, n: int) -> None:
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"counts must satisfy 0 <= k <= n, got k={k}, n={n}")


def z_for(confidence: float) -> float:
    """The two-sided normal quantile for `confidence` (0.95 -> 1.96)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion k/n; (0.0, 1.0) when n == 0.

    Unlike the normal (Wald) interval it stays inside [0, 1] and is sensible at k = 0 or k = n,
    which is where probe rates usually sit.
    """
    _check_counts(k, n)
    if n == 0:
        return 0.0, 1.0
    z = z_for(confidence)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # Clamp rounding noise; the exact bounds at k = 0 / k = n are 0 / 1.
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def fisher_exact(k1: int, n1: int, k2: int, n2: int, alternative: str = "greater") -> float:
    """Fisher's exact test p-value on the 2x2 table [[k1, n1-k1], [k2, n2-k2]].

    alternative: "greater" tests rate1 > rate2 (one-sided), "less" rate1 < rate2,
    "two-sided" sums the tables no more likely than the observed one.
    """
    _check_counts(k1, n1)
    _check_counts(k2, n2)
    if alternative not in ("greater", "less", "two-sided"):
        raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")
    total_k = k1 + k2
    total_n = n1 + n2
    if n1 == 0 or n2 == 0 or total_k == 0 or total_k == total_n:
        return 1.0
    lo = max(0, total_k - n2)
    hi = min(total_k, n1)
    log_denom = _log_comb(total_n, total_k)

    def pmf(x: int) -> float:
        # Hypergeometric: x successes in the first group given the margins.
        return math.exp(_log_comb(n1, x) + _log_comb(n2, total_k - x) - log_denom)

    if alternative == "greater":
        p = sum(pmf(x) for x in range(k1, hi + 1))
    elif alternative == "less":
        p = sum(pmf(x) for x in range(lo, k1 + 1))
    else:
        observed = pmf(k1)
        # Relative tolerance as in scipy, so that equal-probability tables count.
        p = sum(q for q in (pmf(x) for x in range(lo, hi + 1)) if q <= observed * (1 + 1e-7))
    return min(1.0, max(0.0, p))


def two_proportion_z(k1: int, n1: int, k2: int, n2: int, alternative: str = "greater") -> float:
    """Pooled two-proportion z-test p-value (large samples); see fisher_exact for small ones."""
    _check_counts(k1, n1)
    _check_counts(k2, n2)
    if n1 == 0 or n2 == 0:
        return 1.0
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    diff = k1 / n1 - k2 / n2
    if se == 0.0:
        # Both rates are 0 or both are 1: no evidence of any difference.
        return 1.0
    z = diff / se
    if alternative == "greater":
        return 1.0 - _NORMAL.cdf(z)
    if alternative == "less":
        return _NORMAL.cdf(z)
    if alternative == "two-sided":
        return 2.0 * (1.0 - _NORMAL.cdf(abs(z)))
    raise ValueError(f"alternative must be greater, less or two-sided, not {alternative!r}")


def rate_increase_p(k: int, n: int, k0: int, n0: int, test: str = "fisher") -> float:
    """One-sided p-value that the rate k/n is higher than the baseline rate k0/n0."""
    if test == "fisher":
        return fisher_exact(k, n, k0, n0, "greater")
    if test == "z":
        return two_proportion_z(k, n, k0, n0, "greater")
    raise ValueError(f"test must be fisher or z, not {test!r}")


def binom_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the exact one-sided p-value that a rate exceeds p."""
    _check_counts(k, n)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if k == 0:
        return 1.0
    if p == 0.0:
        return 0.0
    if p == 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = sum(math.exp(_log_comb(n, x) + x * log_p + (n - x) * log_q) for x in range(k, n + 1))
    return min(1.0, total)
