"""Ingest throughput: `watchkeeper run` end to end against a bare kafka-python consumer, in one run.

    python bench/ingest.py                 # 200k generated records (~1.6 KB), 2 workers, Postgres at 127.0.0.1:5432
    python bench/ingest.py --runs 3        # three daemon runs, each between two ceiling measurements
    python bench/ingest.py --workers 1 -n 50000 --db sqlite
    python bench/ingest.py --config "$(printf '[detectors.toxicity]\nenabled = false')"   # extra TOML
    python bench/ingest.py --format otlp   # OTLP trace batches (50 GenAI spans per message, otlp_proto)
    python bench/ingest.py --key-cost --config "$(printf '[pipeline]\nstore_text = "full"')"   # encryption's cost

With ``--key-cost`` every run is a pair of daemon runs on the same topic, one without and one with an encryption
key (``WATCHKEEPER_ENCRYPTION_KEY``, a fresh key; the order alternates between runs), and the ratio keyed /
unkeyed is printed. A key seals raw text, so the cost shows with ``store_text = "full"`` (the raw text is
sealed and a redacted copy made for the clear columns); in the default ``redacted`` mode it seals dead letters
only.

With ``--format otlp`` (or ``litellm``) the same generated records are reshaped (`monitor.synthetic.formats`),
the daemon runs with ``[kafka] format`` set, and the bare consumer parses each message as that format does
(protobuf ``ExportTraceServiceRequest.ParseFromString`` for OTLP, ``json.loads`` otherwise); both rates are
in records (GenAI spans) per second.

Both sides read the same topic on the same local broker:
  (a) ceiling: a bare KafkaConsumer in a group that only `json.loads` each value;
  (b) watchkeeper: the real daemon (`python -m monitor run`, separate processes, every detector, drift,
      aggregates and sampling at their defaults) into a fresh database, until every offset is committed
      (lag zero).
Rates are measured from the first message consumed (a) / first batch committed (b) to the last, so the
group-join time of each is excluded. The ceiling moves by ±10% from one measurement to the next on a shared
2-core machine, so it is measured before and after every daemon run, and each ratio is against the mean of
the two around it (the ratio against the higher one is printed too). Prints the rates, the ratios and the
daemon's peak RSS (all its processes).

The topic gets 3 partitions per worker by default: a consumer group splits partitions, not records, so 3
partitions over 2 workers leaves one worker with twice the other's share, and the run takes as long as
the busier one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil
from kafka import KafkaConsumer
from sqlalchemy import create_engine, func, select, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest  # noqa: E402

from monitor.storage.crypto import new_key  # noqa: E402
from monitor.storage.db import make_engine, upgrade  # noqa: E402
from monitor.storage.schema import consumer_progress  # noqa: E402
from monitor.synthetic.broker import LocalBroker, create_topic  # noqa: E402
from monitor.synthetic.formats import reshape  # noqa: E402
from monitor.synthetic.generator import TrafficGenerator  # noqa: E402
from monitor.synthetic.produce import produce_to_kafka  # noqa: E402

PG_ADMIN = os.environ.get("WATCHKEEPER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def bare_consumer_rate(bootstrap: str, topic: str, n: int, parse=json.loads) -> float:  # type: ignore[no-untyped-def]
    """Messages per second of a bare group consumer that only parses each value."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", enable_auto_commit=False, session_timeout_ms=6000,
        max_poll_records=2000, fetch_max_bytes=64 * 1024 * 1024, max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    seen = 0
    first = None
    while seen < n:
        for messages in consumer.poll(timeout_ms=500).values():
            if first is None:
                first = time.perf_counter()
            for message in messages:
                parse(message.value)
            seen += len(messages)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close(autocommit=False)
    return (n - 1) / elapsed


def daemon_rate(bootstrap: str, topic: str, n: int, db_url: str, workers: int, extra_config: str,
                workdir: Path, fmt: str = "watchkeeper", key: str | None = None) -> tuple[float, float]:
    """Run the real daemon until lag is zero (``n`` messages committed); returns (messages/s, peak RSS MiB)."""
    config = workdir / "monitor.toml"
    if "[pipeline]" in extra_config:  # one [pipeline] table: the extra config's, with the workers added
        extra_config, pipeline = extra_config.replace("[pipeline]", f"[pipeline]\nworkers = {workers}", 1), ""
    else:
        pipeline = f"\n[pipeline]\nworkers = {workers}\n"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[kafka]\nbootstrap_servers = ["{bootstrap}"]\n'
        f'topics = ["{topic}"]\nformat = "{fmt}"\n'
        f'group_id = "bench-wk-{uuid.uuid4().hex[:6]}"\nsession_timeout_ms = 6000\n'
        f'{pipeline}{extra_config}\n'
    )
    engine = make_engine(db_url)
    committed = select(func.coalesce(func.sum(consumer_progress.c.committed), 0))
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "--log-level", "WARNING", "run",
                             "--config", str(config)], cwd=workdir,
                            env={**os.environ, "WATCHKEEPER_ENCRYPTION_KEY": key or ""})
    ps = psutil.Process(proc.pid)
    peak = 0
    first_t = first_n = None
    try:
        while True:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            with engine.connect() as conn:
                done = int(conn.execute(committed).scalar_one())
            now = time.perf_counter()
            if done and first_t is None:
                first_t, first_n = now, done
            if done >= n:
                break
            if proc.poll() is not None:
                raise SystemExit(f"daemon exited with {proc.returncode} after {done} records")
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(30)
        engine.dispose()
    assert first_t is not None and first_n is not None
    return (n - first_n) / (now - first_t), peak / 2**20


