"""A real Prometheus (Debian's ``prometheus`` package) scrapes a real `watchkeeper run` with ``workers = 2``
(prometheus-client's multiprocess mode) on Postgres, fed with generated traffic that has incidents, and
replaying prompts through a real HTTP reference server. Every PromQL expression of every shipped dashboard
panel is then executed through Prometheus' HTTP API and must return data; every SQL panel runs against the
same Postgres. The probes are checked on the same port."""

from __future__ import annotations

import math
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text

from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import alerts, drift_events, reference_health, samples, shadow_comparisons
from monitor.synthetic.generator import Incident, TrafficGenerator
from monitor.synthetic.produce import produce_to_kafka
from tests.helpers import start_daemon_process, wait_for, write_config
from tests.inference.scripted_server import Script, scripted_server
from tests.monitor.ops.dashboards import expand_sql_macros, targets

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(420)]

PROMETHEUS = shutil.which("prometheus")

VLLM_METRICS = """# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="ref-model"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="ref-model"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{model_name="ref-model"} 0.25
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _count(engine, table, *where) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


@pytest.mark.skipif(PROMETHEUS is None, reason="Debian's `prometheus` is not installed (scripts/test installs it "
                                               "with apt-get when run as root; apt-get failed or is absent)")
def test_prometheus_scrapes_a_two_worker_daemon_and_every_dashboard_query_has_data(
        postgres_url, kafka_broker, topic, tmp_path: Path):
    upgrade(postgres_url)
    ops_port = free_port()
    with scripted_server(Script(metrics=VLLM_METRICS)) as reference_url:
        config = write_config(tmp_path / "monitor.toml", db_url=postgres_url, bootstrap=kafka_broker, topic=topic,
                              extra=f"""workers = 2

[ops]
host = "127.0.0.1"
port = {ops_port}

[scheduler]
tick = "2s"

[sampling]
uniform_rate = 0.05

[alerts]
group_wait = "1s"

[drift]
warmup = 1000
topic_warmup = 1000

[shadow]
interval = "3s"
health_interval = "2s"
prompts_per_minute = 600
lookback = "30d"

