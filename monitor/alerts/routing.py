"""Routing: which sinks and channels an alert of a given severity goes to.

Every route whose severities include the alert's gets it (so critical can go to #oncall and to the console
log at once). With no routes configured, everything goes to Slack when ``SLACK_WEBHOOK_URL`` or
``SLACK_BOT_TOKEN`` is set, else to the console. A Slack route uses the bot token (``slack-api``: any
channel, messages edited in place on resolution) when there is one, else the incoming webhook
(``slack-webhook``: posts where the webhook was created).

>>> from monitor.config import AlertsConfig
>>> [d.key for d in destinations("critical", AlertsConfig())]
['console']
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.alerts.severity import SEVERITIES
from monitor.config import AlertRouteConfig, AlertsConfig


@dataclass(frozen=True, slots=True)
class Destination:
    sink: str
    """console, slack-webhook or slack-api: the `alert_outbox.sink` value and the key of the sink object."""
    channel: str | None = None

    @property
    def edits_in_place(self) -> bool:
        return self.sink == "slack-api"

    @property
    def key(self) -> str:
        return self.sink if self.channel is None else f"{self.sink}:{self.channel}"


def routes(config: AlertsConfig) -> list[AlertRouteConfig]:
    if config.routes:
        return list(config.routes)
    slack = config.slack_webhook_url is not None or config.slack_bot_token is not None
    return [AlertRouteConfig(sink="slack" if slack else "console", severities=list(SEVERITIES))]  # type: ignore[arg-type]


def destinations(severity: str, config: AlertsConfig) -> list[Destination]:
    """Where an alert of ``severity`` goes, without duplicates, in route order."""
    out: list[Destination] = []
    for route in routes(config):
        if severity not in route.severities:
            continue
        if route.sink == "console":
            dest = Destination("console")
        elif config.slack_bot_token is not None:
            dest = Destination("slack-api", route.channel or config.slack_channel)
        else:
            dest = Destination("slack-webhook")
        if dest not in out:
            out.append(dest)
    return out
