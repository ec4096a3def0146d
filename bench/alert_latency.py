"""Alert latency and alert volume: how fast a leak reaches Slack, and how few messages an on-call gets.

A. Commit → Slack: a bad record (a secret in a response) is committed to the database while the real
   scheduler runs `build_jobs(config)` against a local HTTP server playing Slack's webhook; we time commit →
   Slack message, over several incidents.
K. Kafka → Slack, the whole path: generated traffic is produced to a real tansu broker at 50 records/s
   with event times "now"; the real daemon (detectors, store, scheduler, alert jobs, default intervals)
   consumes it; one model after another starts leaking keys (a new scope each time, so each incident is a
   new alert). We time the first leaking record handed to the Kafka producer → its Slack message.
   In A and K the same-run baseline is the identical setup with ``group_wait = 0``: the ratio shows what
   grouping costs (it buys one message per bad deploy instead of one per symptom).
B. Volume: 30 minutes of simulated traffic (10 records/s, 3 models) with four incidents, evaluated every
   2 s of simulated time. Counts messages sent against the naive baseline of one message per evaluation
   that finds a firing condition, and checks that every incident got its message.

    python -m bench.alert_latency [--incidents 8] [--skip-kafka]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.jobs import build_jobs
from monitor.config import AlertsConfig, Config
from monitor.jobs.scheduler import Scheduler
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import alert_outbox, detections, metadata, records
from monitor.synthetic.broker import LocalBroker, create_topic
from monitor.synthetic.generator import Generated, Incident, TrafficGenerator
from monitor.synthetic.produce import produce_to_kafka
from tests.helpers import DaemonThread, config_for, count, wait_for, write_config
from tests.monitor.alerts.slack_server import FakeSlack

_seq = iter(range(10**9))


def _record(ts: datetime, model: str, **kw: object) -> dict[str, object]:
    n = next(_seq)
    row = {"id": f"b{n}", "ts": ts, "ingested_at": ts, "model": model, "app": "chat", "status": "ok",
           "prompt_chars": 40, "response_chars": 300, "latency_ms": 800.0, "response_toxicity": 0.01,
           "refusal": False, "topic": "llm-logs", "partition": 0, "offset": n}
    row.update(kw)
    return row


def _leak(conn, ts: datetime, model: str) -> None:  # type: ignore[no-untyped-def]
    row = _record(ts, model)
    conn.execute(insert(records).values(**row))
    conn.execute(insert(detections).values(record_id=row["id"], detector="secrets", score=1.0, flagged=True,
                                           details={"findings": [{"kind": "AWS_KEY", "field": "response"}]}))


def latency(incidents: int, group_wait: str, workdir: Path) -> list[float]:
    url = f"sqlite:///{workdir / f'latency-{group_wait}.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    with FakeSlack() as slack:
        config = Config.model_validate({"database": {"url": url}, "alerts": {
            "group_wait": group_wait, "slack_webhook_url": slack.webhook_url,
            "rules": {"no_traffic": {"enabled": False}}}})
        scheduler = Scheduler(engine, build_jobs(config), owner="bench", tick=timedelta(seconds=1))
        scheduler.start()
        out = []
        try:
            for i in range(incidents):
                before = len(slack.messages)
                with engine.begin() as conn:
                    _leak(conn, datetime.now(UTC), f"model-{group_wait}-{i}")
                t0 = time.monotonic()
                slack.wait_for(before + 1, timeout=60)
                out.append(time.monotonic() - t0)
                time.sleep(0.5)
        finally:
            scheduler.shutdown()
            engine.dispose()
    return out


# --- K: from the producer to Slack, through the real daemon ----------------------------------------------

RATE = 50.0
SPACING_S = 5.0
"""An incident starts every 5 s on the next model and lasts 1 s; the models' alerts are separate scopes."""


