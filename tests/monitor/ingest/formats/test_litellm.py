"""LiteLLM proxy logs (`StandardLoggingPayload`) read as records. The payloads are hand-built in LiteLLM's
shape (LiteLLM itself is not installed in this environment)."""

from __future__ import annotations

import orjson

from monitor.ingest.batch import RawMessage
from monitor.ingest.formats.litellm import decode_litellm

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
