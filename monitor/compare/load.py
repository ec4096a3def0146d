"""Read one arm of a comparison from the database: a model's records in a time window (optionally one app),
its reviewed accuracy and its shadow replays.

A leak is what the leak counters call one (`monitor.ingest.steps.aggregate.in_response`): a pii/secrets
detection whose findings lie in the *response*; personal data only in the prompt is not the model's doing.
Records the detector did not scan (NULL counts) are left out of that rate's denominator.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from sqlalchemy import Engine, and_, select

from monitor.compare.metrics import ALL, RATE_COLUMNS, VALUE_COLUMNS, Side
from monitor.ingest.steps.aggregate import in_response
from monitor.review.estimates import accuracy_estimates
from monitor.storage.schema import detections, records, shadow_comparisons


def _where(model: str, start: datetime, end: datetime, app: str | None):  # type: ignore[no-untyped-def]
    clauses = [records.c.model == model, records.c.ts >= start, records.c.ts < end]
    if app is not None:
        clauses.append(records.c.app == app)
    return and_(*clauses)


def _leaks(engine: Engine, where, detector: str, count_column) -> set[str]:  # type: ignore[no-untyped-def]
    """Ids of records in the arm whose ``detector`` findings lie in the response."""
    query = (select(detections.c.record_id, detections.c.details)
             .join_from(detections, records, records.c.id == detections.c.record_id)
             .where(where, detections.c.detector == detector, count_column > 0))
    with engine.connect() as conn:
        return {rid for rid, details in conn.execute(query) if in_response(details)}


def load_side(engine: Engine, model: str, start: datetime, end: datetime, *, app: str | None = None,
              label: str | None = None, confidence: float = 0.95) -> Side:
    """The records of ``model`` with ``start <= ts < end`` (and ``app`` when given) as a `Side`."""
    where = _where(model, start, end, app)
    c = records.c
    query = select(c.id, c.app, c.status, c.refusal, c.truncated, c.response_toxicity, c.pii_count,
                   c.secret_count, c.feedback_score, *(c[name] for name in VALUE_COLUMNS)).where(where)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    pii = _leaks(engine, where, "pii", c.pii_count) if rows else set()
    secrets = _leaks(engine, where, "secrets", c.secret_count) if rows else set()
    n = len(rows)
    cols = {name: np.full(n, np.nan) for name in RATE_COLUMNS + VALUE_COLUMNS}
    apps = np.empty(n, dtype=object)
    for i, r in enumerate(rows):
        apps[i] = r.app or ""
        ok = r.status != "error"
        cols["error"][i] = 0.0 if ok else 1.0
        if r.refusal is not None:
            cols["refusal"][i] = float(r.refusal)
        if r.truncated is not None:
            cols["truncated"][i] = float(r.truncated)
        if r.response_toxicity is not None:
            cols["toxicity"][i] = r.response_toxicity
        if r.pii_count is not None:
            cols["pii_leak"][i] = float(r.id in pii)
        if r.secret_count is not None:
            cols["secret_leak"][i] = float(r.id in secrets)
        if r.feedback_score is not None:
            cols["feedback"][i] = r.feedback_score
        if ok:
            for name in VALUE_COLUMNS:
                value = r._mapping[name]
                if value is not None:
                    cols[name][i] = value
    return Side(label or model, apps, cols, _accuracy(engine, model, start, end, app, confidence),
                _shadow(engine, where))


def _accuracy(engine: Engine, model: str, start: datetime, end: datetime, app: str | None,
              confidence: float) -> dict:  # type: ignore[type-arg]
    """Review accuracy of the model over the window: all its traffic (or ``app``) under `ALL`, and per app."""
    out = {}
    for estimate in accuracy_estimates(engine, start, end, by=("model", "app"), confidence=confidence):
        if estimate.group["model"] == model:
            out[estimate.group["app"] or ""] = estimate.accuracy
    if app is not None:
        if app in out:
            out[ALL] = out[app]
        return out
    for estimate in accuracy_estimates(engine, start, end, by=("model",), confidence=confidence):
        if estimate.group["model"] == model:
            out[ALL] = estimate.accuracy
    return out


def _shadow(engine: Engine, where) -> list[tuple[str, str, bool]]:  # type: ignore[no-untyped-def]
    """(app, reference model, agree) of every successful replay of the arm's records."""
    s = shadow_comparisons.c
    query = (select(records.c.app, s.reference_model, s.agree)
             .join_from(shadow_comparisons, records, records.c.id == s.record_id)
             .where(where, s.agree.is_not(None), s.error.is_(None)))
    with engine.connect() as conn:
        return [(app or "", ref, bool(agree)) for app, ref, agree in conn.execute(query)]
