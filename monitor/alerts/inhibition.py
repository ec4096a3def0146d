"""Inhibition: a critical pipeline-level alert suppresses the alerts it explains.

When the consumer is stuck, every stream also looks quiet and its rates go stale; paging for each of those
buries the one alert that says what to fix. While a critical alert of a ``source`` rule fires, alerts of
``target`` rules in the same scope (or any scope, when the source is global) are inhibited: recorded, not
sent. They are announced later if they still fire once the source resolves. Like Alertmanager, a silenced
source still inhibits.

>>> from types import SimpleNamespace as A
>>> from monitor.config import InhibitConfig
>>> stuck = A(fingerprint="consumer_lag@global", rule="consumer_lag", scope="global", severity="critical",
...           status="firing")
>>> quiet = A(fingerprint="no_traffic@model=m1", rule="no_traffic", scope="model=m1", severity="critical",
...           status="firing")
>>> inhibited([stuck, quiet], [InhibitConfig(source=["consumer_lag"], target=["no_traffic"])])
{'no_traffic@model=m1': 'consumer_lag@global'}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monitor.config import InhibitConfig

GLOBAL = "global"


def inhibited(alerts: Sequence[Any], rules: Sequence[InhibitConfig]) -> dict[str, str]:
    """Map each inhibited alert's fingerprint to the fingerprint of the alert that inhibits it."""
    firing = [a for a in alerts if a.status == "firing"]
    out: dict[str, str] = {}
    for rule in rules:
        sources = [a for a in firing if a.severity == "critical" and a.rule in rule.source]
        for source in sources:
            for alert in firing:
                if (alert.fingerprint != source.fingerprint and alert.rule in rule.target
                        and (source.scope == GLOBAL or source.scope == alert.scope)):
                    out.setdefault(alert.fingerprint, source.fingerprint)
    return out
