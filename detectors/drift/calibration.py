"""Thresholds for CUSUM charts, chosen from a warm-up sample for a target false-alarm rate.

A one-sided CUSUM ``S = max(0, S + y)`` whose increments ``y`` have a negative mean on stationary traffic
crosses ``h`` by chance at a rate governed by ``θ* > 0``, the adjustment coefficient of the increment
distribution: the root of ``E[exp(θ y)] = 1`` (Lundberg's inequality bounds each excursion's chance of
reaching ``h`` by ``exp(-θ* h)``). Wald's approximation of the in-control average run length,
``(exp(θ*h) − θ*h − 1) / (θ*·|E y|)``, holds for *any* increment distribution, skewed or discrete, as long
as we know it, and is conservative (it ignores the overshoot over ``h``). We
estimate it from the warm-up sample (a histogram or a base rate), and pay for the estimation error with a
`margin`: the chart is calibrated as if the true mean were ``margin`` standard errors on the unlucky side
of the estimate. For Gaussian increments ``θ* = 2k`` and the formula is Siegmund's without his overshoot
correction of 1.166 standard deviations.

>>> round(adjustment_coefficient([-1.25, 0.75], [0.5, 0.5]), 3)
0.522
>>> round(threshold([-1.25, 0.75], [0.5, 0.5], arl0=1e6), 1)
22.6
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_THRESHOLD = 1.0
"""A chart whose warm-up never moved up (a constant signal) still needs a finite threshold."""


def adjustment_coefficient(increments: Sequence[float] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """θ* > 0 with ``Σ p·exp(θ·y) = 1``; ``inf`` when no increment is positive (the chart cannot rise).

    Raises ValueError when the increments do not drift down on average: such a chart has no calibrated
    threshold (its reference value ``k`` is too small for the warm-up's uncertainty).
    """
    y = np.asarray(increments, dtype=float)
    p = np.asarray(probs, dtype=float)
    keep = p > 0
    y, p = y[keep], p[keep] / p[keep].sum()
    if float(p @ y) >= 0:
        raise ValueError("increments must have a negative mean on stationary data (raise k or the warm-up)")
    if not (y > 0).any():
        return math.inf

    def log_mgf(theta: float) -> float:
        top = float((theta * y).max())
        return top + math.log(float(p @ np.exp(theta * y - top)))

    lo, hi = 0.0, 1.0
    while log_mgf(hi) < 0:
        lo, hi = hi, hi * 2
    for _ in range(80):
        mid = (lo + hi) / 2
        if log_mgf(mid) < 0:
            lo = mid
        else:
            hi = mid
    return hi


def threshold(increments: Sequence[float] | np.ndarray, probs: Sequence[float] | np.ndarray, arl0: float) -> float:
    """The CUSUM threshold ``h`` with in-control average run length at least ``arl0`` records.

    Solves Wald's approximation ``ARL(h) = (exp(θ*h) − θ*h − 1) / (θ*·|E y|)`` for ``h``; it ignores the
    overshoot over ``h`` (Siegmund's correction), which only makes the real run length longer.
    """
    theta = adjustment_coefficient(increments, probs)
    if not math.isfinite(theta):
        return MIN_THRESHOLD
    p = np.asarray(probs, dtype=float)
    drift = abs(float(p @ np.asarray(increments, dtype=float)) / p.sum())

    def arl(h: float) -> float:
        t = theta * h
        return (math.expm1(t) - t) / (theta * drift) if t < 700 else math.inf

    lo, hi = 0.0, math.log(arl0) / theta  # the Lundberg bound: arl(hi) >= arl0 always
    while arl(hi) < arl0:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if arl(mid) < arl0 else (lo, mid)
    return max(MIN_THRESHOLD, hi)
