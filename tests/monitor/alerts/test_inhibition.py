"""Inhibition: when the consumer is stuck, the on-call engineer gets the consumer alert — not a page per
quiet model as well."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert

from monitor.alerts.evaluate import evaluate_once
from monitor.storage.schema import consumer_progress
from tests.monitor.alerts.conftest import NOW, add_leak, add_records, alert_rows, make_config, outbox_rows

RULES = {"no_traffic": {"scope": "model", "window": "5m", "min_samples": 10},
         "consumer_lag": {"window": "2m"}}


def test_a_stuck_consumer_inhibits_the_no_traffic_alerts_it_explains_but_not_a_leak(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, rules=RULES)
    for model in ("m1", "m2"):
        add_records(engine, 50, model=model, at=NOW - timedelta(minutes=10), spread=timedelta(minutes=30))
    add_leak(engine, at=NOW - timedelta(minutes=10), model="m1")
    with engine.begin() as conn:
        conn.execute(insert(consumer_progress).values(group_id="watchkeeper", topic="llm-logs", partition=0,
                                                      committed=1000, highwater=25_000,
                                                      updated_at=NOW - timedelta(minutes=9)))
    evaluate_once(engine, config, NOW)
    evaluate_once(engine, config, NOW + timedelta(seconds=2))
    flags = {a.fingerprint: a.inhibited for a in alert_rows(engine)}
    assert flags == {"consumer_lag@global": False, "no_traffic@model=m1": True, "no_traffic@model=m2": True,
                     "secret_in_response@model=m1": False}
    sent = [fp for row in outbox_rows(engine) for fp in row.fingerprints]
    assert sorted(sent) == ["consumer_lag@global", "secret_in_response@model=m1"]

    # The consumer recovers but the models stay quiet: now the no-traffic alerts are news.
    with engine.begin() as conn:
        conn.execute(consumer_progress.update().values(committed=25_000, updated_at=NOW + timedelta(minutes=3)))
    for s in range(0, 40, 2):
        evaluate_once(engine, config, NOW + timedelta(minutes=3, seconds=s))
    assert {fp for row in outbox_rows(engine) if row.kind == "firing" for fp in row.fingerprints} >= {
        "no_traffic@model=m1", "no_traffic@model=m2"}
