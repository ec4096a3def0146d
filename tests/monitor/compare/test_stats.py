"""The statistics behind `watchkeeper compare`, against published figures and against their own promises."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.compare.stats import diff_of_proportions, diff_of_quantiles, holm, mix_test, newcombe, quantile_interval
from monitor.review.estimates import wilson


def test_newcombe_interval_matches_the_published_example() -> None:
    """Newcombe (1998), example (a): 56/70 against 48/80 gives 0.0524 to 0.3339 (method 10)."""
    diff, low, high = newcombe(48 / 80, *wilson(48, 80), 56 / 70, *wilson(56, 70))
    assert (round(diff, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)


def test_holm_adjusts_like_the_textbook() -> None:
    """Holm: sorted p times (m - rank), made monotone; None is left out of the family."""
    assert holm([0.01, 0.04, 0.03, 0.005]) == [0.03, 0.06, 0.06, 0.02]
    assert holm([None, 0.2]) == [None, 0.2]


def test_rare_events_use_an_exact_test_that_does_not_cry_wolf() -> None:
    """2 leaks in 1000 against 7 in 1000: the z-test would say p≈0.096 is borderline; Fisher's exact test
    is what is used for counts this small, and it is the more cautious one."""
    d = diff_of_proportions(2, 1000, 7, 1000)
    assert d.p_value == pytest.approx(0.1789, abs=1e-3)
    assert d.ci_low < 0 < d.ci_high


def test_order_statistic_interval_has_at_least_its_coverage() -> None:
    """For a continuous variable the 95 % interval for the median misses the true median at most 5 % of the
    time (binomial choice of order statistics): measured over 2000 samples of 60 exponentials."""
    rng = np.random.default_rng(7)
    true_median = np.log(2.0)
    hits = 0
    for _ in range(2000):
        _, low, high, coverage = quantile_interval(rng.exponential(1.0, 60), 0.5)
        assert coverage >= 0.95
        hits += low <= true_median <= high
    assert hits / 2000 >= 0.94


def test_tied_counts_do_not_make_a_difference_look_certain() -> None:
    """Token counts are integers with heavy ties: two samples from the same Poisson must not be called
    different because both order-statistic intervals collapsed to one value."""
    rng = np.random.default_rng(3)
    rejections = sum(diff_of_quantiles(rng.poisson(45, 800).astype(float), rng.poisson(45, 800).astype(float),
                                       0.95).p_value < 0.05 for _ in range(300))
    assert rejections / 300 <= 0.08


def test_a_different_mix_of_apps_is_detected() -> None:
    """A 50/50 mix against 90/10 is a different mix; the same mix is not."""
    assert mix_test({"chat": 500, "code": 500}, {"chat": 900, "code": 100}) < 1e-6
    assert mix_test({"chat": 500, "code": 500}, {"chat": 505, "code": 495}) > 0.5
