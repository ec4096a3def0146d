"""Drift through Kafka and the real daemon: one model's traffic changes; is it caught, where, how fast, once?

Product figures. Per scenario a fresh topic with ``P`` partitions gets generated traffic — two models × three
apps, 50 records/s of event time, ``--before`` stationary records then ``--after`` records in which one model
(``llama-3.1-8b-instruct``, 35% of traffic) changes in every app — and ``D`` `watchkeeper run` processes in
one consumer group read it into a fresh database (SQLite unless ``--db-url``). The daemons are started first and
the traffic produced at once (a backlog, the hardest order for per-stream detection). Printed per scenario:

- detected: a ``drift_events`` row for the changed signal on ``model=llama-3.1-8b-instruct``, and on which
  stream(s) the changed signal was reported;
- delay: records **of the changed stream** (that model) from the first shifted record to the end of the bucket
  that reported it (median and p90 over ``--trials``);
- false alarms: events before the change, or on streams that share no record with the model, per 10⁶
  stationary records (all records before the change plus the other model's after it, times four streams);
- duplicates: extra rows for a (stream, signal) already reported;
- seconds from producing the first shifted record to its ``drift_events`` row (``created_at``).

Baseline in the same run: river's ``ADWIN`` at default settings fed, record by record, the same model's values
of the changed signal (``log1p`` of lengths and latency, 0/1 for rates) in event order — what a per-stream ADWIN
would see with perfect routing (unit figure: no Kafka). Its delay is counted the same way; its false alarms
are its detections before the change, per 10⁶ stationary records of that stream.

    python -m bench.drift --quick          # partitions 4 and 12, 1 and 2 daemons, length shift, 1 trial
    python -m bench.drift                  # partitions 1/4/12 × 1/2 daemons × length/latency/toxic/refusal
    python -m bench.drift --trials 10      # the issue's ≥ 10 trials (long: ~1 minute a trial on 2 cores)
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import func, select

from monitor.ingest.record import decode
from monitor.jobs.drift import overlaps
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import drift_events, records
from monitor.synthetic.broker import LocalBroker, create_topic
from monitor.synthetic.generator import Incident, TrafficGenerator

MODELS = ("gpt-4o-mini-2024-07", "llama-3.1-8b-instruct")
APPS = ("support-bot", "code-assistant", "travel-planner")
CHANGED = "llama-3.1-8b-instruct"
STREAM = f"model={CHANGED}"


@dataclass(frozen=True)
class Shift:
    name: str
    incident: str
    magnitude: float
    signal: str


SHIFTS = {
    "length": Shift("length", "response_length_shift", 1.2, "response_chars"),
    "latency": Shift("latency", "latency_shift", 0.5, "latency_ms"),
    "toxic": Shift("toxic", "toxic_burst", 0.05, "toxic"),
    "refusal": Shift("refusal", "refusal_spike", 0.10, "refusal"),
}


def traffic(shift: Shift, before: int, after: int, seed: int) -> list[bytes]:
    gen = TrafficGenerator(seed=seed, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC),
                           incidents=[Incident(shift.incident, before, 10**9, model=CHANGED,
                                               magnitude=shift.magnitude)])
    return [g.value for g in gen.generate(before + after)]


def signal_value(record, signal: str) -> float | None:  # type: ignore[no-untyped-def]
    """The value the charts watch for a continuous signal (``log1p``); rates are scored by the detectors."""
    if signal == "response_chars":
        return math.log1p(len(record.response)) if record.status != "error" else None
    if signal == "latency_ms":
        return math.log1p(record.latency_ms) if record.latency_ms is not None and record.status != "error" else None
    return None


def run_daemons(bootstrap: str, topic: str, db_url: str, n_daemons: int, values: list[bytes], workdir: Path
                ) -> tuple[list[dict], float]:
    """Produce ``values`` to ``topic``, read them with ``n_daemons`` daemons; return the drift events and
    the wall time the first shifted record was produced (taken as the time production started)."""
    from kafka import KafkaProducer

    config = workdir / "monitor.toml"
    config.write_text(f"""
