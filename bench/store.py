"""Writing `records` to Postgres: the store's binary COPY against text COPY (the baseline), in one run.

Generated traffic (~1.6 KB records) is decoded and annotated by the real detector chain, turned into
`records` rows by the store's own `record_row`, and written in batches of 2,000, one transaction each, into
a fresh database: (a) text COPY, each value formatted as text by psycopg (what the store did before);
(b) the store's binary COPY (`Store._insert_ignore`). The table is emptied between rounds. Printed per row:
client CPU (this process) and server CPU (every Postgres process, from /proc), best of ``--rounds``.

    python -m bench.store                 # 20k records, 3 rounds
    python -m bench.store -n 50000 --rounds 5
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import psutil
from sqlalchemy import Connection, create_engine, text

from bench.steps import chunks, messages
from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.ingest.pipeline import decode_messages
from monitor.ingest.steps.detect import DetectStep
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import records
from monitor.storage.store import Store, record_row, text_policy

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_cpu() -> float:
    total = 0.0
    for proc in psutil.process_iter(["name"]):
        try:
            if (proc.info["name"] or "").startswith("postgres"):
                times = proc.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def text_copy(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """The baseline: text COPY, JSON columns dumped to text first."""
    columns = list(rows[0])
    quoted = ", ".join(f'"{c}"' for c in columns)
    dbapi = conn.connection.driver_connection
    assert dbapi is not None
    with dbapi.cursor() as cur, cur.copy(f'COPY records ({quoted}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row([orjson.dumps(row[c]).decode() if c == "metadata" and row[c] is not None else row[c]
                            for c in columns])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    detect = DetectStep(DetectorChain.from_config(DetectorsConfig()))
    now = datetime.now(UTC)
    policy = text_policy("redacted")
    batches = []
    for chunk in chunks(messages(args.n, seed=11)):
        batch = decode_messages(chunk)
        detect.process(batch)
        batches.append([record_row(r, a, policy(r, a), now) for r, a in zip(batch.records, batch.annotations,
                                                                             strict=True)])
    n = sum(len(b) for b in batches)

    name = f"wk_bench_store_{uuid.uuid4().hex[:8]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    try:
        upgrade(url)
        engine = make_engine(url)
        store = Store(engine, policy)

        def binary_copy(conn: Connection, rows: list[dict[str, Any]]) -> None:
            store._insert_ignore(conn, records, rows)

        def measure(write: Callable[[Connection, list[dict[str, Any]]], None]) -> tuple[float, float]:
            best = (float("inf"), float("inf"))
            for _ in range(args.rounds):
                with engine.begin() as conn:
                    conn.execute(text("TRUNCATE records"))
                time.sleep(0.3)
                server, client = postgres_cpu(), time.process_time()
                for rows in batches:
                    with engine.begin() as conn:
                        write(conn, rows)
                client = time.process_time() - client
                time.sleep(0.3)  # let the server's accounting catch up
                server = postgres_cpu() - server
                if client + server < sum(best):
                    best = (client, server)
            return best

        measure(binary_copy)  # warm-up: connections, type lookups, the table's first pages
        text_client, text_server = measure(text_copy)
        bin_client, bin_server = measure(binary_copy)
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    def us(seconds: float) -> str:
        return f"{seconds / n * 1e6:6.2f}"

    print(f"{n} `records` rows in batches of 2000, best of {args.rounds} (µs per row)")
    print("                      client  server   total")
    print(f"(a) text COPY:        {us(text_client)}  {us(text_server)}  {us(text_client + text_server)}")
    print(f"(b) binary COPY:      {us(bin_client)}  {us(bin_server)}  {us(bin_client + bin_server)}")
    print(f"binary / text: client {bin_client / text_client:.2f}, total "
          f"{(bin_client + bin_server) / (text_client + text_server):.2f}")


if __name__ == "__main__":
    main()
