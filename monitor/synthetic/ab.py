"""Generated arms of an A/B test with known truth: the rates and distributions of each arm are parameters, so a
test or benchmark knows which metrics *really* differ.

`arm_side` builds a `monitor.compare.metrics.Side` directly (fast: the A/A false-positive test and the coverage
benchmark draw thousands); `arm_rows` gives the same traffic as `records` rows, `detections` rows for the
leaks and review `samples`/`labels`, for tests that go through the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from monitor.compare.metrics import ALL, RATE_COLUMNS, VALUE_COLUMNS, Side
from monitor.review.estimates import weighted_proportion


@dataclass(frozen=True)
class Arm:
    """The truth of one arm. Rates are per record (refusal, truncation, toxic, leaks among ``ok`` answers);
    latency is lognormal around ``latency_median_ms``; lengths and tokens are fixed distributions."""

    model: str
    error_rate: float = 0.02
    refusal_rate: float = 0.03
    truncation_rate: float = 0.02
    toxic_rate: float = 0.01
    pii_rate: float = 0.01
    secret_rate: float = 0.003
    feedback_share: float = 0.15
    low_feedback_rate: float = 0.2
    latency_median_ms: float = 450.0
    latency_sigma: float = 0.45
    accuracy: float = 0.9
    apps: tuple[tuple[str, float], ...] = (("support-bot", 0.5), ("code-assistant", 0.3), ("search", 0.2))

    def but(self, **changes: Any) -> Arm:
        return replace(self, **changes)


def arm_columns(arm: Arm, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(apps, columns) of ``n`` records of ``arm``, shaped as `Side` holds them."""
    names = np.array([a for a, _ in arm.apps], dtype=object)
    shares = np.array([s for _, s in arm.apps]) / sum(s for _, s in arm.apps)
    apps = names[rng.choice(len(names), size=n, p=shares)]
    error = rng.random(n) < arm.error_rate
    ok = ~error

    def flag(rate: float) -> np.ndarray:
        return np.where(ok, (rng.random(n) < rate).astype(float), np.nan)

    toxic = rng.random(n) < arm.toxic_rate
    toxicity = np.where(ok, np.where(toxic, rng.uniform(0.5, 1.0, n), rng.uniform(0.0, 0.3, n)), np.nan)
    has_feedback = rng.random(n) < arm.feedback_share
    feedback = np.where(has_feedback, (rng.random(n) >= arm.low_feedback_rate).astype(float), np.nan)
    columns = {
        "error": error.astype(float),
        "refusal": flag(arm.refusal_rate),
        "truncated": flag(arm.truncation_rate),
        "toxicity": toxicity,
        "pii_leak": flag(arm.pii_rate),
        "secret_leak": flag(arm.secret_rate),
        "feedback": feedback,
        "latency_ms": np.where(ok, np.round(arm.latency_median_ms * rng.lognormal(0, arm.latency_sigma, n), 1),
                               np.nan),
        "prompt_chars": np.where(ok, np.floor(rng.lognormal(math.log(180), 0.7, n)), np.nan),
        "response_chars": np.where(ok, np.floor(rng.lognormal(math.log(900), 0.35, n)), np.nan),
        "tokens_in": np.where(ok, rng.poisson(45, n).astype(float), np.nan),
        "tokens_out": np.where(ok, rng.poisson(220, n).astype(float), np.nan),
    }
    assert set(columns) == set(RATE_COLUMNS + VALUE_COLUMNS)
    return apps, columns


def arm_side(arm: Arm, n: int, rng: np.random.Generator, *, labelled: int = 0, label: str | None = None) -> Side:
    """A `Side` of ``n`` records, with ``labelled`` uniform review labels (equal weights) for accuracy."""
    apps, columns = arm_columns(arm, n, rng)
    side = Side(label or arm.model, apps, columns)
    if labelled:
        correct = (rng.random(labelled) < arm.accuracy).astype(float)
        side.accuracy[ALL] = weighted_proportion(correct.tolist(), [1.0] * labelled)
    return side


def arm_rows(arm: Arm, n: int, rng: np.random.Generator, start: datetime, span: timedelta,
             prefix: str | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(`records` rows, `detections` rows) of ``n`` records spread over [start, start + span)."""
    apps, cols = arm_columns(arm, n, rng)
    offsets = rng.uniform(0, span.total_seconds(), n)
    prefix = prefix or arm.model
    rows, found = [], []
    for i in range(n):
        ok = cols["error"][i] == 0.0
        rid = f"{prefix}-{i:06d}"
        ts = start + timedelta(seconds=float(offsets[i]))

        def value(name: str, cast: type = float, i: int = i) -> Any:
            v = cols[name][i]
            return None if np.isnan(v) else cast(v)

        pii, secret = value("pii_leak", int), value("secret_leak", int)
        rows.append({
            "id": rid, "ts": ts, "ingested_at": ts, "model": arm.model, "app": apps[i],
            "status": "ok" if ok else "error", "error": None if ok else "upstream timeout",
            "prompt_chars": value("prompt_chars", int) or 0, "response_chars": value("response_chars", int) or 0,
            "latency_ms": value("latency_ms"), "tokens_in": value("tokens_in", int),
            "tokens_out": value("tokens_out", int), "feedback_score": value("feedback"),
            "response_toxicity": value("toxicity"), "refusal": None if not ok else bool(cols["refusal"][i]),
            "truncated": None if not ok else bool(cols["truncated"][i]), "pii_count": pii,
            "secret_count": secret, "topic": "llm-logs", "partition": 0, "offset": i,
        })
        for detector, hit, kind in (("pii", pii, "EMAIL_ADDRESS"), ("secrets", secret, "AWS_ACCESS_KEY")):
            if hit:
                found.append({"record_id": rid, "detector": detector, "score": 1.0, "flagged": True,
                              "details": {"findings": [{"type": kind, "field": "response", "start": 3, "end": 20}]}})
    return rows, found
