"""What the labels say: accuracy with a confidence interval, and how much reviewers agree.

Accuracy of a model (or app) over a window is estimated from the *uniform* samples only, each weighted by
1/p, its inclusion probability (the Hájek estimator: sum(w·y) / sum(w)); risk samples are chosen for being
suspicious and would bias it. ``y`` of a record is its share of ``correct`` among its ``correct`` and
``incorrect`` labels (0, ½ or 1 with two reviewers); records whose labels all abstain (``unsure``…) are left
out. The interval is Wilson's, computed at Kish's effective sample size ``(sum w)² / sum(w²)`` so that
unequal weights widen it. Which uniform samples get labelled must not depend on their content for this to
hold; the review queue hands them out in arrival order.

The functions on numbers are pure; `accuracy_estimates` and `agreement` read the database.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from statistics import NormalDist

from sqlalchemy import Engine, case, func, select

from monitor.storage.schema import labels, samples

CORRECT = "correct"
INCORRECT = "incorrect"
_GROUP_COLUMNS = {"model": samples.c.model, "app": samples.c.app}


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion; ``n`` may be fractional (an effective sample size).

    >>> low, high = wilson(90, 100)
    >>> round(low, 3), round(high, 3)
    (0.826, 0.945)
    """
    if n <= 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2.0 * n)) / denom
    half = z / denom * math.sqrt(max(p * (1.0 - p) / n + z * z / (4.0 * n * n), 0.0))
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True, slots=True)
class Proportion:
    """A weighted share with its interval. ``n`` counts observations, ``n_effective`` is Kish's size."""

    estimate: float
    low: float
    high: float
    n: int
    n_effective: float


def weighted_proportion(values: Sequence[float], weights: Sequence[float],
                        confidence: float = 0.95) -> Proportion:
    """Hájek estimate of a share from values in [0, 1] with weights 1/p, and its Wilson interval.

    >>> p = weighted_proportion([1, 1, 0, 1], [1, 1, 1, 1])
    >>> p.estimate, p.n, p.n_effective
    (0.75, 4, 4.0)
    """
    if len(values) != len(weights):
        raise ValueError("values and weights must have the same length")
    sum_w = math.fsum(weights)
    if not values or sum_w <= 0:
        return Proportion(math.nan, 0.0, 1.0, 0, 0.0)
    estimate = math.fsum(w * y for w, y in zip(weights, values, strict=True)) / sum_w
    n_eff = sum_w * sum_w / math.fsum(w * w for w in weights)
    low, high = wilson(estimate * n_eff, n_eff, confidence)
    return Proportion(estimate, low, high, len(values), n_eff)


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa of paired verdicts (first reviewer, second reviewer); None when undefined.

    >>> cohen_kappa([("correct", "correct"), ("incorrect", "incorrect"), ("correct", "incorrect")])
    0.4
    """
    n = len(pairs)
    if n == 0:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    expected = sum(first[c] * second[c] for c in first) / (n * n)
    if expected >= 1.0:
        return None
    return round((observed - expected) / (1.0 - expected), 12)


def significantly_lower(current: Proportion, previous: Proportion, alpha: float = 0.05) -> bool:
    """One-sided two-proportion z-test at effective sample sizes: is ``current`` below ``previous``?

    >>> significantly_lower(Proportion(0.70, 0, 1, 400, 400.0), Proportion(0.90, 0, 1, 400, 400.0))
    True
    >>> significantly_lower(Proportion(0.88, 0, 1, 50, 50.0), Proportion(0.90, 0, 1, 50, 50.0))
    False
    """
    n1, n2 = current.n_effective, previous.n_effective
    if n1 <= 0 or n2 <= 0 or math.isnan(current.estimate) or math.isnan(previous.estimate):
        return False
    pooled = (current.estimate * n1 + previous.estimate * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return False
    z = (previous.estimate - current.estimate) / se
    return 1.0 - NormalDist().cdf(z) < alpha


@dataclass(frozen=True, slots=True)
class AccuracyEstimate:
    """Accuracy of one group (e.g. ``{"model": "m1"}``) over [window_start, window_end)."""

    group: dict[str, str | None]
    window_start: datetime
    window_end: datetime
    accuracy: Proportion


def _record_verdicts():  # type: ignore[no-untyped-def]
    """Per record: how many decisive labels, how many say correct."""
    decisive = case((labels.c.verdict.in_((CORRECT, INCORRECT)), 1), else_=0)
    correct = case((labels.c.verdict == CORRECT, 1), else_=0)
    return (
        select(labels.c.record_id, func.sum(decisive).label("decisive"), func.sum(correct).label("correct"))
        .group_by(labels.c.record_id)
        .subquery()
    )


def accuracy_estimates(engine: Engine, window_start: datetime, window_end: datetime,
                       by: Sequence[str] = ("model",), confidence: float = 0.95) -> list[AccuracyEstimate]:
    """Accuracy per group of labelled uniform samples whose record time lies in the window, sorted by group.

    ``by`` is any of ``("model",)``, ``("app",)``, ``("model", "app")`` or ``()`` for all traffic.
    """
    unknown = set(by) - set(_GROUP_COLUMNS)
    if unknown:
        raise ValueError(f"cannot group accuracy by {sorted(unknown)}; use model and/or app")
    verdicts = _record_verdicts()
    query = (
        select(*(_GROUP_COLUMNS[k] for k in by), samples.c.inclusion_probability,
               verdicts.c.decisive, verdicts.c.correct)
        .join_from(samples, verdicts, verdicts.c.record_id == samples.c.record_id)
        .where(samples.c.reason == "uniform", samples.c.ts >= window_start, samples.c.ts < window_end,
               verdicts.c.decisive > 0, samples.c.inclusion_probability > 0)
    )
    groups: dict[tuple[str | None, ...], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    with engine.connect() as conn:
        for row in conn.execute(query):
            key = tuple(row[: len(by)])
            values, weights = groups[key]
            values.append(row.correct / row.decisive)
            weights.append(1.0 / row.inclusion_probability)
    return [
        AccuracyEstimate(dict(zip(by, key, strict=True)), window_start, window_end,
                         weighted_proportion(values, weights, confidence))
        for key, (values, weights) in sorted(groups.items(), key=lambda kv: tuple(str(k) for k in kv[0]))
    ]


@dataclass(frozen=True, slots=True)
class Agreement:
    """Agreement of reviewers who labelled the same records: Cohen's kappa over all such pairs."""

    n_pairs: int
    observed: float | None
    kappa: float | None


def agreement(engine: Engine, window_start: datetime, window_end: datetime) -> Agreement:
    """Kappa over pairs of labels on one record by two reviewers (lower reviewer id first)."""
    first, second = labels.alias("first"), labels.alias("second")
    query = (
        select(first.c.verdict, second.c.verdict)
        .join_from(first, second, (first.c.record_id == second.c.record_id)
                   & (first.c.reviewer_id < second.c.reviewer_id))
        .join(samples, samples.c.id == first.c.sample_id)
        .where(samples.c.ts >= window_start, samples.c.ts < window_end)
    )
    with engine.connect() as conn:
        pairs = [(a, b) for a, b in conn.execute(query)]
    observed = sum(a == b for a, b in pairs) / len(pairs) if pairs else None
    return Agreement(len(pairs), observed, cohen_kappa(pairs))
