"""Delivery to Slack, against a real HTTP server on 127.0.0.1 playing Slack: what the message says, edits on
resolution, routing by severity, and what happens when Slack rate-limits, fails, hangs or is down."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.jobs import build_sinks
from monitor.alerts.outbox import RetryPolicy, deliver_pending
from tests.monitor.alerts.conftest import NOW, add_leak, add_records, make_config, outbox_rows

ONLY_LEAKS = {"rules": {"no_traffic": {"enabled": False}, "secret_in_response": {"window": "5m"}}}


# Client timeouts: 1 s where a test makes Slack stall on purpose; otherwise long enough that a busy machine (the
# suite runs on several workers) never times out a request Slack answers, which would be posted again on retry.
STALLING = "1s"
PATIENT = "15s"


def webhook_config(db_url, slack, timeout=PATIENT, **kw):  # type: ignore[no-untyped-def]
    return make_config(db_url, slack_webhook_url=slack.webhook_url, slack_timeout=timeout, **ONLY_LEAKS, **kw)


def bot_config(db_url, slack, timeout=PATIENT, channel="#alerts", **kw):  # type: ignore[no-untyped-def]
    return make_config(db_url, slack_bot_token=slack.token, slack_channel=channel, slack_api_url=slack.api_url,
                       slack_timeout=timeout, **ONLY_LEAKS, **kw)


def fire(engine, config, at=NOW, model="m1"):  # type: ignore[no-untyped-def]
    leaked = add_leak(engine, at=at, model=model)
    evaluate_once(engine, config, at)
    evaluate_once(engine, config, at + timedelta(seconds=2))
    return leaked


def test_the_webhook_message_says_what_how_bad_where_the_numbers_and_where_to_look(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    config = webhook_config(db_url, slack)
    add_records(engine, 5, model="m1", response="here is the key AKIAABCDEFGHIJKLMNOP for you")
    leaked = fire(engine, config)
    report = deliver_pending(engine, build_sinks(config), NOW + timedelta(seconds=3))
    assert len(report.sent) == 1
    (msg,) = slack.messages
    body = json.dumps(msg["blocks"])
    assert msg["blocks"][0]["text"]["text"] == "[CRITICAL] FIRING model=m1: secret_in_response"
    for needle in ("1 response(s) with a secret in the last 5m", "model=m1", "Window / sample", leaked,
                   "SELECT r.id, r.ts", "d.detector = 'secrets'", "watchkeeper silence add"):
        assert needle in body, needle
    assert "AKIA" not in body and "AKIA" not in msg["text"]  # ids and numbers only, never record text


def test_with_a_bot_token_the_resolution_edits_the_original_message(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    config = bot_config(db_url, slack)
    sinks = build_sinks(config)
    fire(engine, config)
    deliver_pending(engine, sinks, NOW + timedelta(seconds=3))
    (original,) = slack.messages
    assert original["channel_name"] == "#alerts" and original["metadata"]["event_payload"] == {"outbox_id": 1}
    for s in range(0, 400, 20):  # the leak leaves the window, the alert resolves
        evaluate_once(engine, config, NOW + timedelta(seconds=4 + s))
    deliver_pending(engine, sinks, NOW + timedelta(minutes=7))
    assert len(slack.messages) == 1 and len(slack.edits) == 1  # edited in place, no second message
    assert slack.messages[0]["blocks"][0]["text"]["text"] == "[RESOLVED] model=m1: secret_in_response"
    first, resolution = outbox_rows(engine)
    assert resolution.updates_id == first.id and resolution.external_ref == first.external_ref


def test_routing_by_severity_to_channels(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    routes = [{"sink": "slack", "severities": ["critical"], "channel": "#oncall"},
              {"sink": "slack", "severities": ["warning", "info"], "channel": "#llm-quality"}]
    config = bot_config(db_url, slack, routes=routes)
    leaked = add_leak(engine, at=NOW, model="m1")
    add_leak(engine, at=NOW, model="m2", detector="pii")
    evaluate_once(engine, config, NOW)
    evaluate_once(engine, config, NOW + timedelta(seconds=2))
    deliver_pending(engine, build_sinks(config), NOW + timedelta(seconds=3))
    by_channel = {m["channel_name"]: m["blocks"][0]["text"]["text"] for m in slack.messages}
    assert by_channel == {"#oncall": "[CRITICAL] FIRING model=m1: secret_in_response",
                          "#llm-quality": "[WARNING] FIRING model=m2: pii_in_response"}
    assert leaked in json.dumps(slack.messages[0]["blocks"])


def test_a_429_is_retried_after_the_time_slack_asked_for(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    config = webhook_config(db_url, slack)
    sinks = build_sinks(config)
    fire(engine, config)
    slack.fail_next(("ratelimit", 7))
    t = NOW + timedelta(seconds=3)
    assert deliver_pending(engine, sinks, t).retrying == [1]
    (row,) = outbox_rows(engine)
    assert "429" in row.last_error and row.attempts == 1
    assert deliver_pending(engine, sinks, t + timedelta(seconds=6)).sent == []  # 1 s backoff would resend here
    assert deliver_pending(engine, sinks, t + timedelta(seconds=7)).sent == [1]
    assert [status for _, status in slack.requests] == [429, 200] and len(slack.messages) == 1


def test_server_errors_and_timeouts_back_off_exponentially_then_deliver(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    config = bot_config(db_url, slack, timeout=STALLING)
    sinks = build_sinks(config)
    fire(engine, config)
    slack.fail_next(("status", 500), ("status", 502), ("timeout", 3))
    t, waits, errors = NOW + timedelta(seconds=3), [], []
    for _ in range(3):
        assert deliver_pending(engine, sinks, t).retrying == [1]
        (row,) = outbox_rows(engine)
        waits.append((row.next_attempt_at.replace(tzinfo=None) - t.replace(tzinfo=None)).total_seconds())
        errors.append(row.last_error)
        t += timedelta(seconds=waits[-1])
    assert waits == [1.0, 2.0, 4.0]
    assert "HTTP 500" in errors[0] and "HTTP 502" in errors[1] and "timed out" in errors[2]
    assert deliver_pending(engine, sinks, t).sent == [1]  # after the timeout it looked first: not there, posted
    assert [path for path, _ in slack.requests][-2:] == ["/api/conversations.history", "/api/chat.postMessage"]
    assert len(slack.messages) == 1


def test_a_post_slack_took_but_answered_too_late_is_found_not_posted_twice(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    """Slack is slow: it posts the alert but answers after the client gave up. The retry looks the message up by
    its metadata and records it, instead of paging the channel a second time."""
    config = bot_config(db_url, slack, timeout=STALLING, channel="C0ONCALL")  # conversations.history needs an id
    sinks = build_sinks(config)
    fire(engine, config)
    slack.fail_next(("accept_then_stall", 3))
    t = NOW + timedelta(seconds=3)
    assert deliver_pending(engine, sinks, t).retrying == [1]
    (row,) = outbox_rows(engine)
    assert "timed out" in row.last_error and row.maybe_sent and len(slack.messages) == 1
    assert deliver_pending(engine, sinks, t + timedelta(seconds=1)).sent == [1]
    (message,) = slack.messages
    assert outbox_rows(engine)[0].external_ref == f"{message['channel']}:{message['ts']}"


def test_a_refused_connection_is_retried_without_a_lookup(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    """A request that never connected cannot have been posted: the retry posts straight away."""
    config = bot_config(db_url, slack, timeout=STALLING)
    sinks = build_sinks(config)
    fire(engine, config)
    slack.refuse()
    t = NOW + timedelta(seconds=3)
    assert deliver_pending(engine, sinks, t).retrying == [1]
    assert not outbox_rows(engine)[0].maybe_sent
    slack.accept()
    assert deliver_pending(engine, sinks, t + timedelta(seconds=1)).sent == [1]
    assert [path for path, _ in slack.requests] == ["/api/chat.postMessage"] and len(slack.messages) == 1


def test_a_permanent_error_is_dead_with_its_reason_and_a_log_line(engine, db_url, slack, caplog) -> None:  # type: ignore[no-untyped-def]
    config = bot_config(db_url, slack)
    slack.token = "xoxb-rotated"  # the configured token no longer works
    fire(engine, config)
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.outbox"):
        report = deliver_pending(engine, build_sinks(config), NOW + timedelta(seconds=3))
    assert report.dead == [1]
    (row,) = outbox_rows(engine)
    assert row.status == "dead" and "invalid_auth" in row.last_error
    assert "is dead" in caplog.text and slack.token not in caplog.text


def test_slack_down_for_a_while_then_up_delivers_everything_in_order(engine, db_url, slack) -> None:  # type: ignore[no-untyped-def]
    config = webhook_config(db_url, slack)
    sinks = build_sinks(config)
    policy = RetryPolicy(initial=timedelta(seconds=1), maximum=timedelta(seconds=30))
    slack.down = True
    t = NOW
    for i, model in enumerate(["m1", "m2", "m3", "m4", "m5"]):  # five incidents while Slack is down
        fire(engine, config, at=NOW + timedelta(seconds=10 * i), model=model)
    for _ in range(40):  # ten minutes of delivery attempts, every 15 s
        t += timedelta(seconds=15)
        deliver_pending(engine, sinks, t, policy=policy)
    assert slack.messages == [] and {r.status for r in outbox_rows(engine)} == {"pending"}
    failed = [s for _, s in slack.requests]
    assert set(failed) == {503} and len(failed) < 40  # only the head is tried, with backoff

    slack.down = False
    for _ in range(3):
        t += timedelta(seconds=30)
        deliver_pending(engine, sinks, t, policy=policy)
    assert [m["blocks"][0]["text"]["text"] for m in slack.messages] == [
        f"[CRITICAL] FIRING model={m}: secret_in_response" for m in ["m1", "m2", "m3", "m4", "m5"]]
    assert {r.status for r in outbox_rows(engine)} == {"sent"}


def test_after_slack_fails_and_refuses_for_20_s_the_alert_arrives_within_seconds_of_recovery(engine, db_url,
                                                                                             slack) -> None:  # type: ignore[no-untyped-def]
    """Real clock, default retry settings: Slack answers 500 for 10 s, then refuses connections for 10 s.
    Delivery attempts back off but never wait more than ``backoff_max`` (5 s), so the alert arrives within
    seconds of Slack's recovery (a 30 s cap, the old default, would wait 11 s here) and is not dead."""
    import time
    from datetime import UTC, datetime

    config = webhook_config(db_url, slack)
    sinks = build_sinks(config)
    policy = RetryPolicy.from_config(config.alerts)
    assert policy.maximum == timedelta(seconds=5) and policy.max_attempts >= 100_000
    fire(engine, config, at=datetime.now(UTC) - timedelta(seconds=3))
    slack.down, slack.down_status = True, 500
    start = time.monotonic()
    recovered_at = None
    while not slack.messages and time.monotonic() - start < 40:
        elapsed = time.monotonic() - start
        if 10 <= elapsed < 20 and slack.down:
            slack.down = False
            slack.refuse()
        elif elapsed >= 20 and recovered_at is None:
            slack.accept()
            recovered_at = time.monotonic()
        deliver_pending(engine, sinks, datetime.now(UTC), policy=policy)
        time.sleep(0.2)
    assert recovered_at is not None and len(slack.messages) == 1
    assert time.monotonic() - recovered_at < 6.0
    (row,) = outbox_rows(engine)
    assert row.status == "sent" and row.attempts >= 5
    assert {s for _, s in slack.requests} == {500, 200}


