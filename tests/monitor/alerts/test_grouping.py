"""Grouping: one bad deploy that trips several rules for one model is one message; another model's problem is
its own message; a still-firing alert is repeated only after the re-notification interval."""

from __future__ import annotations

from datetime import timedelta

from monitor.alerts.evaluate import evaluate_once
from tests.monitor.alerts.conftest import NOW, add_leak, add_records, make_config, outbox_rows

RULES = {
    "secret_in_response": {"window": "1h"},
    "error_rate": {"min_samples": 20, "baseline": None},
    "drift": {"enabled": False}, "latency_p95": {"enabled": False}, "no_traffic": {"enabled": False},
}


def test_alerts_of_one_scope_within_group_wait_go_out_as_one_message(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, group_wait="10s", rules=RULES)
    add_leak(engine, at=NOW, model="m1")
    evaluate_once(engine, config, NOW)  # m1 secret fires; waits for companions
    add_records(engine, 40, status="error", model="m1", at=NOW + timedelta(seconds=4))
    add_records(engine, 40, status="error", model="m2", at=NOW + timedelta(seconds=4))
    evaluate_once(engine, config, NOW + timedelta(seconds=4))  # m1 and m2 error rates fire
    assert outbox_rows(engine) == []
    evaluate_once(engine, config, NOW + timedelta(seconds=10))  # m1's group is due, m2's not yet
    evaluate_once(engine, config, NOW + timedelta(seconds=14))
    rows = outbox_rows(engine)
    assert [(r.group_key, r.fingerprints) for r in rows] == [
        ("console|model=m1", ["secret_in_response@model=m1", "error_rate@model=m1"]),  # most severe first
        ("console|model=m2", ["error_rate@model=m2"]),
    ]
    assert rows[0].payload["text"].startswith("[CRITICAL] FIRING model=m1: secret_in_response, error_rate")


def test_a_still_firing_alert_is_repeated_after_the_interval_only(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, repeat_interval="1h", rules=RULES)
    for minutes in range(0, 130, 10):  # a leak every 10 minutes keeps it firing for two hours
        now = NOW + timedelta(minutes=minutes)
        add_leak(engine, at=now)
        evaluate_once(engine, config, now)
        evaluate_once(engine, config, now + timedelta(seconds=2))
    assert [r.kind for r in outbox_rows(engine)] == ["firing", "reminder", "reminder"]
    assert outbox_rows(engine)[1].payload["text"].startswith("[CRITICAL] STILL FIRING model=m1")
