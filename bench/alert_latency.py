"""Alert latency and alert volume, measured on the alert half of the daemon (scheduler + jobs + Slack).

A. Latency: a bad record (a secret in a response) is committed to the database while the real scheduler
   runs `build_jobs(config)` against a local HTTP server playing Slack's webhook; we time commit → Slack
   message, over several incidents. Same-run baseline: identical setup with ``group_wait = 0``, so the
   ratio shows what grouping costs. (Kafka → database adds the pipeline's batch time on top.)
B. Volume: 30 minutes of simulated traffic (10 records/s, 3 models) with four incidents, evaluated every
   2 s of simulated time. Counts messages sent against the naive baseline of one message per evaluation
   that finds a firing condition, and checks that every incident got its message.

    python -m bench.alert_latency [--incidents 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, insert, select

from monitor.alerts.evaluate import evaluate_once
from monitor.alerts.jobs import build_jobs
from monitor.config import Config
from monitor.scheduler import Scheduler
from monitor.storage.db import make_engine
from monitor.storage.schema import alert_outbox, detections, metadata, records
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        grouped = latency(args.incidents, "10s", work)
        baseline = latency(args.incidents, "0s", work)

        def p95(xs: list[float]) -> float:
            return sorted(xs)[max(0, round(0.95 * len(xs)) - 1)]

        print(f"A. bad record committed -> Slack message, {args.incidents} incidents")
        print(f"   default (group_wait 10s): median {statistics.median(grouped):.2f} s, p95 {p95(grouped):.2f} s")
        print(f"   baseline (group_wait 0s): median {statistics.median(baseline):.2f} s, p95 {p95(baseline):.2f} s")
        print(f"   ratio default/baseline (median): {statistics.median(grouped) / statistics.median(baseline):.2f}")
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
