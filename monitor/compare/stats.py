"""The statistics of an A/B comparison, on plain numbers: no database, no configuration.

What each function promises (B minus A throughout, two-sided, at ``confidence``):

* `diff_of_proportions` — Newcombe's hybrid score interval (his method 10) built from the two Wilson
  intervals, and the pooled two-proportion z-test (the score test) for the p-value; Fisher's exact test
  instead when an expected count is under 10 (rare events: leaks), where the z-test rejects too often. Counts may be
  fractional (a weighted share at Kish's effective sample size), so review accuracy uses the same function.
* `quantile_interval` — the distribution-free interval for one quantile from two order statistics chosen with
  the binomial distribution (coverage at least ``confidence`` for continuous data).
* `diff_of_quantiles` — Price & Bonett's interval for a difference of quantiles: each side's standard error is
  read off its order-statistic interval, the two are combined in quadrature; the p-value is the matching
  z-test, so the interval excludes 0 exactly when p < 1 - confidence.
* `rank_test` — Mann–Whitney U (scipy), the rank test for "B's values tend to be larger or smaller".
* `holm` — Holm's step-down adjustment: controls the family-wise error rate (the chance of *any* false
  "significant" among the metrics compared) at alpha. Chosen over Benjamini–Hochberg because a CI gate or an
  on-call page should not trip on one false positive among twenty metrics.

Intervals are *not* widened for the number of metrics (they are the usual per-metric 95 % intervals); the
``significant`` verdict is the one corrected for multiplicity.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from types import ModuleType

import numpy as np

from monitor.review.estimates import wilson

_NORMAL = NormalDist()


def _scipy_stats() -> ModuleType:
    """scipy.stats, imported on first use: it takes a second or more to import, and the daemon (which
    registers the guardrail rule and job) and ``watchkeeper --help`` should not pay for it unless they compare."""
    from scipy import stats

    return stats


def _z(confidence: float) -> float:
    return _NORMAL.inv_cdf(0.5 + confidence / 2.0)


def _two_sided_p(z: float) -> float:
    return 2.0 * (1.0 - _NORMAL.cdf(abs(z)))


@dataclass(frozen=True, slots=True)
class Difference:
    """An estimate of B - A with its interval and p-value; None where the data cannot give one."""

    a: float | None
    b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


def newcombe(p_a: float, low_a: float, high_a: float, p_b: float, low_b: float, high_b: float
             ) -> tuple[float, float, float]:
    """Newcombe's hybrid interval for ``p_b - p_a`` from each proportion's own (Wilson) interval.

    Newcombe's (1998) worked example, 56/70 against 48/80, gives 0.0524 to 0.3339:

    >>> d, low, high = newcombe(48 / 80, *wilson(48, 80), 56 / 70, *wilson(56, 70))
    >>> round(d, 4), round(low, 4), round(high, 4)
    (0.2, 0.0524, 0.3339)
    """
    diff = p_b - p_a
    low = diff - math.sqrt((p_b - low_b) ** 2 + (high_a - p_a) ** 2)
    high = diff + math.sqrt((high_b - p_b) ** 2 + (p_a - low_a) ** 2)
    return diff, max(-1.0, low), min(1.0, high)


def _exact_needed(x_a: float, n_a: float, x_b: float, n_b: float) -> bool:
    """Whole counts with an expected cell under 10: the z-test is too eager there, Fisher's exact test not."""
    if any(v != int(v) for v in (x_a, n_a, x_b, n_b)):
        return False
    pooled = (x_a + x_b) / (n_a + n_b)
    return min(n_a, n_b) * min(pooled, 1.0 - pooled) < 10


def diff_of_proportions(x_a: float, n_a: float, x_b: float, n_b: float, confidence: float = 0.95) -> Difference:
    """``x_b/n_b - x_a/n_a`` with Newcombe's interval and the pooled z-test's p-value.

    >>> d = diff_of_proportions(20, 1000, 45, 1000)
    >>> round(d.diff, 3), d.ci_low > 0, d.p_value < 0.01
    (0.025, True, True)
    >>> diff_of_proportions(0, 0, 3, 10).p_value is None
    True
    """
    if n_a <= 0 or n_b <= 0:
        return Difference(x_a / n_a if n_a > 0 else None, x_b / n_b if n_b > 0 else None, None, None, None, None)
    p_a, p_b = x_a / n_a, x_b / n_b
    diff, low, high = newcombe(p_a, *wilson(x_a, n_a, confidence), p_b, *wilson(x_b, n_b, confidence))
    pooled = (x_a + x_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n_a + 1.0 / n_b))
    if se == 0.0:  # both sides all 0 or all 1: no evidence of a difference
        p = 1.0
    elif _exact_needed(x_a, n_a, x_b, n_b):
        table = [[int(x_a), int(n_a - x_a)], [int(x_b), int(n_b - x_b)]]
        p = float(_scipy_stats().fisher_exact(table).pvalue)
    else:
        p = _two_sided_p(diff / se)
    return Difference(p_a, p_b, diff, low, high, p)


