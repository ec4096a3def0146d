"""Lifecycle: a repeat updates one alert; an incident that ends resolves it and says so; a new incident later
is a new alert."""

from __future__ import annotations

import io
from datetime import timedelta

from monitor.alerts.console import ConsoleSink
from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.outbox import deliver_pending
from tests.monitor.alerts.conftest import NOW, add_leak, alert_rows, make_config, outbox_rows

ONLY_SECRETS = {"rules": {name: {"enabled": False} for name in (
    "pii_in_response", "drift", "toxicity_rate", "refusal_rate", "error_rate", "latency_p95",
    "dead_letter_rate", "consumer_lag", "no_traffic")} | {"secret_in_response": {"window": "5m"}}}


def test_repeats_update_one_alert_and_send_one_message(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, **ONLY_SECRETS)
    out = io.StringIO()
    sinks = {"console": ConsoleSink(out)}
    add_leak(engine, at=NOW)
    for step in range(0, 60, 2):  # half a minute of evaluations every 2 s, more leaks arriving
        now = NOW + timedelta(seconds=step)
        if step % 10 == 0:
            add_leak(engine, at=now)
        evaluate_once(engine, config, now)
        deliver_pending(engine, sinks, now)
    (alert,) = alert_rows(engine)
    assert (alert.fingerprint, alert.status, alert.count) == ("secret_in_response@model=m1", "firing", 30)
    assert alert.severity == "critical" and "7 response(s) with a secret" in alert.summary
    (message,) = outbox_rows(engine)
    assert message.status == "sent" and message.kind == "firing"
    assert out.getvalue().count("[CRITICAL] FIRING model=m1: secret_in_response") == 1


def test_an_ended_incident_resolves_announces_it_and_a_new_one_is_a_new_alert(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, **ONLY_SECRETS)
    add_leak(engine, at=NOW)
    evaluate_once(engine, config, NOW)
    evaluate_once(engine, config, NOW + timedelta(seconds=2))  # past group_wait: announced
    # The leak leaves the 5-minute window at NOW+5m; the alert resolves 30 s (resolve_after) later.
    evaluate_once(engine, config, NOW + timedelta(minutes=4, seconds=59))
    assert evaluate_once(engine, config, NOW + timedelta(minutes=5, seconds=10)).resolved == []
    report = evaluate_once(engine, config, NOW + timedelta(minutes=5, seconds=40))
    assert report.resolved == ["secret_in_response@model=m1"]
    assert [(r.kind, r.fingerprints) for r in outbox_rows(engine)] == [
        ("firing", ["secret_in_response@model=m1"]), ("resolved", ["secret_in_response@model=m1"])]
    assert "[RESOLVED] model=m1: secret_in_response" in outbox_rows(engine)[1].payload["text"]
    evaluate_once(engine, config, NOW + timedelta(minutes=7))  # nothing more to say
    assert len(outbox_rows(engine)) == 2

    later = NOW + timedelta(hours=1)
    add_leak(engine, at=later)
    evaluate_once(engine, config, later)
    first, second = alert_rows(engine)
    assert (first.status, second.status) == ("resolved", "firing")
    assert first.fingerprint == second.fingerprint and second.count == 1


def test_a_failing_rule_keeps_its_alert_instead_of_resolving_it(engine, db_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    config = make_config(db_url, **ONLY_SECRETS)
    add_leak(engine, at=NOW)
    evaluate_once(engine, config, NOW)
    from monitor.alerts import rules

    def broken(self, conn, now):  # type: ignore[no-untyped-def]
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(rules.SecretInResponse, "fetch", broken)
    report = evaluate_once(engine, config, NOW + timedelta(hours=1))
    assert report.failed_rules == ["secret_in_response"] and report.resolved == []
    assert alert_rows(engine)[0].status == "firing"


def test_a_rule_turned_off_in_config_resolves_its_alerts(engine, db_url) -> None:  # type: ignore[no-untyped-def]
    add_leak(engine, at=NOW)
    evaluate_once(engine, make_config(db_url, **ONLY_SECRETS), NOW)
    off = make_config(db_url, rules={**ONLY_SECRETS["rules"], "secret_in_response": {"enabled": False}})
    assert evaluate_once(engine, off, NOW + timedelta(seconds=5)).resolved == ["secret_in_response@model=m1"]