[[shadow.references]]
model = "ref-model"
url = "{reference_url}"
name = "scripted"
""")
        generator = TrafficGenerator(seed=3, malformed_share=0.01, rate_per_s=200, incidents=(
            Incident("toxic_burst", start=1_500, duration=1_500, magnitude=0.4),
            Incident("secret_leak", start=3_000, duration=300, app="code-assistant", magnitude=0.3),
            Incident("response_length_shift", start=4_000, duration=4_000, magnitude=-1.5),
        ))
        produce_to_kafka(kafka_broker, topic, generator.generate(8_000))
        daemon = start_daemon_process(config, tmp_path / "daemon.log")
        prometheus = None
        stop = threading.Event()
        sent = [8_000]

        def steady() -> None:  # traffic while Prometheus scrapes, so every rate() has something to measure
            while not stop.wait(0.5):
                sent[0] += produce_to_kafka(kafka_broker, topic, generator.generate(50))

        feeder = threading.Thread(target=steady, daemon=True)
        engine = make_engine(postgres_url)
        try:
            base = f"http://127.0.0.1:{ops_port}"
            wait_for(lambda: _ok(f"{base}/readyz"), 120, "/readyz to answer 200 (log: daemon.log)")
            assert httpx.get(f"{base}/livez").json()["ok"] is True

            prom_port = free_port()
            (tmp_path / "prometheus.yml").write_text(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: watchkeeper
    static_configs:
      - targets: ["127.0.0.1:{ops_port}"]
""")
            prometheus = subprocess.Popen(
                [PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=open(tmp_path / "prometheus.log", "wb"), stderr=subprocess.STDOUT)  # noqa: SIM115
            api = f"http://127.0.0.1:{prom_port}/api/v1"
            wait_for(lambda: _ok(f"http://127.0.0.1:{prom_port}/-/ready"), 60, "Prometheus to be ready")
            feeder.start()

            wait_for(lambda: _count(engine, alerts, alerts.c.status == "firing") > 0, 150, "an alert firing")
            wait_for(lambda: _count(engine, drift_events) > 0, 150, "a drift event")
            wait_for(lambda: _count(engine, shadow_comparisons) > 0, 150, "a shadow replay")
            wait_for(lambda: _count(engine, reference_health) > 0, 60, "a reference health check")
            assert _count(engine, samples) > 0
            time.sleep(8)  # a few more scrapes, so every rate() has two points with the data in them

            # The two workers' metrics are summed: the messages are counted once each, by two members.
            wait_for(lambda: (_scalar(api, "sum(watchkeeper_records_total)") or 0) >= 8_000, 60, "8000 messages")
            wait_for(lambda: _scalar(api, "sum(watchkeeper_consumers)") == 2, 60, "two consumers in the group")

            def without_data() -> list[str]:
                missing = []
                for name, title, expr in targets("prometheus"):
                    values = [float(r["value"][1]) for r in _query(api, expr)]
                    if not values or all(math.isnan(v) for v in values):
                        missing.append(f"{name} / {title}: {expr}")
                return missing

            # A scrape slower than its 1 s interval on a busy machine marks the gauges stale until the next
            # one: a query missing data must stay missing for 20 s to count.
            deadline = time.monotonic() + 20
            while (missing := without_data()) and time.monotonic() < deadline:
                time.sleep(2)
            assert not missing, "dashboard queries without data:\n" + "\n".join(missing)

            stop.set()
            feeder.join(30)
            # The two workers' counts are summed by the multiprocess mode: each message exactly once.
            wait_for(lambda: _scalar(api, "sum(watchkeeper_records_total)") == sent[0], 60,
                     f"Prometheus to count the {sent[0]} messages sent")

            now = datetime.now(UTC)
            with engine.connect() as conn:
                for _name, _title, sql in targets("postgres"):
                    conn.execute(text(expand_sql_macros(sql, now - timedelta(days=30), now + timedelta(days=1))))
                    conn.rollback()

            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(90) == 0
        finally:
            stop.set()
            if feeder.is_alive():
                feeder.join(10)
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(30)
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait()
            engine.dispose()
            print((tmp_path / "daemon.log").read_text()[-4000:])


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _scalar(api: str, expr: str) -> float | None:
    result = _query(api, expr)
    return float(result[0]["value"][1]) if result else None


def _query(api: str, expr: str) -> list[dict]:
    reply = httpx.get(f"{api}/query", params={"query": expr}, timeout=10).json()
    assert reply["status"] == "success", (expr, reply)
    return reply["data"]["result"]


def test_metrics_and_probes_on_the_ops_port_of_a_one_process_daemon(migrated_db_url, kafka_broker, topic,
                                                                       tmp_path: Path):
    """workers = 1: the same endpoint from one process; /readyz says why it is not ready."""
    ops_port = free_port()
    config = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                          extra=f'\n[ops]\nhost = "127.0.0.1"\nport = {ops_port}\n')
    from tests.helpers import encode, good_record, produce

    produce(kafka_broker, topic, [encode(good_record(i)) for i in range(300)] + [b"not json"])
    daemon = start_daemon_process(config, tmp_path / "daemon.log")
    try:
        base = f"http://127.0.0.1:{ops_port}"
        wait_for(lambda: _ok(f"{base}/readyz"), 90, "/readyz")
        wait_for(lambda: 'watchkeeper_records_total{outcome="stored"} 300.0' in httpx.get(f"{base}/metrics").text,
                 60, "300 stored records in /metrics")
        body = httpx.get(f"{base}/metrics").text
        assert 'watchkeeper_records_total{outcome="dead_lettered"} 1.0' in body
        assert "# TYPE watchkeeper_batch_duration_seconds histogram" in body
        assert 'watchkeeper_build_info{python="' in body
        assert "watchkeeper_database_up 1.0" in body
        ready = httpx.get(f"{base}/readyz").json()
        assert ready == {"ok": True, "checks": {"process": "ok", "scheduler": "ok", "database": "ok",
                                                "consumer": "ok"}}
        assert httpx.get(f"{base}/nope").status_code == 404
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
