"""LiteLLM's ``StandardLoggingPayload`` (what its proxy's loggers send), one payload per Kafka message.

Mapping (docs/record-format.md, "LiteLLM payloads"): ``id`` → id, ``endTime`` (epoch seconds) → ts,
``model`` → model (``model_group`` and ``custom_llm_provider`` kept in metadata), ``messages`` → prompt (the last
user turn), the first choice of ``response`` → response, ``prompt_tokens``/``completion_tokens`` → tokens,
``endTime - startTime`` → latency, ``status`` ``failure`` → error with ``error_str``/``error_information``,
``metadata.user_api_key_team_alias``/``team_id`` → app, ``call_type`` → route, the end user (or the key's user
id) → user, ``trace_id`` → session, ``response_cost`` → ``cost_usd`` (``cache_hit`` and the key hash in metadata).
"""

from __future__ import annotations

from typing import Any

import orjson

from monitor.ingest.batch import Message
from monitor.ingest.formats import Decoded, as_record, dead_letter
from monitor.ingest.formats.otlp import _prompt_of, _text, _turns
from monitor.ingest.record import RecordError


def _response_text(response: Any) -> tuple[str, str | None]:
    """(text, finish reason) of a LiteLLM response: a ModelResponse dict (chat or text choices) or a string."""
    if isinstance(response, str):
        return response, None
    if isinstance(response, dict):
        choices = response.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            text = _text(message.get("content")) if isinstance(message, dict) else _text(choice.get("text", ""))
            finish = choice.get("finish_reason")
            return text, finish if isinstance(finish, str) else None
    return "", None


def payload_record(payload: dict[str, Any]) -> dict[str, Any]:
    """One ``StandardLoggingPayload`` as a record dict; the record validator reports what is wrong with it."""
    meta = payload.get("metadata") if isinstance(payload.get("metadata"), dict) else {}
    start, end = payload.get("startTime"), payload.get("endTime")
    failed = payload.get("status") == "failure"
    info = payload.get("error_information") if isinstance(payload.get("error_information"), dict) else {}
    text, finish = _response_text(payload.get("response"))
    latency = (end - start) * 1000 if isinstance(start, int | float) and isinstance(end, int | float) else None
    metadata: dict[str, Any] = {"source": "litellm"}
    for key in ("model_group", "custom_llm_provider", "api_base", "cache_hit", "call_type"):
        if payload.get(key) is not None:
            metadata[key] = payload[key]
    if meta.get("user_api_key_hash"):
        metadata["api_key_hash"] = meta["user_api_key_hash"]
    if failed and info.get("error_class"):
        metadata["error_type"] = info["error_class"]
    return {
        "id": payload.get("id"),
        "ts": end * 1000 if isinstance(end, int | float) else None,
        "model": payload.get("model"),
        "prompt": _prompt_of(_turns(payload.get("messages"))),
        "response": text,
        "status": "error" if failed else "ok",
        "error": (payload.get("error_str") or info.get("error_message") or "error") if failed else None,
        "latency_ms": latency,
        "tokens_in": payload.get("prompt_tokens"),
        "tokens_out": payload.get("completion_tokens"),
        "finish_reason": finish,
        "cost_usd": payload.get("response_cost"),
        "app": meta.get("user_api_key_team_alias") or meta.get("user_api_key_team_id"),
        "route": payload.get("call_type"),
        "user": payload.get("end_user") or meta.get("user_api_key_end_user_id") or meta.get("user_api_key_user_id"),
        "session": payload.get("trace_id"),
        "metadata": metadata,
    }


def decode_litellm(message: Message) -> Decoded:
    """`monitor.ingest.formats.Decoder` for LiteLLM payloads: one record or one dead letter per message."""
    out = Decoded()
    if message.value is None:
        out.dead_letters.append(dead_letter(message, "empty message (null value)"))
        return out
    try:
        payload = orjson.loads(message.value)
        if not isinstance(payload, dict):
            raise RecordError(f"a LiteLLM payload must be a JSON object, got {type(payload).__name__}")
        out.records.append(as_record({k: v for k, v in payload_record(payload).items() if v is not None}, message))
    except orjson.JSONDecodeError as exc:
        out.dead_letters.append(dead_letter(message, f"not valid UTF-8 JSON: {exc}"))
    except RecordError as exc:
        out.dead_letters.append(dead_letter(message, f"LiteLLM payload: {exc}"))
    return out


__all__ = ["decode_litellm", "payload_record"]
