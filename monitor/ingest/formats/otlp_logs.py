"""OpenTelemetry log export batches (the Collector's kafka exporter, topic ``otlp_logs``): GenAI content events.

Default GenAI instrumentations (``opentelemetry-instrumentation-openai-v2`` without the latest-conventions
opt-in, among others) do not put the text on the span: they emit one log record per message —
``gen_ai.system.message``, ``gen_ai.user.message``, ``gen_ai.assistant.message``, ``gen_ai.tool.message``,
``gen_ai.choice`` — or one ``gen_ai.client.inference.operation.details`` record with the messages as
attributes, carrying the span's trace and span ids. Each such log record becomes a `GenAIEvent`; the join step
(`monitor.ingest.steps.genai_join`) stores it and puts its text into the span's record, whichever of the two
arrives first. Every other log record is skipped and counted; a message that is not a log export batch is a
dead letter, and one unreadable log record is its own dead letter (``part``), as for spans.

The encoding is recognised from the bytes as for traces: JSON starts with ``{`` (``resourceLogs``), anything
else is read as an ``ExportLogsServiceRequest``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from monitor.ingest.batch import DeadLetter, GenAIEvent, Message
from monitor.ingest.formats import Decoded, dead_letter
from monitor.ingest.formats.otlp import (
    _HEX_SPAN,
    _HEX_TRACE,
    SpanError,
    _json_attrs,
    _json_id,
    _json_value,
    _pb_attrs,
    _pb_value,
    export_items,
)

CONTENT_EVENTS = frozenset((
    "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message", "gen_ai.tool.message",
    "gen_ai.choice", "gen_ai.client.inference.operation.details",
))


def _pb_logs(request: ExportLogsServiceRequest) -> Iterator[dict[str, Any]]:
    for rl in request.resource_logs:
        for sl in rl.scope_logs:
            for log in sl.log_records:
                yield {"load": lambda log=log: {
                    "trace_id": log.trace_id.hex() if len(log.trace_id) == 16 else None,
                    "span_id": log.span_id.hex() if len(log.span_id) == 8 else None,
                    "time": log.time_unix_nano or log.observed_time_unix_nano,
                    "event_name": getattr(log, "event_name", ""),
                    "body": _pb_value(log.body) if log.HasField("body") else None,
                    "attrs": _pb_attrs(log.attributes),
                }, "alone": lambda log=log: log.SerializeToString()}


def _json_log(log: Any) -> dict[str, Any]:
    if not isinstance(log, dict):
        raise SpanError(f"a log record must be an object, got {type(log).__name__}")
    return {
        "trace_id": _json_id(log.get("traceId"), _HEX_TRACE), "span_id": _json_id(log.get("spanId"), _HEX_SPAN),
        "time": int(log.get("timeUnixNano") or log.get("observedTimeUnixNano") or 0),
        "event_name": str(log.get("eventName") or "")[:64], "body": _json_value(log.get("body")),
        "attrs": _json_attrs(log.get("attributes")),
    }


def _json_logs(request: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(request, dict) or request.keys() - {"resourceLogs"}:
        raise ValueError("not an OTLP JSON logs export request: expected an object with 'resourceLogs' only")
    for rl in request.get("resourceLogs") or []:
        for sl in rl.get("scopeLogs") or []:
            for log in sl.get("logRecords") or []:
                yield {"load": lambda log=log: _json_log(log), "alone": lambda log=log: orjson.dumps(log)}


def logs_of(raw: bytes) -> Iterator[dict[str, Any]]:
    """The log records of one logs export batch, protobuf or JSON (`monitor.ingest.formats.otlp.export_items`)."""
    return export_items(raw, ExportLogsServiceRequest, _json_logs, _pb_logs)


def event_of(log: dict[str, Any], message: Message, part: int) -> GenAIEvent | None:
    """The GenAI content event a log record is, or None when it is another kind of log (or not tied to a span:
    nothing to join it to). The event's name is the record's ``event_name``, else its ``event.name``."""
    attrs = log["attrs"]
    name = log["event_name"] or attrs.get("event.name") or ""
    if name not in CONTENT_EVENTS or log["trace_id"] is None or log["span_id"] is None:
        return None
    body = log["body"]
    merged = {k: v for k, v in attrs.items() if k != "event.name"}
    merged.update(body if isinstance(body, dict) else {} if body is None else {"content": body})
    return GenAIEvent(log["trace_id"], log["span_id"], name, merged,
                      datetime.fromtimestamp(log["time"] / 1e9, UTC) if log["time"] else datetime.now(UTC),
                      message.topic, message.partition, message.offset, part)


def decode_otlp_logs(message: Message) -> Decoded:
    """`monitor.ingest.formats.Decoder` for OTLP log export batches: GenAI content events, the rest skipped."""
    out = Decoded()
    if not message.value:
        out.dead_letters.append(dead_letter(message, "empty message (null value)"))
        return out
    try:
        for position, item in enumerate(logs_of(message.value)):
            try:
                event = event_of(item["load"](), message, position + 1)
            except (SpanError, TypeError, ValueError, KeyError, AttributeError, RecursionError, OverflowError,
                    OSError) as exc:  # OSError: a time datetime cannot hold, on some platforms
                reason = str(exc) if isinstance(exc, SpanError) else type(exc).__name__
                out.dead_letters.append(DeadLetter(
                    message.topic, message.partition, message.offset, message.key, _alone(item, message),
                    f"log record #{position} of an OTLP logs batch: {reason}", position + 1))
                continue
            if event is None:
                out.skipped += 1
            else:
                out.events.append(event)
    except ValueError as exc:
        out.dead_letters.append(dead_letter(message, str(exc)[:500]))
    return out


def _alone(item: dict[str, Any], message: Message) -> bytes | None:
    try:
        return item["alone"]()
    except Exception:  # noqa: BLE001 - cannot re-encode it: keep the whole message
        return message.value


def logs_to_otlp_json(request: ExportLogsServiceRequest) -> bytes:
    """``request`` as the Collector's ``otlp_json`` writes it (ids in hex, enums as integers)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(request, use_integers_for_enums=True)
    for rl in data.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for log in sl.get("logRecords", []):
                for key in ("traceId", "spanId"):
                    if key in log:
                        log[key] = base64.b64decode(log[key]).hex()
    return orjson.dumps(data)


__all__ = ["CONTENT_EVENTS", "decode_otlp_logs", "event_of", "logs_of", "logs_to_otlp_json"]