def fresh_postgres() -> tuple[str, str]:
    name = f"wk_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name, name


def drop_postgres(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=200_000, help="records (default 200000)")
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--workers", type=int, default=2, help="[pipeline] workers of the daemon (default 2)")
    parser.add_argument("--partitions", type=int, default=None, help="topic partitions (default 3 per worker)")
    parser.add_argument("--runs", type=int, default=1, help="daemon runs, each between two ceilings (default 1)")
    parser.add_argument("--config", default="", help="extra TOML appended to the daemon's config")
    parser.add_argument("--format", dest="fmt", choices=["watchkeeper", "otlp", "litellm"], default="watchkeeper",
                        help="message format on the topic (default watchkeeper)")
    parser.add_argument("--spans-per-message", type=int, default=50, help="with --format otlp (default 50)")
    parser.add_argument("--key-cost", action="store_true",
                        help="each run: the daemon without and with an encryption key, same topic")
    args = parser.parse_args()
    partitions = args.partitions or 3 * max(args.workers, 1)
    if args.workers > 1 and partitions % args.workers:
        print(f"note: {partitions} partitions do not split evenly over {args.workers} workers")

    generated = TrafficGenerator(seed=7).generate(args.n)
    values = [g.value for g in reshape(generated, args.fmt, per_message=args.spans_per_message)]
    mean_bytes = sum(len(v or b"") for v in values) / len(values)
    n_messages, per_message = len(values), args.n / len(values)
    parse = json.loads
    if args.fmt == "otlp":
        def parse(raw: bytes) -> None:
            ExportTraceServiceRequest().ParseFromString(raw)
    runs = []
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "bench"
        create_topic(broker.bootstrap_servers, topic, partitions)
        t = time.perf_counter()
        produce_to_kafka(broker.bootstrap_servers, topic, values)
        print(f"produced {args.n} records as {n_messages} {args.fmt} messages (mean {mean_bytes:.0f} B, "
              f"{partitions} partitions) "
              f"in {time.perf_counter() - t:.1f} s")
        del values

        ceilings = [bare_consumer_rate(broker.bootstrap_servers, topic, n_messages, parse) * per_message]
        print(f"(a) bare kafka-python consumer + parse: {ceilings[-1]:,.0f} records/s")
        for i in range(args.runs):
            keyed: dict[bool, float] = {}
            order = [False]  # with a key? (--key-cost: both, the first alternating between runs)
            if args.key_cost:
                order = [False, True] if i % 2 == 0 else [True, False]
            for with_key in order:
                pg_name = None
                if args.db == "postgres":
                    db_url, pg_name = fresh_postgres()
                else:
                    db_url = f"sqlite:///{Path(tmp) / f'bench-{i}-{int(with_key)}.db'}"
                try:
                    upgrade(db_url)
                    rate, rss = daemon_rate(broker.bootstrap_servers, topic, n_messages, db_url, args.workers,
                                            args.config, Path(tmp), args.fmt, key=new_key() if with_key else None)
                    rate *= per_message
                finally:
                    if pg_name:
                        drop_postgres(pg_name)
                keyed[with_key] = rate
                print(f"(b) watchkeeper run, {args.workers} worker(s) -> {args.db}"
                      f"{' with an encryption key' if with_key else ''}: {rate:,.0f} records/s, "
                      f"peak RSS {rss:,.0f} MiB")
            rate = keyed[False]
            ceilings.append(bare_consumer_rate(broker.bootstrap_servers, topic, n_messages, parse) * per_message)
            print(f"(a) bare kafka-python consumer + parse: {ceilings[-1]:,.0f} records/s")
            around = ceilings[-2:]
            runs.append({"watchkeeper_rps": round(rate), "ceiling_rps": [round(c) for c in around],
                         "ratio": round(rate / (sum(around) / 2), 3), "ratio_vs_higher": round(rate / max(around), 3),
                         "peak_rss_mib": round(rss)})
            if args.key_cost:
                runs[-1] |= {"keyed_rps": round(keyed[True]), "keyed_ratio": round(keyed[True] / keyed[False], 3)}
                print(f"with a key / without: {keyed[True]:,.0f} / {keyed[False]:,.0f} records/s = "
                      f"{runs[-1]['keyed_ratio']:.2f}")
            print(f"ratio b/a = {runs[-1]['ratio']:.2f} (against the higher ceiling {runs[-1]['ratio_vs_higher']:.2f})")
    ratios = sorted(r["ratio"] for r in runs)
    result = {"n": args.n, "format": args.fmt, "db": args.db, "workers": args.workers, "partitions": partitions,
              "mean_bytes": round(mean_bytes), "config": args.config, "runs": runs,
              "ratio_min": ratios[0], "ratio_median": ratios[len(ratios) // 2]}
    if args.key_cost:
        keyed_ratios = sorted(r["keyed_ratio"] for r in runs)
        result["keyed_ratio_median"] = keyed_ratios[len(keyed_ratios) // 2]
    if args.runs > 1:
        print(f"ratios over {args.runs} runs: {', '.join(f'{r:.2f}' for r in ratios)} "
              f"(min {ratios[0]:.2f}, median {result['ratio_median']:.2f})")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    suffix = "" if args.fmt == "watchkeeper" else f"-{args.fmt}"
    suffix += "-key-cost" if args.key_cost else ""
    (out / f"ingest-{args.db}{suffix}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
