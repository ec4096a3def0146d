"""Fixtures for the alert tests: a fresh database (SQLite and Postgres), configs, rows, a fake Slack."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from monitor.config import AlertsConfig, Config
from monitor.ingest.batch import Batch
from monitor.ingest.steps.aggregate import MinuteCounts
from monitor.storage.schema import alert_outbox, alerts, detections, stream_minutes
from monitor.storage.store import Store, text_policy
from tests.monitor._rows import insert_records, record_row
from tests.monitor.alerts.slack_server import FakeSlack

NOW = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)
_ids = itertools.count()


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack() as server:
        yield server


def make_config(db_url: str = "sqlite://", **alerts: Any) -> Config:
    """A config whose alert section is ``alerts`` over test-friendly defaults (no group wait)."""
    section = {"group_wait": "1s", "resolve_after": "30s", **alerts}
    return Config.model_validate({"database": {"url": db_url}, "alerts": section})


def add_records(engine: Engine, n: int, *, at: datetime = NOW, spread: timedelta = timedelta(seconds=60),
                **columns: Any) -> list[str]:
    """``n`` records over ``spread`` ending at ``at``; returns their ids."""
    rows = [record_row(f"r{next(_ids)}", at - spread * (i / max(n, 1)), **columns) for i in range(n)]
    insert_records(engine, rows)
    count_records(engine, rows)
    return [r["id"] for r in rows]


def count_records(engine: Engine, rows: list[dict[str, Any]]) -> None:
    """Add `records` rows to the per-minute counters the rules read, through the store, as the pipeline's
    aggregate step does for the records it stores."""
    counts = MinuteCounts()
    for r in rows:
        counts.add(r["ts"], r["model"], r.get("app"), r.get("status", "ok"), r.get("latency_ms"),
                   toxicity=r.get("response_toxicity"), refusal=r.get("refusal"))
    Store(engine, text_policy("none")).write(Batch(increments={stream_minutes: counts.rows(NOW)}))


def add_leak(engine: Engine, *, at: datetime = NOW, detector: str = "secrets", field: str = "response",
             model: str = "m1") -> str:
    """A record whose ``field`` holds a finding of ``detector`` (kind/position only, as detectors store),
    counted in `stream_minutes` as the pipeline's aggregate step counts it."""
    row = record_row(f"r{next(_ids)}", at, model=model)
    insert_records(engine, [row])
    details = {"kinds": {"AWS_KEY": 1}, "severity": "high",
               "findings": [{"kind": "AWS_KEY", "field": field, "start": 3, "end": 23}]}
    with engine.begin() as conn:
        conn.execute(insert(detections).values(record_id=row["id"], detector=detector, score=1.0, flagged=True,
                                               details=details))
    leak = field == "response"
    counts = MinuteCounts()
    counts.add(row["ts"], row["model"], row.get("app"), "ok", row.get("latency_ms"), toxicity=None, refusal=None,
               pii_leak=leak and detector == "pii", secret_leak=leak and detector == "secrets")
    Store(engine, text_policy("none")).write(Batch(increments={stream_minutes: counts.rows(NOW)}))
    return row["id"]


def only_rule_settings(rule: str, webhook_url: str, rule_lines: str) -> str:
    """``[alerts]`` for a daemon test: evaluated and delivered every second to ``webhook_url``, every default
    rule but ``rule`` switched off (generated traffic would page for their own reasons), ``rule_lines`` under
    ``[alerts.rules.RULE]``."""
    others = sorted(set(AlertsConfig().rules) - {rule})
    disabled = "".join(f"\n[alerts.rules.{name}]\nenabled = false\n" for name in others)
    return f"""
[alerts]
evaluate_every = "1s"
deliver_every = "1s"
group_wait = "1s"
resolve_after = "3s"
slack_webhook_url = "{webhook_url}"

[alerts.rules.{rule}]
{rule_lines}
{disabled}"""


def outbox_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(alert_outbox).order_by(alert_outbox.c.id)))


def alert_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(alerts).order_by(alerts.c.id)))
