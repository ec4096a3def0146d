"""`watchkeeper produce --format otlp|litellm` writes traffic the daemon reads back whole: every generated record
becomes one stored record, whatever the format, and the malformed share becomes dead letters."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, records
from tests.helpers import DaemonThread, config_for, count, wait_for, write_config


@pytest.mark.parametrize("fmt, extra_args", [("otlp", ["--otlp-encoding", "json", "--spans-per-message", "40"]),
                                             ("otlp", []), ("litellm", [])], ids=["otlp_json", "otlp_proto", "litellm"])
def test_produced_traffic_in_each_format_is_read_back_whole(fmt, extra_args, sqlite_url, kafka_broker, topic,
                                                            tmp_path):
    migrate = subprocess.run([sys.executable, "-m", "monitor", "db", "upgrade"], capture_output=True, text=True,
                             env={**os.environ, "WATCHKEEPER_DATABASE_URL": sqlite_url})
    assert migrate.returncode == 0, migrate.stderr
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "produce", "--bootstrap-servers", kafka_broker, "--topic", topic,
         "-n", "300", "--malformed-share", "0.05", "--format", fmt, *extra_args],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=120)
    assert done.returncode == 0, done.stderr
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=sqlite_url, bootstrap=kafka_broker,
                                     topic=topic, extra=f'[kafka.formats]\n{topic} = "{fmt}"'))
    with DaemonThread(config):
        wait_for(lambda: count(sqlite_url, records) + count(sqlite_url, dead_letters) >= 300, 90,
                 "every generated record or its dead letter")
    engine = make_engine(sqlite_url)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count(), func.sum(records.c.tokens_out))).one()
        letters = conn.execute(select(func.count()).select_from(dead_letters)).scalar_one()
    engine.dispose()
    assert stored[0] + letters == 300 and 270 <= stored[0] < 300 and stored[1] > 0
