"""A/B comparison of traffic as users have it: generated logs through Kafka, stored by the real daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from click.testing import CliRunner

from monitor.cli import main
from monitor.storage.schema import records
from monitor.synthetic.generator import ModelProfile, TrafficGenerator, parse_incident
from tests.helpers import DaemonThread, config_for, count, produce, wait_for, write_config

N = 4000


def test_stored_traffic_shows_the_candidates_errors_and_slowness_and_nothing_else(
        migrated_db_url: str, kafka_broker: str, topic: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Two identical model profiles share the traffic; the generator makes m-b fail 4 % of requests
    (m-a 0.5 %) and answer 30 % slower. After the daemon has stored all of it, `watchkeeper compare` reports
    m-b worse on errors and latency (median and p95) and on nothing else: the detectors' rates, lengths,
    tokens and feedback come out the same."""
    models = [ModelProfile("m-a", share=0.5), ModelProfile("m-b", share=0.5)]
    gen = TrafficGenerator(seed=19, models=models, start=datetime(2026, 5, 1, tzinfo=UTC), incidents=[
        parse_incident(f"error_spike@0+{N}:magnitude=0.04,model=m-b"),
        parse_incident(f"latency_shift@0+{N}:magnitude=0.3,model=m-b"),
    ])
    produce(kafka_broker, topic, (g.value for g in gen.generate(N)))
    config_path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                               topic=topic)
    with DaemonThread(config_for(config_path)):
        wait_for(lambda: count(migrated_db_url, records) >= N, 240, "the daemon to store every record")

    result = CliRunner().invoke(main, ["compare", "--config", str(config_path), "--model", "m-a", "--model", "m-b",
                                       "--from", "2026-05-01", "--to", "2026-05-02", "--format", "json"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    significant = {m["name"]: m["verdict"] for m in report["metrics"] if m["significant"]}
    assert significant == {"error_rate": "worse", "latency_ms.median": "worse", "latency_ms.p95": "worse"}
    by_name = {m["name"]: m for m in report["metrics"]}
    assert by_name["error_rate"]["n_a"] + by_name["error_rate"]["n_b"] == N
    assert by_name["latency_ms.median"]["ratio"] > 1.2
    for name in ("refusal_rate", "toxic_rate", "response_chars.median", "tokens_out.p95", "low_feedback_rate"):
        assert by_name[name]["p_value"] is not None, name
