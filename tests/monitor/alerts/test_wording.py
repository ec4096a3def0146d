"""What an alert says, as the first hour found it wrong: a resolution does not present the last firing
figures as current, a count is not shown against a percent, a first notification does not say "seen 4×",
a leak confined to one app names it, and the leak's look: query returns only response-side findings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from monitor.alerts.evidence import Evidence
from monitor.alerts.render import console_text, slack_message
from monitor.alerts.rules.leaks import SecretInResponse
from monitor.config import AlertRuleConfig

T = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)


def alert(status: str = "firing", count: int = 4, **evidence: object) -> SimpleNamespace:
    ev = {"summary": "error rate 5.0% over the last 10m, above 5.0%", "value": 0.0502, "threshold": 0.05,
          "window_s": 600, "sample_size": 1000, "after": {"rate": 0.0502}, **evidence}
    return SimpleNamespace(rule="error_rate", severity="warning", scope="model=m1", status=status, first_seen=T,
                           last_seen=T + timedelta(seconds=8), resolved_at=T + timedelta(minutes=7)
                           if status == "resolved" else None, count=count, evidence=Evidence(**ev))  # type: ignore[arg-type]


def test_a_first_notification_says_since_when_not_how_many_evaluations():
    text = console_text("firing", "model=m1", [alert(count=4)])
    assert "seen 4×" not in text and "×" not in text
    assert "firing since 2026-03-02 03:00:00 UTC (8s so far)" in text
    assert "observed 5.02% (threshold 5.00%)" in text


def test_a_resolution_says_the_figures_are_from_when_it_last_fired():
    text = console_text("resolved", "model=m1", [alert("resolved")])
    assert "back within threshold; when last firing: error rate 5.0%" in text
    assert "observed 5.02% (threshold 5.00%) when last firing" in text
    blocks = str(slack_message("resolved", "model=m1", [alert("resolved")]))
    assert "back within threshold" in blocks and "when last firing" in blocks


def test_a_count_is_not_shown_as_a_percent_beside_a_rate():
    drift = alert(summary="error rate up (cusum); 3 drift event(s) in the last 15m", value=3, threshold=0,
                  after={"rate": 0.12, "n": 400})
    text = console_text("firing", "model=m1", [drift])
    assert "observed 3 (threshold 0)" in text and "300" not in text


def test_a_leak_confined_to_one_app_names_it_and_its_query_keeps_to_responses():
    rule = SecretInResponse("secret_in_response", AlertRuleConfig(kind="secret_in_response", scope="model"))
    fired = rule.decide({"model=m1": {"code-assistant": 2}, "model=m2": {"code-assistant": 1, "chat": 3},
                         "model=m3": {}}, T)
    assert set(fired) == {"model=m1", "model=m2"}
    assert fired["model=m1"].summary.endswith("in the last 10m, all in app code-assistant")
    assert fired["model=m2"].summary.endswith("in apps chat (3), code-assistant (1)")
    assert "LIKE '%\"response\"%'" in fired["model=m1"].look