class Arrivals:
    """Watches the fake Slack from a thread and notes when each message arrived (polling every 5 ms)."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            for message in self.slack.messages[len(self.seen):]:
                self.seen.append((time.monotonic(), message["blocks"][0]["text"]["text"]))
            time.sleep(0.005)

    def __enter__(self) -> Arrivals:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _first_leaks(items: Iterable[Generated], first: dict[str, float]) -> Iterator[Generated]:
    """Hand items to the producer, noting when each model's first leaking record was handed over."""
    for item in items:
        if item.truth.secrets_response and item.truth.model not in first:
            first[item.truth.model] = time.monotonic()  # type: ignore[index]
        yield item


def kafka_latency(incidents: int, group_wait: str, bootstrap: str, workdir: Path) -> list[float]:
    """Seconds from each incident's first leaking record produced to Kafka to its Slack message."""
    url = f"sqlite:///{workdir / f'kafka-{group_wait}.db'}"
    upgrade(url)
    topic = f"bench-alerts-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, partitions=3)
    only_secrets = "".join(f"\n[alerts.rules.{name}]\nenabled = false\n"
                           for name in sorted(set(AlertsConfig().rules) - {"secret_in_response"}))
    leaky = [f"leaky-{k}" for k in range(incidents)]
    first: dict[str, float] = {}
    with FakeSlack() as slack, Arrivals(slack) as arrivals:
        extra = f'\n[alerts]\ngroup_wait = "{group_wait}"\nslack_webhook_url = "{slack.webhook_url}"\n{only_secrets}'
        path = write_config(workdir / f"kafka-{group_wait}.toml", db_url=url, bootstrap=bootstrap, topic=topic,
                            group=f"bench-{group_wait}", extra=extra)
        with DaemonThread(config_for(path)):
            warm = TrafficGenerator(seed=1, models=["steady"], start=datetime.now(UTC), rate_per_s=RATE)
            produce_to_kafka(bootstrap, topic, warm.generate(100))
            wait_for(lambda: count(url, records) >= 100, 90, "the daemon to consume the warm-up traffic")
            gen = TrafficGenerator(
                seed=2, models=["steady", *leaky], start=datetime.now(UTC), rate_per_s=RATE,
                incidents=[Incident("secret_leak", start=int((k + 0.5) * SPACING_S * RATE), duration=int(RATE),
                                    model=model) for k, model in enumerate(leaky)])
            items = gen.generate(int((incidents + 0.5) * SPACING_S * RATE))
            produce_to_kafka(bootstrap, topic, _first_leaks(items, first), rate=RATE)
            wanted = {f"[CRITICAL] FIRING model={model}: secret_in_response" for model in leaky}
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not wanted <= {head for _, head in arrivals.seen}:
                time.sleep(0.1)
    out = []
    for model in leaky:
        head = f"[CRITICAL] FIRING model={model}: secret_in_response"
        arrived = [t for t, h in arrivals.seen if h == head]
        if model not in first or len(arrived) != 1:
            raise RuntimeError(f"{model}: expected one firing message, got {len(arrived)}")
        out.append(arrived[0] - first[model])
    if len(arrivals.seen) != incidents:
        raise RuntimeError(f"expected {incidents} messages, got {[h for _, h in arrivals.seen]}")
    return out


# --- B: message volume over 30 simulated minutes ----------------------------------------------------------

INCIDENTS = [  # (kind, model, start minute, end minute)
    ("secret_leak", "m1", 4, 6),
    ("error_spike", "m2", 9, 14),
    ("latency_shift", "m1", 18, 23),
    ("toxic_burst", "m3", 25, 28),
]
EXPECTED = {"secret_leak": "secret_in_response@model=m1", "error_spike": "error_rate@model=m2",
            "latency_shift": "latency_p95@model=m1", "toxic_burst": "toxicity_rate@model=m3"}


