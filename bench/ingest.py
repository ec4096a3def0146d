"""Ingest throughput: `watchkeeper run` end to end against a bare kafka-python consumer, in one run.

    python bench/ingest.py                 # 200k generated records (~1.6 KB), Postgres at 127.0.0.1:5432
    python bench/ingest.py -n 50000 --db sqlite

Both sides read the same topic on the same local broker:
  (a) ceiling: a bare KafkaConsumer in a group that only `json.loads` each value;
  (b) watchkeeper: the real daemon (`python -m monitor run`, a separate process) into a fresh database,
      until every offset is committed (lag zero).
Rates are measured from the first message consumed (a) / first batch committed (b) to the last, so the
group-join time of each is excluded. Prints both rates, the ratio b/a and the daemon's peak RSS.
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

from monitor.broker import LocalBroker, create_topic  # noqa: E402
from monitor.generator import TrafficGenerator  # noqa: E402
from monitor.produce import produce_to_kafka  # noqa: E402
from monitor.storage.db import make_engine, upgrade  # noqa: E402
from monitor.storage.schema import consumer_progress  # noqa: E402

PG_ADMIN = os.environ.get("WATCHKEEPER_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def bare_consumer_rate(bootstrap: str, topic: str, n: int) -> float:
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
                json.loads(message.value)
            seen += len(messages)
    elapsed = time.perf_counter() - (first or time.perf_counter())
    consumer.close(autocommit=False)
    return (n - 1) / elapsed


def daemon_rate(bootstrap: str, topic: str, n: int, db_url: str, extra_config: str, workdir: Path
                ) -> tuple[float, float]:
    """Run the real daemon until lag is zero; returns (records/s, peak RSS MiB)."""
    config = workdir / "monitor.toml"
    config.write_text(
        f'[database]\nurl = "{db_url}"\n\n[kafka]\nbootstrap_servers = ["{bootstrap}"]\n'
        f'topics = ["{topic}"]\ngroup_id = "bench-wk"\nsession_timeout_ms = 6000\n{extra_config}\n'
    )
    engine = make_engine(db_url)
    committed = select(func.coalesce(func.sum(consumer_progress.c.committed), 0))
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "--log-level", "WARNING", "run",
                             "--config", str(config)], cwd=workdir)
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
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--config", default="", help="extra TOML appended to the daemon's config")
    args = parser.parse_args()

    values = [g.value for g in TrafficGenerator(seed=7).generate(args.n)]
    mean_bytes = sum(len(v or b"") for v in values) / len(values)
    with LocalBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        topic = "bench"
        create_topic(broker.bootstrap_servers, topic, args.partitions)
        t = time.perf_counter()
        produce_to_kafka(broker.bootstrap_servers, topic, values)
        print(f"produced {args.n} records (mean {mean_bytes:.0f} B) in {time.perf_counter() - t:.1f} s")
        del values

        ceiling = bare_consumer_rate(broker.bootstrap_servers, topic, args.n)
        print(f"(a) bare kafka-python consumer + json.loads: {ceiling:,.0f} records/s")

        pg_name = None
        if args.db == "postgres":
            db_url, pg_name = fresh_postgres()
        else:
            db_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        try:
            upgrade(db_url)
            rate, rss = daemon_rate(broker.bootstrap_servers, topic, args.n, db_url, args.config, Path(tmp))
        finally:
            if pg_name:
                drop_postgres(pg_name)
    print(f"(b) watchkeeper run -> {args.db}: {rate:,.0f} records/s, peak RSS {rss:,.0f} MiB")
    print(f"ratio b/a = {rate / ceiling:.2f}")
    result = {"n": args.n, "db": args.db, "mean_bytes": round(mean_bytes), "ceiling_rps": round(ceiling),
              "watchkeeper_rps": round(rate), "ratio": round(rate / ceiling, 3), "peak_rss_mib": round(rss)}
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"ingest-{args.db}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