@pytest.mark.parametrize("configure", [webhook_config, bot_config], ids=["webhook", "bot"])
def test_a_long_slack_outage_logs_a_few_lines_not_one_per_attempt(engine, db_url, slack, caplog,
                                                                  configure) -> None:  # type: ignore[no-untyped-def]
    """Ten minutes of 500s then five of refused connections, an attempt every 5 s (180 attempts): the log says
    that it fails, that the reason changed and that it was delivered, in a few lines, none of them an ERROR."""
    config = configure(db_url, slack)
    sinks = build_sinks(config)
    policy = RetryPolicy.from_config(config.alerts)
    fire(engine, config)
    slack.down, slack.down_status = True, 500
    t = NOW + timedelta(seconds=3)
    with caplog.at_level(logging.INFO):
        for step in range(180):
            if step == 120:
                slack.down = False
                slack.refuse()
            deliver_pending(engine, sinks, t, policy=policy)
            t += policy.maximum
        slack.accept()
        assert deliver_pending(engine, sinks, t, policy=policy).sent == [1]
    assert outbox_rows(engine)[0].attempts == 181
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == []
    lines = [r.getMessage() for r in caplog.records if r.name == "monitor.alerts.outbox"]
    assert 3 <= len(lines) <= 12, lines
    assert "500" in lines[0] and any("refused" in line for line in lines) and "delivered at attempt 181" in lines[-1]
