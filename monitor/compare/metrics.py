"""Two arms in, one list of compared metrics out: every metric's A, B, B - A with an interval, a p-value and a
verdict after Holm's correction over *all* metrics compared (every app too, with ``by_app``).

What is compared (B - A; "better" says which direction is good):

* rates — errors (all records), refusals, truncations, toxic responses (toxicity >= the toxic cut-off), PII
  and credential leaks in the response, low feedback (score below the cut-off), each over the records that
  carry the signal (a detector that did not run leaves NULL: not counted as 0);
* medians and 95th percentiles of latency, prompt and response length, tokens in and out, over ``ok``
  records: the median row's p-value is the Mann–Whitney rank test, the p95 row's the Price–Bonett z-test;
  both intervals are Price–Bonett's (see `monitor.compare.stats`);
* review accuracy — the Hájek-weighted estimate of `monitor.review.estimates` at Kish's effective size,
  compared with Newcombe's interval;
* shadow agreement with each reference model both arms were replayed against.

The traffic mix (share of each app) is reported beside the metrics with a chi-square test, outside the
corrected family: a difference in mix explains differences, it is not one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from detectors.config import TOXIC_AT
from monitor.compare.stats import (
    Difference,
    diff_of_proportions,
    diff_of_quantiles,
    holm,
    mix_test,
    rank_test,
)
from monitor.review.estimates import Proportion

ALL = "*"
"""The app key of all traffic together."""

RATE_COLUMNS = ("error", "refusal", "truncated", "toxicity", "pii_leak", "secret_leak", "feedback")
VALUE_COLUMNS = ("latency_ms", "prompt_chars", "response_chars", "tokens_in", "tokens_out")


@dataclass(slots=True)
class Side:
    """One arm: per record, parallel float arrays (NaN where the signal is absent) and its app.

    ``error`` is 1/0; ``refusal``, ``truncated``, ``pii_leak``, ``secret_leak`` are 1/0/NaN; ``toxicity`` and
    ``feedback`` are scores; the `VALUE_COLUMNS` are NaN on error records (only ``ok`` answers are measured).
    ``accuracy`` maps an app (or `ALL`) to the review estimate; ``shadow`` holds (app, reference, agree).
    """

    label: str
    apps: np.ndarray
    columns: dict[str, np.ndarray]
    accuracy: dict[str, Proportion] = field(default_factory=dict)
    shadow: list[tuple[str, str, bool]] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.apps)

    def only(self, app: str) -> Side:
        """The records of one app (accuracy and shadow rows narrowed the same way)."""
        if app == ALL:
            return self
        mask = self.apps == app
        return Side(self.label, self.apps[mask], {k: v[mask] for k, v in self.columns.items()},
                    {ALL: self.accuracy[app]} if app in self.accuracy else {},
                    [row for row in self.shadow if row[0] == app])

    @classmethod
    def from_rows(cls, label: str, rows: list[dict[str, Any]], **extra: Any) -> Side:
        """A side from dicts keyed like `RATE_COLUMNS` + `VALUE_COLUMNS` + ``app`` (None -> NaN, app None -> '')."""
        apps = np.array([r.get("app") or "" for r in rows], dtype=object)
        columns = {
            name: np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows], dtype=float)
            for name in RATE_COLUMNS + VALUE_COLUMNS
        }
        return cls(label, apps, columns, **extra)


@dataclass(frozen=True, slots=True)
class Metric:
    """One compared metric. ``diff`` is B - A (points of a share for rates); ``p_adjusted`` is Holm's;
    ``verdict`` is ``worse``/``better`` (for B, when the metric has a good direction), ``different``,
    ``no clear difference`` or ``not enough data``."""

    name: str
    label: str
    kind: str
    unit: str
    better: str | None
    app: str
    a: float | None
    b: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    significant: bool
    verdict: str
    n_a: int
    n_b: int
    test: str

    @property
    def ratio(self) -> float | None:
        """B / A where both are positive (``3.0`` reads "three times A")."""
        if self.a is None or self.b is None or self.a <= 0:
            return None
        return self.b / self.a

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        return {k: _clean(v) for k, v in out.items()}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True, slots=True)
class Mix:
    """How the traffic of each arm splits over apps, and whether the splits differ (chi-square)."""

    a: dict[str, int]
    b: dict[str, int]
    p_value: float | None


@dataclass(frozen=True, slots=True)
class Comparison:
    """The whole result: labels of the arms, the metrics (one Holm family), the mix."""

    a_label: str
    b_label: str
    metrics: list[Metric]
    mix: Mix
    alpha: float
    confidence: float
    correction: str = "holm"
    context: dict[str, Any] = field(default_factory=dict)

    def significant(self) -> list[Metric]:
        return [m for m in self.metrics if m.significant]

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a_label, "b": self.b_label, **self.context,
            "alpha": self.alpha, "confidence": self.confidence, "correction": self.correction,
            "metrics": [m.as_dict() for m in self.metrics],
            "mix": {"a": self.mix.a, "b": self.mix.b, "p_value": self.mix.p_value},
        }


@dataclass(frozen=True, slots=True)
class _Rate:
    name: str
    label: str
    column: str
    test: Callable[[np.ndarray], np.ndarray]


def _rates(toxic_at: float, low_feedback_below: float) -> list[_Rate]:
    def is_one(v: np.ndarray) -> np.ndarray:
        return v == 1.0
    return [
        _Rate("error_rate", "error rate", "error", is_one),
        _Rate("refusal_rate", "refusal rate", "refusal", is_one),
        _Rate("truncation_rate", "truncation rate", "truncated", is_one),
        _Rate("toxic_rate", "toxic-response rate", "toxicity", lambda v: v >= toxic_at),
        _Rate("pii_leak_rate", "personal-data leak rate", "pii_leak", is_one),
        _Rate("secret_leak_rate", "credential leak rate", "secret_leak", is_one),
        _Rate("low_feedback_rate", "low-feedback rate", "feedback", lambda v: v < low_feedback_below),
    ]


_VALUE_LABELS = {"latency_ms": ("latency", "ms", "lower"), "prompt_chars": ("prompt length", "chars", None),
                 "response_chars": ("response length", "chars", None), "tokens_in": ("tokens in", "tokens", None),
                 "tokens_out": ("tokens out", "tokens", None)}


def _rate_row(rate: _Rate, a: Side, b: Side, app: str, confidence: float) -> tuple:
    va, vb = a.columns[rate.column], b.columns[rate.column]
    va, vb = va[~np.isnan(va)], vb[~np.isnan(vb)]
    d = diff_of_proportions(float(rate.test(va).sum()), len(va), float(rate.test(vb).sum()), len(vb), confidence)
    return (rate.name, rate.label, "rate", "share", "lower", app, d, len(va), len(vb),
            "newcombe interval, pooled z-test")


def _value_rows(column: str, a: Side, b: Side, app: str, confidence: float) -> list[tuple]:
    va, vb = a.columns[column], b.columns[column]
    va, vb = va[~np.isnan(va)], vb[~np.isnan(vb)]
    label, unit, better = _VALUE_LABELS[column]
    median = diff_of_quantiles(va, vb, 0.5, confidence)
    median = Difference(median.a, median.b, median.diff, median.ci_low, median.ci_high, rank_test(va, vb))
    p95 = diff_of_quantiles(va, vb, 0.95, confidence)
    return [
        (f"{column}.median", f"median {label}", "median", unit, better, app, median, len(va), len(vb),
         "price-bonett interval, mann-whitney test"),
        (f"{column}.p95", f"95th percentile {label}", "p95", unit, better, app, p95, len(va), len(vb),
         "price-bonett interval and z-test"),
    ]


def _accuracy_row(a: Side, b: Side, app: str, confidence: float) -> tuple:
    pa, pb = a.accuracy.get(ALL), b.accuracy.get(ALL)
    if pa is None or pb is None or pa.n == 0 or pb.n == 0:
        d = Difference(pa.estimate if pa and pa.n else None, pb.estimate if pb and pb.n else None,
                       None, None, None, None)
    else:
        d = diff_of_proportions(pa.estimate * pa.n_effective, pa.n_effective,
                                pb.estimate * pb.n_effective, pb.n_effective, confidence)
    return ("review_accuracy", "review accuracy (weighted)", "accuracy", "share", "higher", app, d,
            pa.n if pa else 0, pb.n if pb else 0, "hajek estimate, newcombe interval at effective size")


def _shadow_rows(a: Side, b: Side, app: str, confidence: float) -> list[tuple]:
    rows = []
    refs_a = Counter(ref for _, ref, _ in a.shadow)
    refs_b = Counter(ref for _, ref, _ in b.shadow)
    for ref in sorted(set(refs_a) & set(refs_b)):
        agree_a = sum(1 for _, r, ok in a.shadow if r == ref and ok)
        agree_b = sum(1 for _, r, ok in b.shadow if r == ref and ok)
        d = diff_of_proportions(agree_a, refs_a[ref], agree_b, refs_b[ref], confidence)
        rows.append((f"shadow_agreement.{ref}", f"agreement with {ref}", "agreement", "share", "higher", app, d,
                     refs_a[ref], refs_b[ref], "newcombe interval, pooled z-test"))
    return rows


def _verdict(better: str | None, d: Difference, significant: bool) -> str:
    if d.p_value is None or d.diff is None:
        return "not enough data"
    if not significant:
        return "no clear difference"
    if better is None:
        return "different"
    higher = d.diff > 0
    return "worse" if higher == (better == "lower") else "better"


def compare_sides(a: Side, b: Side, *, by_app: bool = False, alpha: float = 0.05, confidence: float = 0.95,
                  toxic_at: float = TOXIC_AT, low_feedback_below: float = 0.5) -> Comparison:
    """Compare B against A on every metric; with ``by_app`` also within each app both arms served. One Holm
    family over every row that has a p-value; ``significant`` means Holm-adjusted p < ``alpha``."""
    groups = [ALL]
    if by_app:
        groups += sorted(set(a.apps.tolist()) & set(b.apps.tolist()))
    raw: list[tuple] = []
    for app in groups:
        sa, sb = a.only(app), b.only(app)
        raw += [_rate_row(rate, sa, sb, app, confidence) for rate in _rates(toxic_at, low_feedback_below)]
        for column in VALUE_COLUMNS:
            raw += _value_rows(column, sa, sb, app, confidence)
        raw.append(_accuracy_row(sa, sb, app, confidence))
        raw += _shadow_rows(sa, sb, app, confidence)
    adjusted = holm([row[6].p_value for row in raw])
    metrics = []
    for (name, label, kind, unit, better, app, d, n_a, n_b, test), p_adj in zip(raw, adjusted, strict=True):
        significant = p_adj is not None and p_adj < alpha
        metrics.append(Metric(name, label, kind, unit, better, app, d.a, d.b, d.diff, d.ci_low, d.ci_high,
                              d.p_value, p_adj, significant, _verdict(better, d, significant), n_a, n_b, test))
    mix = Mix(dict(Counter(a.apps.tolist())), dict(Counter(b.apps.tolist())),
              mix_test(Counter(a.apps.tolist()), Counter(b.apps.tolist())))
    return Comparison(a.label, b.label, metrics, mix, alpha, confidence)