def volume(workdir: Path) -> tuple[int, int, set[str]]:
    url = f"sqlite:///{workdir / 'volume.db'}"
    engine = make_engine(url)
    metadata.create_all(engine)
    config = Config.model_validate({"database": {"url": url}, "alerts": {
        "slack_webhook_url": "http://127.0.0.1:9/unused"}})
    start = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
    # One hour of normal traffic first, so spike rules have their baseline.
    warm = [_record(start - timedelta(seconds=s / 10), f"m{1 + s % 3}") for s in range(36_000)]
    with engine.begin() as conn:
        conn.execute(insert(records), warm)
    naive = 0
    for step in range(0, 30 * 60, 2):
        now = start + timedelta(seconds=step)
        minute = step / 60
        rows, leaks = [], []
        for k in range(20):
            ts = now - timedelta(seconds=k / 10)
            model = f"m{1 + k % 3}"
            kw: dict[str, object] = {}
            for kind, m, a, b in INCIDENTS:
                if m == model and a <= minute < b:
                    if kind == "error_spike" and k % 3 == 1 and k % 2 == 0:
                        kw["status"] = "error"
                    if kind == "latency_shift":
                        kw["latency_ms"] = 3000.0
                    if kind == "toxic_burst" and k % 6 == 2:
                        kw["response_toxicity"] = 0.9
                    if kind == "secret_leak" and k == 0 and step % 20 == 0:
                        leaks.append((ts, model))
            rows.append(_record(ts, model, **kw))
        with engine.begin() as conn:
            conn.execute(insert(records), rows)
            for ts, model in leaks:
                _leak(conn, ts, model)
        report = evaluate_once(engine, config, now)
        naive += len(report.firing)
    with engine.connect() as conn:
        sent = conn.scalar(select(func.count()).select_from(alert_outbox)) or 0
        fired = {fp for fps in conn.scalars(select(alert_outbox.c.fingerprints).where(
            alert_outbox.c.kind == "firing")) for fp in fps}
    engine.dispose()
    return int(sent), naive, fired


def p95(xs: list[float]) -> float:
    return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]


def _show(label: str, xs: list[float]) -> None:
    print(f"   {label}: median {statistics.median(xs):.2f} s, p95 {p95(xs):.2f} s, "
          f"min {min(xs):.2f} s, max {max(xs):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=8)
    parser.add_argument("--skip-kafka", action="store_true", help="only A and B (no broker, no daemon)")
    args = parser.parse_args()
    # The daemon's own INFO lines (and a library that configures logging at INFO later) would bury the figures.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    default_wait = f"{AlertsConfig().group_wait.total_seconds():g}s"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grouped = latency(args.incidents, default_wait, work)
        baseline = latency(args.incidents, "0s", work)
        print(f"A. bad record committed to the database -> Slack message, {args.incidents} incidents each")
        _show(f"default (group_wait {default_wait})", grouped)
        _show("baseline (group_wait 0s)", baseline)
        print(f"   ratio default/baseline (median): {statistics.median(grouped) / statistics.median(baseline):.2f}")

        if not args.skip_kafka:
            with LocalBroker() as broker:
                k_grouped = kafka_latency(args.incidents, default_wait, broker.bootstrap_servers, work)
                k_baseline = kafka_latency(args.incidents, "0s", broker.bootstrap_servers, work)
            print(f"K. first leaking record produced to Kafka -> Slack message, real daemon, "
                  f"{args.incidents} incidents each (one firing message per incident, no duplicates)")
            _show(f"default (group_wait {default_wait})", k_grouped)
            _show("baseline (group_wait 0s)", k_baseline)
            print(f"   ratio default/baseline (median): "
                  f"{statistics.median(k_grouped) / statistics.median(k_baseline):.2f}")

        t0 = time.monotonic()
        sent, naive, fired = volume(work)
        missed = sorted(v for v in EXPECTED.values() if v not in fired)
        print(f"B. 30 simulated minutes, {len(INCIDENTS)} incidents ({time.monotonic() - t0:.0f} s to run)")
        print(f"   messages sent: {sent}; naive one-per-firing-evaluation baseline: {naive}; "
              f"ratio {sent / max(naive, 1):.4f}")
        print(f"   incidents with a firing message: {len(EXPECTED) - len(missed)}/{len(EXPECTED)}"
              + (f"; MISSED {missed}" if missed else ""))
        print(f"   alerts that fired: {sorted(fired)}")


if __name__ == "__main__":
    main()
