"""The daemon's alert jobs: evaluate rules every few seconds, deliver the outbox every second.

Both run through monitor.jobs.scheduler, so with several daemons each runs on one instance at a time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TextIO

from sqlalchemy import Engine

from monitor.alerts.console import ConsoleSink
from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.outbox import RetryPolicy, Sink, deliver_pending
from monitor.alerts.rules import build_rules
from monitor.config import Config
from monitor.jobs.scheduler import Job


def build_sinks(config: Config, *, stream: TextIO | None = None) -> dict[str, Sink]:
    """Sinks by `alert_outbox.sink` name: the console always, Slack when a webhook URL or token is set."""
    cfg = config.alerts
    timeout = cfg.slack_timeout.total_seconds()
    sinks: dict[str, Sink] = {"console": ConsoleSink(stream)}
    if cfg.slack_webhook_url is None and cfg.slack_bot_token is None:
        return sinks
    from monitor.alerts.slack import SlackApiSink, SlackWebhookSink  # slack_sdk (~0.1 s) only where Slack is set

    if cfg.slack_webhook_url is not None:
        sinks["slack-webhook"] = SlackWebhookSink(cfg.slack_webhook_url.get_secret_value(), timeout=timeout,
                                                  ca_file=cfg.slack_ca_file)
    if cfg.slack_bot_token is not None:
        sinks["slack-api"] = SlackApiSink(cfg.slack_bot_token.get_secret_value(), base_url=cfg.slack_api_url,
                                          timeout=timeout, ca_file=cfg.slack_ca_file)
    return sinks


def build_jobs(config: Config, *, stream: TextIO | None = None) -> list[Job]:
    """``alerts.evaluate`` and ``alerts.deliver``; none when ``alerts.enabled`` is false."""
    cfg = config.alerts
    if not cfg.enabled:
        return []
    rules = build_rules(cfg, group_id=config.kafka.group_id, toxic_at=config.detectors.toxicity.threshold)
    sinks = build_sinks(config, stream=stream)
    policy = RetryPolicy.from_config(cfg)
    # A delivery run makes at most one failing request per sink, so it is bounded by the HTTP timeout; a
    # short lease means that after a crash another daemon (or the restarted one) resumes within it.
    lease = max(2 * cfg.slack_timeout + timedelta(seconds=5), 2 * cfg.deliver_every)

    def evaluate(engine: Engine, now: datetime) -> None:
        evaluate_once(engine, config, now, rules=rules)

    def deliver(engine: Engine, now: datetime) -> None:
        deliver_pending(engine, sinks, now, policy=policy, claim_timeout=lease)

    return [
        Job("alerts.evaluate", cfg.evaluate_every, evaluate, lease=max(timedelta(seconds=30), 2 * cfg.evaluate_every)),
        Job("alerts.deliver", cfg.deliver_every, deliver, lease=lease),
    ]