def quantile_interval(values: np.ndarray, q: float, confidence: float = 0.95
                      ) -> tuple[float, float, float, float] | None:
    """(estimate, low, high, achieved coverage) for the ``q`` quantile of ``values``, or None when there are
    too few values for two order statistics to bracket it at ``confidence``.

    The bounds are order statistics x(l) and x(u) (1-based) with l and u the binomial(n, q) quantiles at
    (1-confidence)/2 and (1+confidence)/2: P(x(l) <= true quantile <= x(u)) >= confidence for continuous data.

    >>> est, low, high, cov = quantile_interval(np.arange(1.0, 101.0), 0.5)
    >>> est, low, high, round(cov, 3)
    (50.5, 40.0, 61.0, 0.965)
    """
    n = len(values)
    if n == 0:
        return None
    sps = _scipy_stats()
    alpha = 1.0 - confidence
    low_rank = int(sps.binom.ppf(alpha / 2.0, n, q))  # P(B < low_rank) <= alpha/2
    high_rank = int(sps.binom.ppf(1.0 - alpha / 2.0, n, q)) + 1
    if low_rank < 1 or high_rank > n:
        return None
    ordered = np.sort(values, kind="stable")
    coverage = float(sps.binom.cdf(high_rank - 1, n, q) - sps.binom.cdf(low_rank - 1, n, q))
    return float(np.quantile(ordered, q)), float(ordered[low_rank - 1]), float(ordered[high_rank - 1]), coverage


def _jittered(values: np.ndarray) -> np.ndarray:
    """Integer-valued data plus Uniform[0, 1) noise (seeded by the data, so a result is reproducible);
    other data unchanged. Order statistics of heavily tied data (token counts) give intervals of zero width,
    and then any difference looks certain; jittered counts are continuous, and their quantiles determine
    the counts' (Machado & Santos Silva, 2005: Q_y(q) = ceil(Q_z(q)) - 1)."""
    if len(values) == 0 or not np.all(np.floor(values) == values):
        return values
    rng = np.random.default_rng([len(values), int(np.sum(values) % 2**32)])
    return values + rng.random(len(values))


def diff_of_quantiles(a: np.ndarray, b: np.ndarray, q: float, confidence: float = 0.95) -> Difference:
    """``quantile_q(b) - quantile_q(a)`` with Price & Bonett's interval and the matching z-test p-value.

    Each side's standard error is (x(u) - x(l)) / (2·z*), z* the normal quantile of the *achieved* coverage
    of its order-statistic interval. For integer-valued data the interval and the test are computed on the
    jittered values (see `_jittered`), centred on the jittered difference; ``a``, ``b`` and ``diff`` are
    always the plain sample quantiles.

    >>> rng = np.random.default_rng(1)
    >>> d = diff_of_quantiles(rng.normal(100, 10, 2000), rng.normal(110, 10, 2000), 0.5)
    >>> round(d.diff), d.ci_low > 5, d.p_value < 1e-6
    (10, True, True)
    """
    est_a = float(np.quantile(a, q)) if len(a) else None
    est_b = float(np.quantile(b, q)) if len(b) else None
    diff = est_b - est_a if est_a is not None and est_b is not None else None
    ja, jb = _jittered(a), _jittered(b)
    side_a, side_b = quantile_interval(ja, q, confidence), quantile_interval(jb, q, confidence)
    if side_a is None or side_b is None or diff is None:
        return Difference(est_a, est_b, diff, None, None, None)
    se2 = 0.0
    for _, low, high, coverage in (side_a, side_b):
        z_star = _NORMAL.inv_cdf(0.5 + min(coverage, 1.0 - 1e-12) / 2.0)
        se2 += ((high - low) / (2.0 * z_star)) ** 2
    centre = side_b[0] - side_a[0]
    se = math.sqrt(se2)
    if se == 0.0:  # both sides constant and not integers: the difference is exact
        return Difference(est_a, est_b, diff, diff, diff, 1.0 if diff == 0 else 0.0)
    half = _z(confidence) * se
    return Difference(est_a, est_b, diff, centre - half, centre + half, _two_sided_p(centre / se))


def rank_test(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Mann–Whitney U p-value (asymptotic, tie-corrected); None when a side is empty or every value
    is the same on both sides.

    >>> rank_test(np.arange(50.0), np.arange(50.0) + 25) < 0.001
    True
    """
    if len(a) == 0 or len(b) == 0:
        return None
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(_scipy_stats().mannwhitneyu(b, a, alternative="two-sided", method="asymptotic").pvalue)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values, in the input order; None stays None and is not counted in the family.

    Reject where the adjusted p < alpha: the chance of one or more false rejections is at most alpha.

    >>> holm([0.01, 0.04, None, 0.03])
    [0.03, 0.06, None, 0.06]
    """
    present = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(present)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = round(running, 15)
    return adjusted


def mix_test(counts_a: dict[str, int], counts_b: dict[str, int]) -> float | None:
    """Chi-square test of homogeneity: do A and B draw from the same mix of categories (apps)? None when
    there is only one category or a side is empty.

    >>> mix_test({"chat": 50, "code": 50}, {"chat": 90, "code": 10}) < 0.001
    True
    """
    keys = sorted(set(counts_a) | set(counts_b))
    if len(keys) < 2 or not sum(counts_a.values()) or not sum(counts_b.values()):
        return None
    table = np.array([[counts_a.get(k, 0) for k in keys], [counts_b.get(k, 0) for k in keys]], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return None
    return float(_scipy_stats().chi2_contingency(table, correction=False).pvalue)
