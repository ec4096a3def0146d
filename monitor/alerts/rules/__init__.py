"""Alert rules: each a small class that reads the database and says which scopes are firing now, and why.

A rule is ``fetch`` (its SQL, the only part that touches the database) followed by ``decide`` (a pure
function of what was fetched, unit-tested without a database). `Rule.evaluate` returns ``{scope: Evidence}``
for the scopes firing at ``now``; a scope missing from the answer is not firing. Rules read tables, never
pipeline memory, so any daemon can evaluate them and a restart loses nothing.

Scopes are strings: ``global``, ``model=<name>`` or ``app=<name>`` (``app=-`` for records without an app).

Adding a rule is one class: subclass `Rule` (or `RateRule` for "fraction of records that …"), set ``kind``,
write ``fetch`` and ``decide``, decorate it with ``@register``; then ``[alerts.rules.NAME] kind = "…"`` in
monitor.toml turns it on. The class goes in the family module below that it belongs to (a new family module
must be imported here, or its rules are never registered).

Rules over traffic volume (rates, latency, dead-letter share, no traffic) read the per-minute counters of
`stream_minutes` (`monitor.ingest.steps.aggregate`), never raw `records`: an evaluation costs the same at 10 or 20 000
records per second. Their windows therefore start on a minute boundary — the minute holding ``now - window``
— so a window is between ``window`` and ``window`` + 1 minute long. Raw `records` are read only for a few
example ids, within the minutes the counters point at.

The rules live in one module per family; importing this package registers them all:

- `base`: the `Rule` base class, the ``@register`` registry (`RULES`) and the shared SQL helpers;
- `rates`: `ToxicityRate`, `RefusalRate`, `ErrorRate`, `InjectionRate` (all `RateRule`);
- `latency`: `LatencyP95`;
- `spend`: `Spend`, what calls cost per model or app (priced records only);
- `leaks`: `SecretInResponse`, `PiiInResponse` (both `LeakRule`);
- `drift`: `Drift`;
- `accuracy`: `Accuracy`, from reviewers' labels;
- `shadow`: `ShadowAgreement`, against a shadow reference model;
- `compare`: `CandidateWorse`, the ``[compare]`` rollout guardrail (reads the scheduled comparisons);
- `health`: `DeadLetterRate`, `ConsumerLag`, `NoTraffic` — the pipeline itself;
- `reference`: `ReferenceDown`, `ReferenceSaturated`, `ReferenceLatency` — the shadow reference server.

`Evidence`, what a firing rule returns, is in `monitor.alerts.evidence`.

>>> from monitor.config import AlertRuleConfig
>>> rule = ErrorRate("error_rate", AlertRuleConfig(kind="error_rate", threshold=0.1, min_samples=10))
>>> rule.decide({"current": {"global": (20, 5)}, "baseline": {}}, now=None)["global"].summary
'error rate 25.0% over the last 10m (5 of 20 records), above 10.0%'
"""

from __future__ import annotations

from detectors.config import TOXIC_AT
from monitor.alerts.evidence import Evidence
from monitor.alerts.rules.accuracy import Accuracy
from monitor.alerts.rules.base import EXAMPLES, GLOBAL, MINUTE, RULES, Rule, register
from monitor.alerts.rules.compare import CandidateWorse
from monitor.alerts.rules.drift import Drift, stream_scope
from monitor.alerts.rules.health import ConsumerLag, DeadLetterRate, NoTraffic
from monitor.alerts.rules.latency import LatencyP95
from monitor.alerts.rules.leaks import LeakRule, PiiInResponse, SecretInResponse
from monitor.alerts.rules.rates import ErrorRate, InjectionRate, RateRule, RefusalRate, ToxicityRate
from monitor.alerts.rules.reference import ReferenceDown, ReferenceLatency, ReferenceSaturated
from monitor.alerts.rules.shadow import ShadowAgreement
from monitor.alerts.rules.spend import Spend
from monitor.config import AlertsConfig
from monitor.durations import human_duration

__all__ = [
    "EXAMPLES",
    "GLOBAL",
    "MINUTE",
    "RULES",
    "Accuracy",
    "CandidateWorse",
    "ConsumerLag",
    "DeadLetterRate",
    "Drift",
    "ErrorRate",
    "Evidence",
    "InjectionRate",
    "LatencyP95",
    "LeakRule",
    "NoTraffic",
    "PiiInResponse",
    "RateRule",
    "ReferenceDown",
    "ReferenceLatency",
    "ReferenceSaturated",
    "RefusalRate",
    "Rule",
    "SecretInResponse",
    "ShadowAgreement",
    "Spend",
    "ToxicityRate",
    "build_rules",
    "human_duration",
    "register",
    "stream_scope",
]


def build_rules(config: AlertsConfig, *, group_id: str = "watchkeeper", toxic_at: float = TOXIC_AT) -> list[Rule]:
    """The enabled rules of ``config``, in name order. ``toxic_at`` is ``[detectors.toxicity] threshold``."""
    return [
        RULES[rule.kind](name, rule, group_id=group_id, **({"toxic_at": toxic_at} if rule.kind == "toxicity_rate"
                                                          else {}))
        for name, rule in sorted(config.rules.items())
        if rule.enabled
    ]
