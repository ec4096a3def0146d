"""Shadow replay on real vLLM through the real daemon: records on Kafka are sampled, replayed on vLLM's OpenAI
server (SmolLM2-135M on the CPU, one server per session) and compared; the server's /health and /metrics are
scraped into ``reference_health``; when vLLM goes away mid-replay nothing is lost or duplicated, ingest goes
on, and the "reference down" alert fires, then resolves once vLLM is back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from monitor.config import Config
from monitor.storage.db import make_engine
from monitor.storage.schema import alerts, records, reference_health, samples, shadow_comparisons
from tests.helpers import DaemonThread, config_for, count, encode, good_record, produce, wait_for, write_config
from tests.inference.vllm_server import MODEL_ALIAS, VllmServer

pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.timeout(1200)]  # the first one waits for vLLM to start


def daemon_config(db_url: str, bootstrap: str, topic: str, tmp_path: Path, url: str, per_minute: int) -> Config:
    """Every record sampled; replay every 2 s; the reference scraped every second; a 3 s 'down' window."""
    path = write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=bootstrap, topic=topic, extra=f"""
store_text = "full"

[scheduler]
tick = "1s"

[sampling]
uniform_rate = 1.0
uniform_cap = 100000

[alerts]
evaluate_every = "1s"
resolve_after = "2s"
group_wait = "0s"

[alerts.rules.reference_down]
window = "3s"
min_samples = 2

[shadow]
interval = "2s"
health_interval = "1s"
max_concurrent = 2
prompts_per_minute = {per_minute}
queue_size = 1000
outage_backoff_initial_s = 0.2
outage_backoff_max_s = 1.0

[[shadow.references]]
url = "{url}"
model = "{MODEL_ALIAS}"
max_tokens = 16
max_retries = 0
timeout_s = 30
""")
    return config_for(path)


def now_records(n: int, start: int = 0, age: timedelta = timedelta(0)) -> list[bytes]:
    now_ms = int((datetime.now(UTC) - age).timestamp() * 1000)
    return [encode(good_record(i, ts=now_ms - i, prompt=f"Question {i}: name a colour of the rainbow."))
            for i in range(start, start + n)]


def rows(db_url: str, table: Any, *where: Any) -> list[Any]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(select(table).where(*where)))
    finally:
        engine.dispose()


def test_records_on_kafka_are_replayed_on_vllm_and_its_health_is_recorded(
        vllm_server: VllmServer, migrated_db_url: str, kafka_broker: str, topic: str, tmp_path: Path) -> None:
    from monitor.ingest.steps.sampling import SamplingStep

    produce(kafka_broker, topic, now_records(12))
    config = daemon_config(migrated_db_url, kafka_broker, topic, tmp_path, vllm_server.url, per_minute=6000)
    with DaemonThread(config, steps=[SamplingStep(config.sampling)]):
        wait_for(lambda: count(migrated_db_url, shadow_comparisons) >= 12, 240, "12 records replayed on vLLM")
        wait_for(lambda: bool(rows(migrated_db_url, reference_health, reference_health.c.requests > 0)), 30,
                 "a health scrape that saw the replays")
    compared = rows(migrated_db_url, shadow_comparisons)
    assert len(compared) == 12 and {c.reference_model for c in compared} == {MODEL_ALIAS}
    assert {c.reference_endpoint for c in compared} == {vllm_server.url}
    assert all(c.reference_answer.strip() and 0 < c.tokens_out <= 16 and c.error is None for c in compared)
    assert all(c.agree in (True, False) and -1 <= c.similarity <= 1 for c in compared)
    health = rows(migrated_db_url, reference_health)
    assert all(h.up and h.reference == vllm_server.url and h.model == MODEL_ALIAS for h in health)
    busy = [h for h in health if h.requests]
    assert sum(h.requests for h in busy) <= 12 + 1 and all(h.e2e_p95_s > 0 and h.e2e_sum_s > 0 for h in busy)
    assert all(h.waiting is not None and 0 <= h.kv_cache_usage <= 1 for h in health)
    assert any(h.generation_tokens for h in busy) and any(h.finished for h in busy)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # a vLLM restart costs minutes: once, on Postgres
def test_vllm_stopped_mid_replay_and_restarted_loses_nothing_duplicates_nothing_and_alerts(
        vllm_server: VllmServer, migrated_db_url: str, kafka_broker: str, topic: str, tmp_path: Path) -> None:
    """60 prompts replayed at 2 a second; vLLM is stopped after a few. Ingest of 2000 more records goes on
    while it is down (they are too old to replay), the 'reference down' alert fires; vLLM is started again on
    the same port: the replays resume where they stopped, each prompt stored once, and the alert resolves."""
    from monitor.ingest.steps.sampling import SamplingStep

    produce(kafka_broker, topic, now_records(60))
    config = daemon_config(migrated_db_url, kafka_broker, topic, tmp_path, vllm_server.url, per_minute=120)
    down = (alerts.c.rule == "reference_down", alerts.c.scope == f"reference={vllm_server.url}")
    try:
        with DaemonThread(config, steps=[SamplingStep(config.sampling)]):
            wait_for(lambda: count(migrated_db_url, shadow_comparisons) >= 3, 240, "the first replays")
            vllm_server.stop()
            at_stop = count(migrated_db_url, shadow_comparisons)
            assert at_stop < 60, "the replay was over before vLLM stopped: the test saw no outage"

            produce(kafka_broker, topic, now_records(2000, start=60, age=timedelta(days=3)))
            wait_for(lambda: count(migrated_db_url, records) >= 2060, 60, "ingest to go on while vLLM is down")
            wait_for(lambda: any(a.status == "firing" for a in rows(migrated_db_url, alerts, *down)), 60,
                     "the reference_down alert to fire")
            during = count(migrated_db_url, shadow_comparisons)
            assert during <= at_stop + 2  # at most the requests in flight when it stopped

            vllm_server.start()
            wait_for(lambda: count(migrated_db_url, shadow_comparisons) >= 60, 400, "every prompt replayed")
            wait_for(lambda: any(a.status == "resolved" for a in rows(migrated_db_url, alerts, *down)), 60,
                     "the reference_down alert to resolve")
    finally:
        if not vllm_server.running:
            vllm_server.start()  # later tests share it

    compared = rows(migrated_db_url, shadow_comparisons)
    assert len(compared) == 60 and len({c.record_id for c in compared}) == 60
    assert all(c.error is None and c.reference_answer.strip() for c in compared)
    assert count(migrated_db_url, samples) >= 2060  # everything was sampled; only the recent 60 replayed
    health = rows(migrated_db_url, reference_health)
    ups = [h.up for h in sorted(health, key=lambda h: h.ts)]
    assert True in ups and False in ups and ups[-1] is True
    assert all(h.error for h in health if not h.up)
    [alert] = rows(migrated_db_url, alerts, *down)
    assert alert.severity == "critical" and "is down" in alert.summary
    engine = make_engine(migrated_db_url)
    try:
        with engine.connect() as conn:
            dup = conn.scalar(select(func.count()).select_from(
                select(shadow_comparisons.c.record_id).group_by(shadow_comparisons.c.record_id)
                .having(func.count() > 1).subquery()))
    finally:
        engine.dispose()
    assert dup == 0
