"""Synthetic traffic in the shapes LLM stacks already write: OpenTelemetry GenAI trace batches and LiteLLM
``StandardLoggingPayload``s (`monitor.ingest.formats` reads them back).

`reshape` turns generated records (our JSON) into the chosen format. OTLP groups ``per_message`` records into
one export batch (one ``ExportTraceServiceRequest``, as the Collector's kafka exporter writes it), each record a
``chat`` span with the current GenAI attributes (content on the span as ``gen_ai.input.messages`` /
``gen_ai.output.messages``), plus one non-GenAI HTTP span per batch, as real traces have. Messages that are
malformed on purpose pass through unchanged (they become dead letters in any format).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span, Status

from monitor.ingest.formats.otlp import to_otlp_json
from monitor.ingest.record import parse_ts
from monitor.synthetic.generator import Generated


def _kv(key: str, value: Any) -> KeyValue:
    if isinstance(value, int) and not isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    if isinstance(value, list):
        any_value = AnyValue()
        any_value.array_value.values.extend(AnyValue(string_value=str(v)) for v in value)
        return KeyValue(key=key, value=any_value)
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _ts_ns(record: dict[str, Any]) -> int:
    """The record's ``ts`` (epoch milliseconds or RFC 3339) in epoch nanoseconds."""
    return int(parse_ts(record.get("ts", 0)).timestamp() * 1e9)


def price(record: dict[str, Any]) -> float:
    """A made-up price of one generated call in US dollars, from its tokens (both formats carry it)."""
    return round((record.get("tokens_in") or 0) * 1.5e-7 + (record.get("tokens_out") or 0) * 6e-7, 10)


def record_span(record: dict[str, Any]) -> tuple[str, Span]:
    """(service name, a GenAI ``chat`` span) for one generated record; ids derived from the record id."""
    digest = hashlib.sha256(str(record["id"]).encode()).digest()
    end = _ts_ns(record)
    start = end - int(float(record.get("latency_ms") or 0) * 1_000_000)
    span = Span(trace_id=digest[:16], span_id=digest[16:24], name=f"chat {record['model']}",
                kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=max(start, 0), end_time_unix_nano=end)
    attrs: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                             "gen_ai.request.model": record["model"], "gen_ai.response.model": record["model"]}
    for ours, theirs in (("tokens_in", "gen_ai.usage.input_tokens"), ("tokens_out", "gen_ai.usage.output_tokens"),
                         ("session", "gen_ai.conversation.id"), ("user", "user.id")):
        if record.get(ours) is not None:
            attrs[theirs] = record[ours]
    if record.get("finish_reason"):
        attrs["gen_ai.response.finish_reasons"] = [record["finish_reason"]]
    attrs["gen_ai.usage.cost"] = price(record)  # OpenLIT's attribute: the conventions have none yet
    prompt = record.get("prompt") or ""
    attrs["gen_ai.input.messages"] = orjson.dumps(
        [{"role": "user", "parts": [{"type": "text", "content": prompt}]}]).decode()
    attrs["gen_ai.output.messages"] = orjson.dumps(
        [{"role": "assistant", "parts": [{"type": "text", "content": record.get("response") or ""}]}]).decode()
    if record.get("status") == "error":
        attrs["error.type"] = "server_error"
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=str(record.get("error") or "error")))
    span.attributes.extend(_kv(k, v) for k, v in attrs.items())
    return str(record.get("app") or "app"), span


def otlp_batch(records: list[dict[str, Any]]) -> ExportTraceServiceRequest:
    """One export batch: a resource per service, its GenAI spans, and one HTTP span (not GenAI)."""
    by_service: dict[str, list[Span]] = {}
    for record in records:
        service, span = record_span(record)
        by_service.setdefault(service, []).append(span)
    request = ExportTraceServiceRequest()
    for service, spans in by_service.items():
        rs = ResourceSpans()
        rs.resource.attributes.append(_kv("service.name", service))
        scope = rs.scope_spans.add()
        scope.scope.name = "watchkeeper.synthetic"
        scope.spans.extend(spans)
        http = spans[0].__class__(trace_id=spans[0].trace_id, span_id=b"\x01" * 8, name="POST /chat",
                                  start_time_unix_nano=spans[0].start_time_unix_nano,
                                  end_time_unix_nano=spans[0].end_time_unix_nano)
        http.attributes.append(_kv("http.request.method", "POST"))
        scope.spans.append(http)
        request.resource_spans.append(rs)
    return request


def litellm_payload(record: dict[str, Any]) -> dict[str, Any]:
    """A ``StandardLoggingPayload`` for one generated record (cost from a made-up price per token)."""
    end = _ts_ns(record) / 1e9
    failed = record.get("status") == "error"
    tokens_in, tokens_out = record.get("tokens_in") or 0, record.get("tokens_out") or 0
    return {
        "id": record["id"], "call_type": "acompletion", "model": record["model"], "model_group": record["model"],
        "custom_llm_provider": "openai", "startTime": end - float(record.get("latency_ms") or 0) / 1000,
        "endTime": end, "messages": [{"role": "user", "content": record.get("prompt") or ""}],
        "response": {"choices": [{"message": {"role": "assistant", "content": record.get("response") or ""},
                                  "finish_reason": record.get("finish_reason") or "stop"}]},
        "prompt_tokens": tokens_in, "completion_tokens": tokens_out,
        "status": "failure" if failed else "success", "error_str": record.get("error") if failed else None,
        "response_cost": price(record), "cache_hit": False,
        "metadata": {"user_api_key_team_alias": record.get("app"), "user_api_key_user_id": record.get("user")},
        "trace_id": record.get("session"),
    }


def _record(item: Generated) -> dict[str, Any] | None:
    if item.truth.is_malformed or item.value is None:
        return None
    try:
        record = orjson.loads(item.value)
    except orjson.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and "id" in record and "model" in record else None


def reshape(items: Iterable[Generated], fmt: str, *, per_message: int = 50, encoding: str = "proto",
            ) -> Iterator[Generated]:
    """``items`` as messages of ``fmt`` (``otlp`` or ``litellm``); ``watchkeeper`` passes them through.
    For OTLP, ``per_message`` records per export batch, ``encoding`` ``proto`` or ``json``; the batch carries
    the truth of its first record."""
    if fmt == "watchkeeper":
        yield from items
        return
    pending: list[tuple[Generated, dict[str, Any]]] = []

    def flush() -> Generated:
        request = otlp_batch([r for _, r in pending])
        value = request.SerializeToString() if encoding == "proto" else to_otlp_json(request)
        first = pending[0][0]
        pending.clear()
        return Generated(value, first.key, first.truth)

    for item in items:
        record = _record(item)
        if record is None:
            yield item
        elif fmt == "litellm":
            payload = {k: v for k, v in litellm_payload(record).items() if v is not None}
            yield Generated(orjson.dumps(payload), item.key, item.truth)
        else:
            pending.append((item, record))
            if len(pending) >= per_message:
                yield flush()
    if pending:
        yield flush()


__all__ = ["litellm_payload", "otlp_batch", "record_span", "reshape"]
