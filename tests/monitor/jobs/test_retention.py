"""Retention: a deployment keeps 30 days of traffic; older records (with their detections), dead letters,
drift events and reports go, in bounded chunks, while reviewers' samples stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from monitor.config import Config, RetentionConfig
from monitor.ingest.steps.aggregate import MinuteCounts
from monitor.jobs.retention import build_jobs, purge
from monitor.jobs.scheduler import Scheduler
from monitor.storage.schema import (
    dead_letters,
    detections,
    drift_events,
    genai_events,
    records,
    reports,
    rollups_hourly,
    samples,
    stream_minutes,
)
from tests.monitor._rows import insert_records, record_row

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def count(engine: Engine, table) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(table))


def seed(engine: Engine, old: int, new: int) -> None:
    """``old`` items 40 days old and ``new`` items 1 day old in every table retention looks after."""
    ages = [40 * DAY] * old + [DAY] * new
    insert_records(engine, [record_row(f"r{i}", NOW - age) for i, age in enumerate(ages)])
    counts = MinuteCounts()
    for i, age in enumerate(ages):  # one minute of counters per item
        counts.add(NOW - age - timedelta(minutes=i), "m1", "chat", "ok", 100.0, toxicity=0.1, refusal=False)
    with engine.begin() as conn:
        conn.execute(insert(stream_minutes), counts.rows(NOW))
        conn.execute(
            insert(detections),
            [
                {"record_id": f"r{i}", "detector": d, "score": 0.5, "flagged": False}
                for i in range(len(ages))
                for d in ("toxicity", "pii")
            ],
        )
        conn.execute(
            insert(samples),
            [
                {
                    "record_id": f"r{i}",
                    "reason": "uniform",
                    "stratum": "model=m1,app=chat",
                    "model": "m1",
                    "app": "chat",
                    "ts": NOW - age,
                    "window_start": NOW - age,
                    "inclusion_probability": 0.1,
                    "sampled_at": NOW - age,
                }
                for i, age in enumerate(ages)
            ],
        )
        conn.execute(
            insert(dead_letters),
            [
                {
                    "topic": "llm-logs",
                    "partition": 0,
                    "offset": i,
                    "raw": b"{",
                    "reason": "not JSON",
                    "received_at": NOW - age,
                }
                for i, age in enumerate(ages)
            ],
        )
        conn.execute(
            insert(genai_events),
            [
                {"trace_id": "a" * 32, "span_id": f"{i:016x}", "name": "gen_ai.user.message", "body": {},
                 "ts": NOW - age, "topic": "otlp_logs", "partition": 0, "offset": i, "part": 1,
                 "received_at": NOW - age}
                for i, age in enumerate(ages)
            ],
        )
        conn.execute(
            insert(drift_events),
            [
                {
                    "stream": "model=m1,app=*",
                    "signal": "latency_ms",
                    "detector": "adwin",
                    "detected_at": NOW - age,
                    "created_at": NOW - age,
                }
                for age in ages
            ],
        )
        conn.execute(
            insert(reports),
            [
                {
                    "kind": "evidently_drift",
                    "model": "m1",
                    "created_at": NOW - age,
                    "summary": {},
                    "html": "<html/>",
                }
                for age in ages
            ],
        )
        conn.execute(
            insert(rollups_hourly),
            [
                {
                    "hour": NOW - age - timedelta(hours=i),
                    "model": "m1",
                    "app": "chat",
                    "requests": 1,
                    "errors": 0,
                    "refusals": 0,
                    "toxic": 0,
                    "error_rate": 0.0,
                    "mean_prompt_chars": 1.0,
                    "mean_response_chars": 1.0,
                    "feedback_count": 0,
                    "updated_at": NOW,
                }
                for i, age in enumerate(ages)
            ],
        )


def test_old_rows_go_and_recent_ones_and_review_samples_stay(engine: Engine) -> None:
    seed(engine, old=7, new=3)
    config = RetentionConfig(
        records_max_age=30 * DAY,
        dead_letters_max_age=30 * DAY,
        drift_events_max_age=30 * DAY,
        reports_max_age=30 * DAY,
        chunk_size=3,
    )

    deleted = purge(engine, config, now=NOW)

    assert deleted == {
        "records": 7,
        "detections": 14,
        "dead_letters": 7,
        "drift_events": 7,
        "reports": 7,
        "rollups_hourly": 0,
        "stream_minutes": 7,  # default: a week
        "genai_events": 7,  # default: a day (those of a day ago are kept: not older than that)
    }
    assert count(engine, records) == 3 and count(engine, detections) == 6
    assert count(engine, dead_letters) == count(engine, drift_events) == count(engine, reports) == 3
    assert count(engine, rollups_hourly) == 10  # kept forever by default
    assert count(engine, stream_minutes) == 3 and count(engine, genai_events) == 3
    assert count(engine, samples) == 10
    with engine.connect() as conn:
        kept = set(conn.scalars(select(records.c.id)))
        orphans = conn.scalar(select(func.count()).select_from(detections).where(detections.c.record_id.not_in(kept)))
    assert kept == {"r7", "r8", "r9"} and orphans == 0
    assert purge(engine, config, now=NOW)["records"] == 0


def test_a_large_backlog_is_deleted_a_bounded_amount_per_run(engine: Engine) -> None:
    seed(engine, old=10, new=2)
    config = RetentionConfig(chunk_size=2, max_chunks=2, rollups_max_age=30 * DAY)
    first = purge(engine, config, now=NOW)
    assert first["records"] == 4 and first["dead_letters"] == 4 and first["rollups_hourly"] == 4
    assert count(engine, records) == 8

    scheduler = Scheduler(engine, build_jobs(Config(retention=config)), owner="daemon")
    assert scheduler.run_due() == {"retention": "ran"}  # the job itself, on the real clock
    for _ in range(3):
        purge(engine, config, now=NOW)
    assert count(engine, records) == 2 and count(engine, rollups_hourly) == 2
