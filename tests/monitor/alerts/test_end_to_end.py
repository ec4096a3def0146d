"""A model starts leaking credentials in its answers: generated traffic on Kafka → the real daemon (detectors,
store, scheduler, alert jobs) → one Slack message within seconds, and one resolution once the leak is over.

The traffic is the generator's, paced in real time so that its event times (which alert windows use) are
"now"; the broker is tansu, Slack is a real HTTP server on 127.0.0.1. Only the secret rule is enabled:
ordinary generated answers carry some PII (an e-mail address echoed back), which would page separately.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from monitor.storage.db import make_engine
from monitor.storage.schema import alerts, records
from monitor.synthetic.generator import Generated, Incident, TrafficGenerator
from monitor.synthetic.produce import produce_to_kafka
from tests.helpers import DaemonThread, config_for, count, wait_for, write_config
from tests.monitor.alerts.conftest import only_rule_settings
from tests.monitor.alerts.slack_server import FakeSlack

LEAKY = "gpt-4o-mini-2024-07"
RATE = 40.0
"""Records per second, both in event time and in wall time."""
WINDOW_S = 10
LATENCY_LIMIT_S = 15.0
"""'Within seconds': measured at ~3 s (a batch, one evaluation, group_wait 1 s, one delivery); generous for a
loaded CI machine."""


def alert_settings(webhook_url: str) -> str:
    return only_rule_settings("secret_in_response", webhook_url, f'window = "{WINDOW_S}s"')


def timed(items: Iterable[Generated], marks: dict[str, float]) -> Iterator[Generated]:
    """Pass items on to the producer, noting when the first and the last leaking record were handed over."""
    for item in items:
        if item.truth.secrets_response:
            marks.setdefault("first_leak", time.monotonic())
            marks["last_leak"] = time.monotonic()
        yield item


def header(message: dict) -> str:
    return message["blocks"][0]["text"]["text"]


@pytest.mark.slow  # about 30 s per database: warm-up, 9 s of traffic, the window running out
def test_a_secret_leak_on_kafka_pages_once_within_seconds_and_resolves_after_it_ends(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    with FakeSlack() as slack:
        path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                            extra=alert_settings(slack.webhook_url))
        with DaemonThread(config_for(path)) as daemon:
            # Warm-up: ordinary traffic until the daemon has joined the group and stores what arrives.
            warm = TrafficGenerator(seed=7, start=datetime.now(UTC), rate_per_s=RATE).generate(100)
            produce_to_kafka(kafka_broker, topic, warm)
            wait_for(lambda: count(migrated_db_url, records) >= 100, 60, "the daemon to consume the warm-up traffic")

            # 3 s of normal traffic, 3 s in which half of one model's answers leak a key, 3 s normal again.
            traffic = TrafficGenerator(seed=8, start=datetime.now(UTC), rate_per_s=RATE, incidents=[
                Incident("secret_leak", start=int(3 * RATE), duration=int(3 * RATE), model=LEAKY, magnitude=0.5),
            ])
            items = list(traffic.generate(int(9 * RATE)))
            leaked = {item.truth.id for item in items if item.truth.secrets_response}
            assert len(leaked) >= 10 and {item.truth.model for item in items
                                          if item.truth.secrets_response} == {LEAKY}
            marks: dict[str, float] = {}
            with ThreadPoolExecutor(1) as pool:
                producing = pool.submit(produce_to_kafka, kafka_broker, topic, timed(items, marks), rate=RATE)
                wait_for(lambda: "first_leak" in marks, 30, "the first leaking record to be produced")
                (firing,) = slack.wait_for(1, timeout=LATENCY_LIMIT_S + 5)
                latency = time.monotonic() - marks["first_leak"]
                assert producing.result(timeout=60) == len(items)

            assert latency < LATENCY_LIMIT_S, f"first Slack message {latency:.1f} s after the first leak"
            assert header(firing) == f"[CRITICAL] FIRING model={LEAKY}: secret_in_response"
            shown = json.dumps(firing["blocks"])
            assert any(record_id in shown for record_id in leaked), "the message should name a leaking record"

            # The leak is over once its last record leaves the rule's window; then one resolution follows.
            messages = slack.wait_for(2, timeout=WINDOW_S + 30)
            resolved_at = time.monotonic()
            assert len(messages) == 2, [header(m) for m in messages]
            assert header(messages[1]) == f"[RESOLVED] model={LEAKY}: secret_in_response"
            assert resolved_at > marks["last_leak"]
            time.sleep(3)  # several more evaluate/deliver rounds: nothing else goes out
            assert [header(m) for m in slack.messages] == [header(firing), header(messages[1])]
            assert daemon.stop() == 0

    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        episodes = conn.execute(select(alerts.c.fingerprint, alerts.c.status, alerts.c.count)).all()
    engine.dispose()
    assert len(episodes) == 1  # one episode, refreshed by every evaluation while the leak lasted
    fingerprint, status, evaluations = episodes[0]
    assert (fingerprint, status) == (f"secret_in_response@model={LEAKY}", "resolved") and evaluations > 3
