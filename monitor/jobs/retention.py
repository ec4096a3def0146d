"""Retention: delete rows older than their table's configured age, in bounded chunks.

Each chunk is one short transaction (select the oldest keys past the cutoff, delete them), so a purge never
holds long locks on the tables the pipeline writes, and each run deletes at most ``max_chunks`` chunks per
table — a large backlog is worked off over several runs. Records take their detections with them;
samples, labels and shadow comparisons are kept (reviewers' verdicts outlive the traffic they judged).

>>> from datetime import UTC, datetime
>>> from monitor.config import RetentionConfig
>>> from monitor.storage.db import make_engine
>>> from monitor.storage.schema import metadata
>>> engine = make_engine("sqlite://")
>>> metadata.create_all(engine)
>>> purge(engine, RetentionConfig(), now=datetime(2026, 5, 1, tzinfo=UTC))["records"]
0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Column, Connection, Engine, Table, delete, select

from monitor.config import Config, RetentionConfig
from monitor.jobs.scheduler import Job
from monitor.storage.schema import (
    dead_letters,
    detections,
    drift_events,
    genai_events,
    records,
    reports,
    rollups_hourly,
    stream_minutes,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Policy:
    """How one table is purged: rows whose ``age_column`` is before the cutoff, ``key`` at a time."""

    table: Table
    key: Column
    age_column: Column
    max_age: timedelta | None
    chunk_size: int


def policies(config: RetentionConfig) -> list[Policy]:
    size = config.chunk_size
    return [
        Policy(records, records.c.id, records.c.ts, config.records_max_age, size),
        Policy(dead_letters, dead_letters.c.id, dead_letters.c.received_at, config.dead_letters_max_age, size),
        Policy(drift_events, drift_events.c.id, drift_events.c.detected_at, config.drift_events_max_age, size),
        # A report carries megabytes of HTML: keep its transactions small.
        Policy(reports, reports.c.id, reports.c.created_at, config.reports_max_age, min(size, 20)),
        # Keyed by hour: one chunk removes whole hours across models and apps.
        Policy(rollups_hourly, rollups_hourly.c.hour, rollups_hourly.c.hour, config.rollups_max_age, size),
        Policy(stream_minutes, stream_minutes.c.minute, stream_minutes.c.minute, config.stream_minutes_max_age,
               size),
        Policy(genai_events, genai_events.c.received_at, genai_events.c.received_at, config.genai_events_max_age,
               size),
    ]


def build_jobs(config: Config) -> list[Job]:
    """The retention job, when enabled."""
    cfg = config.retention
    if not cfg.enabled:
        return []

    def run(engine: Engine, slot: datetime) -> None:
        purge(engine, cfg, now=datetime.now(UTC))

    return [Job("retention", cfg.interval, run)]


def purge(engine: Engine, config: RetentionConfig, now: datetime) -> dict[str, int]:
    """Delete what is past each table's age; returns rows deleted per table (detections included)."""
    deleted: dict[str, int] = {}
    for policy in policies(config):
        name = policy.table.name
        deleted[name] = 0
        if policy.max_age is None:
            continue
        cutoff = now - policy.max_age
        for _ in range(config.max_chunks):
            with engine.begin() as conn:
                keys, removed = _delete_chunk(conn, policy, cutoff, deleted)
            deleted[name] += removed
            if keys < policy.chunk_size:
                break
        else:
            log.info("retention: %s has more rows past %s; the next run continues", name, cutoff.isoformat())
    if any(deleted.values()):
        log.info("retention deleted %s", {k: v for k, v in deleted.items() if v})
    return deleted


def _delete_chunk(conn: Connection, policy: Policy, cutoff: datetime, deleted: dict[str, int]) -> tuple[int, int]:
    """Delete one chunk; returns how many keys were selected and how many rows of the table went."""
    oldest = select(policy.key).where(policy.age_column < cutoff).order_by(policy.age_column)
    if policy.key is policy.age_column:  # not unique (rollup hours): each key once
        oldest = oldest.distinct()
    oldest = oldest.limit(policy.chunk_size)
    keys = list(conn.scalars(oldest))
    if not keys:
        return 0, 0
    if policy.table is records:
        gone = conn.execute(delete(detections).where(detections.c.record_id.in_(keys))).rowcount
        deleted["detections"] = deleted.get("detections", 0) + gone
    removed = conn.execute(delete(policy.table).where(policy.key.in_(keys))).rowcount
    return len(keys), removed
