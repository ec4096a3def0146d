"""Helpers the tests share: write a config, produce messages, run the daemon in-process or as a process."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from sqlalchemy import Engine, func, select

from monitor.config import Config, load_config
from monitor.storage.db import make_engine


def group_for(topic: str) -> str:
    """Each test topic gets its own consumer group, so one test's members never stall another's joins."""
    return f"wk-{topic}"


def write_config(path: Path, *, db_url: str, bootstrap: str, topic: str, group: str | None = None,
                 extra: str = "") -> Path:
    group = group or group_for(topic)
    path.write_text(
        f"""
[database]
url = "{db_url}"
retry_initial_s = 0.2
retry_max_s = 2.0

[kafka]
bootstrap_servers = ["{bootstrap}"]
topics = ["{topic}"]
group_id = "{group}"
session_timeout_ms = 6000

[pipeline]
batch_size = 500
batch_timeout_ms = 200
{"" if "workers" in extra else "workers = 1"}
{extra}
{"" if "[ops]" in extra else "[ops]"}
{"" if "[ops]" in extra else "port = 0  # a free port: tests run side by side"}
"""
    )
    return path


def config_for(path: Path) -> Config:
    return load_config(path, env={})


def good_record(i: int, **overrides: object) -> dict:
    record = {
        "id": f"req-{i:06d}",
        "ts": 1_763_000_000_000 + i * 100,
        "model": ["m-large", "m-small"][i % 2],
        "app": ["chat", "search", "code"][i % 3],
        "prompt": f"Question number {i}: how do I bake bread?",
        "response": f"Answer {i}: mix flour, water, salt and yeast, then wait.",
        "latency_ms": 200 + i % 50,
        "tokens_in": 12,
        "tokens_out": 15,
    }
    record.update(overrides)
    return record


def produce(bootstrap: str, topic: str, values: Iterable[bytes | None]) -> dict[int, int]:
    """Send every value (keyed, so they spread over partitions); returns partition -> end offset."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    futures = [producer.send(topic, value=value, key=str(n).encode()) for n, value in enumerate(values)]
    producer.flush()
    ends: dict[int, int] = {}
    for future in futures:
        meta = future.get(timeout=10)
        ends[meta.partition] = max(ends.get(meta.partition, 0), meta.offset + 1)
    producer.close()
    return ends


def encode(record: dict) -> bytes:
    return orjson.dumps(record)


_polling_engines: dict[str, Engine] = {}


def polling_engine(db_url: str) -> Engine:
    """One engine per database for what a test reads while it waits (`count`, five times a second): an engine
    per read cost a new connection each time (on Postgres a new server process: ~14 ms a read, ~1 ms pooled).
    Disposed after every test (`dispose_polling_engines`, an autouse fixture in tests/conftest.py)."""
    engine = _polling_engines.get(db_url)
    if engine is None:
        engine = _polling_engines[db_url] = make_engine(db_url)
    return engine


def dispose_polling_engines() -> None:
    while _polling_engines:
        _polling_engines.popitem()[1].dispose()


def count(db_url: str, table) -> int:  # type: ignore[no-untyped-def]
    with polling_engine(db_url).connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class DaemonThread:
    """The real daemon (monitor.app.daemon.Daemon) run in a thread, stopped like SIGTERM would."""

    def __init__(self, config: Config, **kwargs: object) -> None:
        from monitor.app.daemon import Daemon

        self.daemon = Daemon(config, **kwargs)  # type: ignore[arg-type]
        self.exit_code: int | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        self.exit_code = self.daemon.run()

    def __enter__(self) -> DaemonThread:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30) -> int | None:
        self.daemon.stop_event.set()
        self._thread.join(timeout_s)
        return self.exit_code

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_daemon_process(config_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """`watchkeeper run` as a separate OS process (for SIGKILL and multi-member tests)."""
    log = open(log_path, "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config_path)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def committed_offsets(bootstrap: str, topic: str, group: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        return {p: consumer.committed(TopicPartition(topic, p)) for p in sorted(partitions)}
    finally:
        consumer.close(autocommit=False)
