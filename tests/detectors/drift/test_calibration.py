"""Thresholds keep their promise: no more false alarms than the target, whatever the signal's shape."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors.drift.calibration import adjustment_coefficient, threshold


def test_gaussian_increments_have_the_textbook_adjustment_coefficient():
    z = np.linspace(-8, 8, 4001)
    density = np.exp(-z * z / 2)
    assert adjustment_coefficient(z - 0.25, density) == pytest.approx(0.5, rel=1e-3)


def _alarms(increments: np.ndarray, h: float) -> int:
    s, alarms = 0.0, 0
    for y in increments.tolist():
        s = max(0.0, s + y)
        if s > h:
            alarms, s = alarms + 1, 0.0
    return alarms


@pytest.mark.parametrize("shape", ["normal", "skewed", "binary"])
def test_a_chart_at_the_calibrated_threshold_raises_fewer_alarms_than_promised(shape):
    rng = np.random.default_rng(11)
    n, arl0, k = 300_000, 2_000, 0.25
    if shape == "normal":
        x = rng.normal(size=n)
    elif shape == "skewed":  # exponential, standardised: a long right tail
        x = rng.exponential(size=n) - 1.0
    else:  # a 10% event rate, standardised
        x = ((rng.random(n) < 0.1) - 0.1) / math.sqrt(0.09)
    values, counts = np.unique(np.round(x, 2), return_counts=True)
    h = threshold(values - k, counts, arl0)
    # The tail of the skewed and binary signals is heavier than a normal one's: their threshold is higher.
    assert _alarms(x - k, h) <= n / arl0
    assert _alarms(x - k, h / 3) > 0  # and the threshold is not absurdly high: a third of it does fire


def test_a_chart_that_cannot_drift_down_has_no_threshold():
    with pytest.raises(ValueError, match="negative mean"):
        adjustment_coefficient([0.1, -0.05], [0.5, 0.5])
