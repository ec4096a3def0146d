"""Hourly rollups an analyst can chart: per hour, model and app: counts, rates and latency percentiles,
recomputed for the recent hours so late records are counted and reruns change nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, select

from monitor.config import Config, RollupsConfig
from monitor.jobs.rollups import build_jobs, hours_to_roll, roll_up
from monitor.jobs.scheduler import Scheduler
from monitor.storage.schema import rollups_hourly
from tests.monitor._rows import insert_records, record_row

H13 = datetime(2026, 5, 1, 13, tzinfo=UTC)
HOUR = timedelta(hours=1)


def rollup_rows(engine: Engine) -> dict[tuple[datetime, str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(rollups_hourly)).mappings().all()
    return {(r["hour"].replace(tzinfo=UTC), r["model"], r["app"]): dict(r) for r in rows}


def test_an_hour_of_chat_traffic_rolls_up_into_counts_rates_and_percentiles(engine: Engine) -> None:
    latencies = [100.0 + 10 * i for i in range(20)]
    chat = [
        record_row(
            f"c{i}",
            H13 + timedelta(minutes=2 * i),
            "m1",
            status="error" if i < 2 else "ok",
            refusal=i % 5 == 0,
            response_toxicity=0.9 if i == 7 else 0.1,
            latency_ms=latencies[i],
            prompt_chars=10 * i,
            response_chars=100,
            tokens_in=5,
            tokens_out=7,
            feedback_score=1.0 if i < 3 else None,
        )
        for i in range(20)
    ]
    no_app = [record_row(f"n{i}", H13 + timedelta(minutes=i), "m2", app=None) for i in range(3)]
    next_hour = [record_row("late-night", H13 + HOUR + timedelta(minutes=5), "m1", latency_ms=50.0)]
    insert_records(engine, chat + no_app + next_hour)

    written = roll_up(engine, RollupsConfig(lookback=3 * HOUR), now=H13 + HOUR + timedelta(minutes=30))

    rows = rollup_rows(engine)
    assert written == 3 and set(rows) == {(H13, "m1", "chat"), (H13, "m2", ""), (H13 + HOUR, "m1", "chat")}
    chat_row = rows[(H13, "m1", "chat")]
    assert chat_row["requests"] == 20 and chat_row["errors"] == 2 and chat_row["error_rate"] == pytest.approx(0.1)
    assert chat_row["refusals"] == 4 and chat_row["refusal_rate"] == pytest.approx(0.2)
    assert chat_row["toxic"] == 1 and chat_row["toxic_rate"] == pytest.approx(0.05)
    assert chat_row["latency_p50_ms"] == pytest.approx(np.percentile(latencies, 50))
    assert chat_row["latency_p95_ms"] == pytest.approx(np.percentile(latencies, 95))
    assert chat_row["mean_prompt_chars"] == pytest.approx(95.0) and chat_row["tokens_out"] == 140
    assert chat_row["feedback_count"] == 3 and chat_row["feedback_mean"] == pytest.approx(1.0)
    no_app_row = rows[(H13, "m2", "")]
    assert no_app_row["requests"] == 3 and no_app_row["latency_p50_ms"] is None
    assert no_app_row["refusal_rate"] is None  # the refusal detector did not score these


def test_reruns_are_idempotent_and_count_late_records_within_the_lookback(engine: Engine) -> None:
    insert_records(engine, [record_row(f"a{i}", H13 + timedelta(minutes=i), latency_ms=100.0) for i in range(5)])
    config = Config.model_validate({"rollups": {"lookback": "2h"}})
    scheduler = Scheduler(engine, build_jobs(config), owner="daemon")
    assert scheduler.run_due() == {"rollups_hourly": "ran"}  # real clock: nothing recent, nothing written
    roll_up(engine, config.rollups, now=H13 + timedelta(minutes=50))
    roll_up(engine, config.rollups, now=H13 + timedelta(minutes=55))
    assert rollup_rows(engine)[(H13, "m1", "chat")]["requests"] == 5

    # A record for 13:xx arrives at 14:20: still inside the 2h lookback, so the 13:00 row is corrected.
    insert_records(engine, [record_row("late", H13 + timedelta(minutes=59), latency_ms=100.0)])
    roll_up(engine, config.rollups, now=H13 + HOUR + timedelta(minutes=20))
    assert rollup_rows(engine)[(H13, "m1", "chat")]["requests"] == 6

    # One arriving at 16:00 is outside it: the 13:00 row is left as it was.
    insert_records(engine, [record_row("very-late", H13 + timedelta(minutes=30), latency_ms=100.0)])
    roll_up(engine, config.rollups, now=H13 + 3 * HOUR)
    assert rollup_rows(engine)[(H13, "m1", "chat")]["requests"] == 6
    assert hours_to_roll(2 * HOUR, H13 + 3 * HOUR) == [H13 + 2 * HOUR, H13 + 3 * HOUR]
