"""What an operator reads: the default log at INFO over a minute of steady traffic is a handful of lines
(start-up and assignment, not one line per batch, job, HTTP request or scheduler tick); ``--log-format json``
gives one JSON object per line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monitor.synthetic.generator import TrafficGenerator
from monitor.synthetic.produce import produce_to_kafka
from tests.helpers import wait_for, write_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

STEADY_S = 60
MAX_STEADY_INFO_LINES = 5


def _start(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "monitor", *args, "run", "--config", str(config)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_a_minute_of_steady_traffic_logs_a_handful_of_info_lines(sqlite_url, kafka_broker, topic, tmp_path):
    from monitor.storage.db import upgrade

    upgrade(sqlite_url)
    config = write_config(tmp_path / "monitor.toml", db_url=sqlite_url, bootstrap=kafka_broker, topic=topic,
                          extra='workers = 0\n\n[ops]\nport = 0\n')
    log = tmp_path / "daemon.log"
    daemon = _start(config, log)
    stop = threading.Event()
    generator = TrafficGenerator(seed=5, rate_per_s=50)

    def traffic() -> None:
        while not stop.is_set():
            produce_to_kafka(kafka_broker, topic, generator.generate(50))
            stop.wait(1.0)

    feeder = threading.Thread(target=traffic, daemon=True)
    try:
        feeder.start()
        wait_for(lambda: log.read_text().count("partitions assigned") >= 1, 90, "the workers to join")
        time.sleep(15)  # start-up: assignments settle, the first slot of every job runs
        before = len(log.read_text().splitlines())
        time.sleep(STEADY_S)
        steady = log.read_text().splitlines()[before:]
    finally:
        stop.set()
        feeder.join(10)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(60)
    info = [line for line in steady if " INFO " in line]
    noisy = [line for line in steady if " WARNING " in line or " ERROR " in line or "Traceback" in line]
    assert len(info) <= MAX_STEADY_INFO_LINES, "\n".join(info)
    assert not noisy, "\n".join(noisy)
    assert code == 0


def test_json_log_format_is_one_object_per_line(sqlite_url, kafka_broker, topic, tmp_path):
    from monitor.storage.db import upgrade

    upgrade(sqlite_url)
    config = write_config(tmp_path / "monitor.toml", db_url=sqlite_url, bootstrap=kafka_broker, topic=topic,
                          extra="\n[ops]\nport = 0\n")
    log = tmp_path / "daemon.log"
    daemon = _start(config, log, "--log-format", "json")
    try:
        wait_for(lambda: "partitions assigned" in log.read_text(), 90, "the consumer to join")
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert entries and all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["message"].startswith("partitions assigned") for e in entries)


BROKER_GONE = """
import logging
from monitor.app.logs import setup_logging
setup_logging("INFO")
for port in range(200):  # a broker down for a minute: every reconnect, fetch and refresh fails
    logging.getLogger("kafka.net.manager").error("Connection failed: %s", "111 ECONNREFUSED")
    logging.getLogger("kafka.net.transport").error("%s: socket disconnected", f"<transport 127.0.0.1:{port}>")
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except OSError:
        logging.getLogger("kafka.net.transport").exception("%s: Error receiving network data", "<transport>")
logging.getLogger("kafka.coordinator").error("Attempt to join group %s failed due to fatal error: %s", "g", "x")
logging.getLogger("monitor.ingest.source").warning("ours, every time")
logging.getLogger("monitor.ingest.source").warning("ours, every time")
"""


def test_a_broker_outage_is_a_few_kafka_lines_not_one_per_failed_attempt() -> None:
    """kafka-python logs each failed reconnect, fetch and refresh (bench/faults' broker_restart: ~130 ERROR lines
    and a traceback for 60 s down). Each kind of line appears once, a reset socket without its traceback; a
    different kafka error and the daemon's own lines still all come through."""
    out = subprocess.run([sys.executable, "-c", BROKER_GONE], capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[3], check=True).stderr.splitlines()
    assert len(out) == 6, "\n".join(out)
    assert not any(line.startswith("Traceback") for line in out)
    assert "Connection reset by peer" in out[2] and "fatal error" in out[3]
    assert [line.split(": ", 1)[1] for line in out[4:]] == ["ours, every time"] * 2
