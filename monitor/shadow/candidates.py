"""Which stored records shadow replay may re-ask, and what has been compared so far.

A candidate is an ``ok`` record with stored (redacted) text that has no ``shadow_comparisons`` row yet for
the reference; the database is the queue, so nothing is lost when a run stops early and two daemons never
need to agree on anything but the rows. The daily cap counts every daemon's comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, and_, case, exists, func, select

from monitor.storage.db import as_utc as _aware
from monitor.storage.schema import records, samples, shadow_comparisons

BOOST_REASON = "shadow_disagreement"




@dataclass(slots=True, frozen=True)
class Candidate:
    """A stored record to replay: its (stored, redacted) prompt and production answer."""

    record_id: str
    prompt: str
    response: str
    model: str
    app: str | None
    ts: datetime


def select_candidates(
    engine: Engine,
    reference_model: str,
    *,
    since: datetime,
    limit: int,
    sampled_only: bool = True,
    model: str | None = None,
) -> list[Candidate]:
    """Records from ``since`` on with text and an ok status, not yet compared against ``reference_model``.

    ``sampled_only`` keeps the records the sampler picked (the daemon's choice, newest first); otherwise every
    stored record is a candidate (backfills, oldest first, so a limit resumes where the last run stopped).
    """
    done = exists().where(and_(shadow_comparisons.c.record_id == records.c.id,
                               shadow_comparisons.c.reference_model == reference_model))
    query = (
        select(records.c.id, records.c.prompt, records.c.response, records.c.model, records.c.app,
               records.c.ts)
        .where(records.c.ts >= since, records.c.status == "ok", records.c.prompt.is_not(None),
               records.c.response.is_not(None), records.c.prompt != "", ~done)
        .limit(limit)
    )
    if model is not None:
        query = query.where(records.c.model == model)
    if sampled_only:
        sampled = select(samples.c.record_id).where(samples.c.reason != BOOST_REASON, samples.c.ts >= since)
        query = query.where(records.c.id.in_(sampled)).order_by(records.c.ts.desc())
    else:
        query = query.order_by(records.c.ts, records.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Candidate(r.id, r.prompt, r.response, r.model, r.app, _aware(r.ts)) for r in rows]


def used_today(engine: Engine, reference_model: str, now: datetime | None = None) -> int:
    """Comparisons stored today (UTC) for ``reference_model`` by every daemon: the daily cap's count."""
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(shadow_comparisons).where(
                shadow_comparisons.c.reference_model == reference_model,
                shadow_comparisons.c.created_at >= midnight,
            )
        ).scalar_one()


def agreement_rates(engine: Engine, since: datetime) -> dict[tuple[str, str], tuple[int, float]]:
    """(production model, reference model) -> (comparisons, share that agree) since ``since``.

    The signal for the drift detectors and the "agreement dropping" alert rule.
    """
    query = (
        select(records.c.model, shadow_comparisons.c.reference_model, func.count(),
               func.avg(case((shadow_comparisons.c.agree, 1.0), else_=0.0)))
        .join(records, records.c.id == shadow_comparisons.c.record_id)
        .where(shadow_comparisons.c.created_at >= since, shadow_comparisons.c.agree.is_not(None))
        .group_by(records.c.model, shadow_comparisons.c.reference_model)
    )
    with engine.connect() as conn:
        return {(m, ref): (n, float(rate)) for m, ref, n, rate in conn.execute(query)}