[database]
url = "{db_url}"
[kafka]
bootstrap_servers = ["{bootstrap}"]
topics = ["{topic}"]
group_id = "bench-{topic}"
session_timeout_ms = 6000
[pipeline]
batch_size = 1000
batch_timeout_ms = 200
[scheduler]
tick = "1s"
[drift]
topic_sample_rate = 0.0
fold_every_s = 0.5
grace_s = 1.0
[sampling]
enabled = false
""")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    daemons = [subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(config)],
                                stdout=open(workdir / f"d{i}.log", "ab"), stderr=subprocess.STDOUT, env=env)  # noqa: SIM115
               for i in range(n_daemons)]
    engine = make_engine(db_url)
    try:
        time.sleep(4 + 3 * n_daemons)  # everyone in the group before the backlog arrives
        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        produced_at = time.time()
        for n, value in enumerate(values):
            producer.send(topic, value=value, key=str(n).encode())
        producer.flush()
        producer.close()
        deadline = time.time() + 300
        while time.time() < deadline:
            with engine.connect() as conn:
                if conn.execute(select(func.count()).select_from(records)).scalar_one() == len(values):
                    break
            time.sleep(0.5)
        time.sleep(8)  # the fold catches up (watermark + settle)
        with engine.connect() as conn:
            events = [dict(r) for r in conn.execute(select(drift_events).order_by(drift_events.c.id)).mappings()]
        return events, produced_at
    finally:
        for d in daemons:
            d.send_signal(signal.SIGTERM)
        for d in daemons:
            try:
                d.wait(30)
            except subprocess.TimeoutExpired:
                d.kill()
        engine.dispose()


def adwin_baseline(decoded: list, shift: Shift, before: int) -> tuple[float | None, int, int]:  # type: ignore[type-arg]
    """river ADWIN (defaults) on the changed model's values: (delay in its records, false alarms, stationary
    records it saw)."""
    from river.drift import ADWIN

    from detectors.chain import DetectorChain
    from monitor.config import Config

    mine = [(i, r) for i, r in enumerate(decoded) if r.model == CHANGED and r.status != "error"]
    if shift.signal in ("toxic", "refusal"):
        config = Config()
        annotations = DetectorChain.from_config(config.detectors, "none").run([r for _, r in mine])
        xs: list[float | None] = []
        for ann in annotations:
            if shift.signal == "toxic":
                score = ann.signals.get("response_toxicity")
                xs.append(None if score is None else float(score >= config.detectors.toxicity.threshold))
            else:
                refused = ann.signals.get("refusal")
                xs.append(None if refused is None else float(bool(refused)))
    else:
        xs = [signal_value(r, shift.signal) for _, r in mine]
    adwin = ADWIN()
    alarms_before, seen_before, after_count = 0, 0, 0
    for (i, _), x in zip(mine, xs, strict=True):
        if x is None:
            continue
        adwin.update(x)
        if i < before:
            seen_before += 1
            alarms_before += adwin.drift_detected
        else:
            after_count += 1
            if adwin.drift_detected:
                return float(after_count), alarms_before, seen_before
    return None, alarms_before, seen_before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--before", type=int, default=7000)
    parser.add_argument("--after", type=int, default=3000)
    parser.add_argument("--partitions", default=None, help="comma-separated, e.g. 1,4,12")
    parser.add_argument("--daemons", default=None, help="comma-separated, e.g. 1,2")
    parser.add_argument("--shifts", default=None, help=f"comma-separated among {', '.join(SHIFTS)}")
    parser.add_argument("--db-url", default=None, help="a Postgres URL (fresh database per scenario: give a base)")
    args = parser.parse_args()
    partitions = [int(p) for p in (args.partitions or ("4,12" if args.quick else "1,4,12")).split(",")]
    daemons = [int(d) for d in (args.daemons or "1,2").split(",")]
    shifts = [SHIFTS[s] for s in (args.shifts or ("length" if args.quick else ",".join(SHIFTS))).split(",")]
    print(f"through Kafka (tansu) and `watchkeeper run`; {args.before} stationary + {args.after} records with "
          f"{CHANGED} changed (35% of traffic); trials per scenario: {args.trials}")
    print(f"{'shift':8} {'P':>3} {'D':>2} {'detected':>9} {'stream(s)':28} {'delay med':>9} {'p90':>6} "
          f"{'FA/1e6':>7} {'dups':>4} {'s to row':>8}")
    with LocalBroker() as broker:
        for shift in shifts:
            adwin_rows = []
            for p in partitions:
                for d in daemons:
                    delays, streams, false_alarms, dups, seconds, detected, stationary = [], set(), 0, 0, [], 0, 0
                    for trial in range(args.trials):
                        seed = 100 + trial
                        values = traffic(shift, args.before, args.after, seed)
                        decoded = [decode(v) for v in values]
                        topic = f"bench-drift-{uuid.uuid4().hex[:8]}"
                        create_topic(broker.bootstrap_servers, topic, partitions=p)
                        with tempfile.TemporaryDirectory() as tmp:
                            db_url = args.db_url or f"sqlite:///{Path(tmp) / 'wk.db'}"
                            upgrade(db_url)
                            events, produced_at = run_daemons(broker.bootstrap_servers, topic, db_url, d, values,
                                                              Path(tmp))
                        change_ts = decoded[args.before].ts
                        mine = [e for e in events if e["signal"] == shift.signal and overlaps(e["stream"], STREAM)
                                and e["detected_at"].replace(tzinfo=UTC) >= change_ts]
                        streams |= {e["stream"] for e in mine}
                        seen: dict[tuple[str, str], int] = {}
                        for e in events:
                            seen[(e["stream"], e["signal"])] = seen.get((e["stream"], e["signal"]), 0) + 1
                        dups += sum(c - 1 for c in seen.values())
                        false_alarms += sum(1 for e in events if e["detected_at"].replace(tzinfo=UTC) < change_ts
                                            or not overlaps(e["stream"], STREAM))
                        stationary += 4 * (args.before + sum(1 for r in decoded[args.before:] if r.model != CHANGED))
                        if mine:
                            detected += 1
                            at = mine[0]["detected_at"].replace(tzinfo=UTC)
                            delays.append(sum(1 for r in decoded[args.before:] if r.model == CHANGED and r.ts < at))
                            seconds.append(mine[0]["created_at"].replace(tzinfo=UTC).timestamp() - produced_at)
                        if p == partitions[0] and d == daemons[0]:
                            adwin_rows.append(adwin_baseline(decoded, shift, args.before))
                    med = f"{np.median(delays):.0f}" if delays else "-"
                    p90 = f"{np.percentile(delays, 90):.0f}" if delays else "-"
                    secs = f"{np.median(seconds):.1f}" if seconds else "-"
                    where = ",".join(sorted(streams)) or "-"
                    print(f"{shift.name:8} {p:>3} {d:>2} {detected:>4}/{args.trials:<4} {where:28} "
                          f"{med:>9} {p90:>6} {false_alarms / stationary * 1e6:>7.0f} {dups:>4} {secs:>8}", flush=True)
            found = [r[0] for r in adwin_rows if r[0] is not None]
            fa = sum(r[1] for r in adwin_rows) / max(sum(r[2] for r in adwin_rows), 1) * 1e6
            print(f"{shift.name:8} river ADWIN (defaults), same model's values in event order: detected "
                  f"{len(found)}/{len(adwin_rows)}, delay median {np.median(found) if found else '-'} records, "
                  f"false alarms {fa:.0f} per 1e6 stationary records", flush=True)


if __name__ == "__main__":
    main()
