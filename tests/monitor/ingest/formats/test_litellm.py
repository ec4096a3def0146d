"""LiteLLM proxy logs (`StandardLoggingPayload`) read as records: hand-built payloads for the edge cases, and
payloads made by LiteLLM's own code through Kafka into the daemon."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import orjson
import pytest
from sqlalchemy import select

from monitor.ingest.batch import RawMessage
from monitor.ingest.formats.litellm import decode_litellm
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, records, stream_minutes
from tests.helpers import DaemonThread, committed_offsets, config_for, count, group_for, produce, wait_for, write_config

PAYLOAD = {
    "id": "chatcmpl-1", "call_type": "acompletion", "model": "gpt-4o-mini", "model_group": "fast",
    "custom_llm_provider": "openai", "startTime": 1_763_000_000.0, "endTime": 1_763_000_001.25,
    "messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "What is rye?"}],
    "response": {"choices": [{"message": {"role": "assistant", "content": "A grain."}, "finish_reason": "stop"}]},
    "prompt_tokens": 12, "completion_tokens": 3, "status": "success", "response_cost": 0.00042, "cache_hit": False,
    "metadata": {"user_api_key_hash": "ab12", "user_api_key_team_alias": "bakery", "user_api_key_user_id": "u-9"},
    "trace_id": "t-1",
}


def test_a_litellm_payload_becomes_a_record_with_its_cost():
    [record] = decode_litellm(RawMessage("litellm", 0, 3, None, orjson.dumps(PAYLOAD))).records
    assert (record.id, record.model, record.prompt, record.response, record.finish_reason) == (
        "chatcmpl-1", "gpt-4o-mini", "What is rye?", "A grain.", "stop")
    assert (record.latency_ms, record.tokens_in, record.tokens_out) == (1250.0, 12, 3)
    assert (record.app, record.route, record.user, record.session) == ("bakery", "acompletion", "u-9", "t-1")
    assert record.cost_usd == 0.00042 and "cost" not in record.metadata and record.metadata["model_group"] == "fast"
    assert (record.topic, record.offset) == ("litellm", 3)


def test_a_failed_call_is_an_error_record_and_a_broken_payload_a_dead_letter():
    failed = PAYLOAD | {"status": "failure", "response": None, "error_str": "RateLimitError: slow down",
                        "error_information": {"error_class": "RateLimitError"}}
    [record] = decode_litellm(RawMessage("litellm", 0, 4, None, orjson.dumps(failed))).records
    assert (record.status, record.error, record.response, record.metadata["error_type"]) == (
        "error", "RateLimitError: slow down", "", "RateLimitError")
    broken = orjson.dumps(PAYLOAD | {"prompt_tokens": "many"})
    decoded = decode_litellm(RawMessage("litellm", 0, 5, None, broken))
    assert decoded.records == [] and decoded.dead_letters[0].raw == broken
    assert "tokens_in" in decoded.dead_letters[0].reason


def test_litellm_own_payloads_through_kafka_are_stored_with_cost_and_redacted(migrated_db_url, kafka_broker, topic,
                                                                            tmp_path):
    """LiteLLM's own code makes the payloads (three answers and a rate-limited call); the daemon reads them with
    ``format = "litellm"``: four records with LiteLLM's computed cost in ``cost_usd`` and the per-minute spend,
    the failure as an error, the key in an answer redacted, and a replay adds nothing."""
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("litellm is not installed (pip install -e '.[dev]')")
    out = tmp_path / "payloads.jsonl"
    subprocess.run([sys.executable, "-m", "tests.monitor.ingest.formats.litellm_producer", str(out)], check=True,
                   timeout=300, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                       p for p in (os.getcwd(), os.environ.get("PYTHONPATH")) if p)})
    lines = out.read_bytes().splitlines()
    assert len(lines) == 4
    produce(kafka_broker, topic, lines + lines)  # the second copy: a redelivery
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic, extra='store_text = "redacted"\n[kafka.formats]\n'
                                                        f'{topic} = "litellm"'))
    with DaemonThread(config) as daemon:
        wait_for(lambda: sum(v or 0 for v in committed_offsets(kafka_broker, topic, group_for(topic)).values()) == 8,
                 120, "all eight messages committed")
        assert daemon.stop() == 0
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(records)).all()
        spend = conn.execute(select(stream_minutes.c.cost_n, stream_minutes.c.cost_sum)).all()
    engine.dispose()
    assert len(stored) == 4 and count(migrated_db_url, dead_letters) == 0
    ok = [r for r in stored if r.status == "ok"]
    assert len(ok) == 3 and all(r.cost_usd > 0 and r.tokens_in > 0 and r.model == "gpt-4o-mini" for r in ok)
    assert all(r.app == "bakery" and r.route == "completion" for r in ok)
    [failed] = [r for r in stored if r.status == "error"]
    assert "RateLimitError" in failed.error and failed.cost_usd == 0
    leaked = [r for r in ok if "key" in r.prompt]
    assert len(leaked) == 1 and "AKIAZ7Q4K2M3N6P5R2TX" not in leaked[0].response + leaked[0].prompt
    assert sum(n for n, _ in spend) == 4  # each call counted once despite the redelivery
    assert abs(sum(total for _, total in spend) - sum(r.cost_usd for r in stored)) < 1e-12
