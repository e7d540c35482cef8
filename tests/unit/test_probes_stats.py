"""Statistics for probe verdicts: known values, and exact brute-force references as properties."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bisector.probes.stats import binom_sf, fisher_exact, rate_increase_p, two_proportion_z, wilson


@pytest.mark.parametrize(
    "k, n, lo, hi",
    [
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (1, 100, 0.0018, 0.0545),
        (0, 0, 0.0, 1.0),
    ],
)
def test_wilson_known_values(k, n, lo, hi):
    got = wilson(k, n)
    assert got == pytest.approx((lo, hi), abs=1e-4)


def test_fisher_known_values():
    # scipy's documented example: fisher_exact([[8, 2], [1, 5]]) -> two-sided p = 0.0349650...
    assert fisher_exact(8, 10, 1, 6, "two-sided") == pytest.approx(0.034965, abs=1e-6)
    # One-sided by hand: (C(10,8) C(6,1) + C(10,9) C(6,0)) / C(16,9) = 280 / 11440.
    assert fisher_exact(8, 10, 1, 6, "greater") == pytest.approx(280 / 11440, rel=1e-12)
    # The tea-tasting table [[3, 1], [1, 3]]: one-sided 0.2429, two-sided 0.4857.
    assert fisher_exact(3, 4, 1, 4, "greater") == pytest.approx(0.242857, abs=1e-6)
    assert fisher_exact(3, 4, 1, 4, "two-sided") == pytest.approx(0.485714, abs=1e-6)
    assert fisher_exact(0, 10, 0, 10) == 1.0


def _fisher_greater_exact(k1: int, n1: int, k2: int, n2: int) -> Fraction:
    total_k = k1 + k2
    denom = math.comb(n1 + n2, total_k)
    return sum((Fraction(math.comb(n1, x) * math.comb(n2, total_k - x), denom)
                for x in range(k1, min(total_k, n1) + 1)), Fraction(0))


counts = st.integers(1, 40).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n)))


@settings(max_examples=150, deadline=None)
@given(counts, counts)
def test_fisher_matches_the_exact_hypergeometric_sum(a, b):
    (k1, n1), (k2, n2) = a, b
    p = fisher_exact(k1, n1, k2, n2, "greater")
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(float(_fisher_greater_exact(k1, n1, k2, n2)), rel=1e-9, abs=1e-12)
    # "less" is "greater" with the groups swapped in outcome; the two tails overlap at k1.
    assert fisher_exact(k1, n1, k2, n2, "less") + p >= 1.0 - 1e-9


@settings(max_examples=150, deadline=None)
@given(counts, st.floats(0.01, 0.99))
def test_binom_sf_matches_exact_sum_and_wilson_contains_the_rate(c, q):
    k, n = c
    exact = sum(math.comb(n, x) * q**x * (1 - q) ** (n - x) for x in range(k, n + 1))
    assert binom_sf(k, n, q) == pytest.approx(exact, rel=1e-9, abs=1e-12)
    lo, hi = wilson(k, n)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


def test_rate_increase_tests_agree_on_a_clear_regression():
    assert rate_increase_p(20, 100, 2, 100) < 1e-4
    assert two_proportion_z(20, 100, 2, 100) < 1e-4
    assert rate_increase_p(2, 100, 20, 100) > 0.99
    assert two_proportion_z(0, 10, 0, 10) == 1.0
    with pytest.raises(ValueError):
        wilson(3, 2)
