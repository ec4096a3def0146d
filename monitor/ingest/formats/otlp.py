"""OpenTelemetry traces as the Collector's kafka exporter writes them: one message = one export batch.

The message is an ``ExportTraceServiceRequest``, as ``otlp_proto`` (protobuf, the exporter's default) or
``otlp_json`` (hex ids, integer enums, 64-bit integers as strings); the encoding is recognised from the bytes.
Every GenAI span of the batch becomes one record whose id is ``<trace id>-<span id>`` (hex), so a redelivered
batch stores nothing twice. Spans that are not LLM calls (HTTP, database, framework spans) are skipped and
counted. A GenAI span that cannot be a record (no model, bad ids, no end time, negative duration…) does not
cost its siblings their place: the siblings are stored and the span is its own dead letter, ``part`` = its
position in the message + 1, its ``raw`` the span alone as a one-span export batch (resource and scope kept)
in the message's encoding — nothing is lost, and a replay maps to the same rows. The mapping is the table in
docs/record-format.md ("OpenTelemetry GenAI traces"). Content is opt-in in every instrumentation: a span
without it is still a record (empty prompt/response; ``metadata.content = "not captured"``) and feeds every
signal that does not need text.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import orjson
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from monitor.ingest.batch import DeadLetter, Message
from monitor.ingest.formats import Decoded, as_record, dead_letter
from monitor.ingest.record import MAX_NUMBER, RecordError

_MAX_DEPTH = 32  # nested attribute values (kvlist/array) deeper than this make the span unusable
_STATUS_ERROR = 2
_HEX_TRACE = re.compile(r"[0-9a-fA-F]{32}")
_HEX_SPAN = re.compile(r"[0-9a-fA-F]{16}")
_GENAI_KEYS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.system", "gen_ai.request.model",
               "gen_ai.response.model", "llm.model_name")
_COST_KEYS = ("gen_ai.usage.cost", "gen_ai.cost.total_cost", "llm.cost.total")
"""Where instrumentations that compute a price put it (OpenLIT/Langfuse, LiteLLM's OTel logger, OpenInference):
US dollars, read into ``cost_usd``; the GenAI conventions themselves have no cost attribute yet."""
_INDEXED = re.compile(r"^(gen_ai\.prompt|gen_ai\.completion|llm\.input_messages|llm\.output_messages)\.(\d+)\.(.+)$")


class SpanError(ValueError):
    """A GenAI span that cannot become a record; the message says why without showing attribute values."""


# --- the two encodings, read into one plain shape --------------------------------------------------------------

def _pb_value(value: Any, depth: int = 0) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if depth > _MAX_DEPTH:
        raise SpanError(f"an attribute value is nested deeper than {_MAX_DEPTH} levels")
    if kind == "array_value":
        return [_pb_value(v, depth + 1) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _pb_value(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _pb_attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in kvs}


def _pb_alone(rs: Any, ss: Any, span: Any) -> bytes:
    """``span`` as a one-span export batch with its resource and scope: what its own dead letter keeps."""
    alone = ExportTraceServiceRequest()
    group = alone.resource_spans.add()
    group.resource.CopyFrom(rs.resource)
    scope = group.scope_spans.add()
    scope.scope.CopyFrom(ss.scope)
    scope.spans.append(span)
    return alone.SerializeToString()


def _pb_spans(request: ExportTraceServiceRequest) -> Iterator[dict[str, Any]]:
    for rs in request.resource_spans:
        resource = _pb_attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield {"resource": resource, "scope": ss.scope.name,
                       "alone": lambda rs=rs, ss=ss, span=span: _pb_alone(rs, ss, span),
                       "load": lambda span=span: {
                    "trace_id": span.trace_id.hex() if len(span.trace_id) == 16 else None,
                    "span_id": span.span_id.hex() if len(span.span_id) == 8 else None,
                    "name": span.name, "start": span.start_time_unix_nano, "end": span.end_time_unix_nano,
                    "status": span.status.code, "status_message": span.status.message,
                    "attrs": _pb_attrs(span.attributes),
                    "events": [(e.name, _pb_attrs(e.attributes)) for e in span.events],
                }}


def _json_value(value: Any, depth: int = 0) -> Any:
    if not isinstance(value, dict) or not value:
        return None
    if depth > _MAX_DEPTH:
        raise SpanError(f"an attribute value is nested deeper than {_MAX_DEPTH} levels")
    kind, inner = next(iter(value.items()))
    if kind == "stringValue" or kind == "boolValue":
        return inner
    if kind == "intValue":
        return int(inner)
    if kind == "doubleValue":
        return float(inner)
    if kind == "arrayValue":
        return [_json_value(v, depth + 1) for v in inner.get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: _json_value(kv.get("value"), depth + 1) for kv in inner.get("values", [])}
    if kind == "bytesValue":
        return base64.b64decode(inner).hex()
    raise SpanError(f"an attribute value has an unknown kind {kind[:40]!r}")


def _json_attrs(kvs: Any) -> dict[str, Any]:
    if kvs is None:
        return {}
    if not isinstance(kvs, list):
        raise SpanError("'attributes' must be a list")
    return {kv["key"]: _json_value(kv.get("value")) for kv in kvs}


def _json_id(value: Any, pattern: re.Pattern[str]) -> str | None:
    return value.lower() if isinstance(value, str) and pattern.fullmatch(value) else None


def _json_span(span: Any) -> dict[str, Any]:
    if not isinstance(span, dict):
        raise SpanError(f"a span must be an object, got {type(span).__name__}")
    status = span.get("status") or {}
    return {
        "trace_id": _json_id(span.get("traceId"), _HEX_TRACE), "span_id": _json_id(span.get("spanId"), _HEX_SPAN),
        "name": str(span.get("name", ""))[:200], "start": int(span.get("startTimeUnixNano") or 0),
        "end": int(span.get("endTimeUnixNano") or 0), "status": int(status.get("code") or 0),
        "status_message": status.get("message") or "", "attrs": _json_attrs(span.get("attributes")),
        "events": [(e.get("name", ""), _json_attrs(e.get("attributes"))) for e in span.get("events") or []],
    }


def _json_spans(request: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(request, dict):
        raise ValueError(f"an OTLP JSON export request must be an object, got {type(request).__name__}")
    if request.keys() - {"resourceSpans"}:  # e.g. one of our JSON records sent to an otlp topic by mistake
        raise ValueError("not an OTLP JSON export request: it has keys other than 'resourceSpans'")
    for rs in request.get("resourceSpans") or []:
        resource = _json_attrs((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or []:
            scope = (ss.get("scope") or {}).get("name", "")
            for span in ss.get("spans") or []:
                yield {"resource": resource, "scope": scope, "load": lambda span=span: _json_span(span),
                       "alone": lambda rs=rs, ss=ss, span=span: orjson.dumps({"resourceSpans": [
                           {"resource": rs.get("resource") or {},
                            "scopeSpans": [{"scope": ss.get("scope") or {}, "spans": [span]}]}]})}


def export_items(raw: bytes, request_type: type[Any], from_json: Callable[[Any], Iterator[dict[str, Any]]],
                 from_pb: Callable[[Any], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The items of one OTLP export request (``request_type``: traces or logs), protobuf or JSON — a JSON
    message starts with ``{``, a protobuf one with field 1's tag, 0x0A. Raises ValueError for a message that is
    neither; each item's ``load()`` reads that item and may raise for it alone."""
    if raw.lstrip()[:1] == b"{":
        try:
            request = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"not valid OTLP JSON: {exc}") from None
        try:
            yield from from_json(request)
        except (AttributeError, TypeError, KeyError, SpanError) as exc:
            raise ValueError(f"not an OTLP JSON export request: {type(exc).__name__}") from None
        return
    request = request_type()
    try:
        request.ParseFromString(raw)
    except (DecodeError, RecursionError) as exc:
        raise ValueError(f"not OTLP protobuf (an {request_type.__name__}) nor OTLP JSON: {exc}") from None
    yield from from_pb(request)


def spans_of(raw: bytes) -> Iterator[dict[str, Any]]:
    """The spans of one trace export batch (`export_items`)."""
    return export_items(raw, ExportTraceServiceRequest, _json_spans, _pb_spans)


# --- the GenAI conventions ---------------------------------------------------------------------------------------

def is_genai(attrs: Mapping[str, Any]) -> bool:
    """A span is an LLM call when it carries a GenAI (or OpenInference LLM) attribute that names the call."""
    return any(key in attrs for key in _GENAI_KEYS) or attrs.get("openinference.span.kind") == "LLM"


def _text(content: Any) -> str:
    """Text of a message's content: a string, a list of typed parts (only ``text`` parts count), or a part."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (_text(p) for p in content) if t)
    if isinstance(content, dict):
        if content.get("type", "text") != "text":
            return ""
        for key in ("content", "text"):
            if isinstance(content.get(key), str):
                return content[key]
    return ""


def _parsed(value: Any) -> Any:
    """Attributes often carry JSON as a string (``gen_ai.input.messages``…): parse it when it is one."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _turns(value: Any) -> list[tuple[str, str]]:
    """(role, text) of a message list in either shape: ``{role, parts}`` (current) or ``{role, content}``."""
    value = _parsed(value)
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return [("user", value)] if isinstance(value, str) else []
    turns = []
    for message in value:
        if isinstance(message, dict):
            if "message" in message and isinstance(message["message"], dict):  # a choice {index, message}
                message = message["message"]
            body = message.get("parts", message.get("content", message.get("text")))
            turns.append((str(message.get("role", "")), _text(body)))
        elif isinstance(message, str):
            turns.append(("user", message))
    return turns


def _prompt_of(turns: list[tuple[str, str]]) -> str:
    for role, text in reversed(turns):
        if role == "user":
            return text
    return turns[-1][1] if turns else ""


def _indexed(attrs: Mapping[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """OpenLLMetry ``gen_ai.prompt.{i}.role/content`` and OpenInference ``llm.input_messages.{i}.message.*``."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for key, value in attrs.items():
        match = _INDEXED.match(key)
        if match:
            family, index, leaf = match.group(1), int(match.group(2)), match.group(3).removeprefix("message.")
            found.setdefault(family, {}).setdefault(index, {})[leaf] = value
    return {family: [(str(m.get("role", "")), _text(m.get("content", ""))) for _, m in sorted(by_index.items())]
            for family, by_index in found.items()}


def content(attrs: Mapping[str, Any], events: list[tuple[str, dict[str, Any]]]) -> tuple[str, str, str] | None:
    """(prompt, response, convention) from whichever content convention the span carries, or None."""
    if "gen_ai.input.messages" in attrs or "gen_ai.output.messages" in attrs:
        output = _turns(attrs.get("gen_ai.output.messages"))
        return (_prompt_of(_turns(attrs.get("gen_ai.input.messages"))), output[0][1] if output else "",
                "gen_ai.input.messages")
    asked = [(name.split(".")[1], a) for name, a in events if name in (
        "gen_ai.system.message", "gen_ai.user.message", "gen_ai.assistant.message")]
    choices = [a for name, a in events if name == "gen_ai.choice"]
    if asked or choices:
        turns = [(role, _text(_parsed(a.get("content", "")))) for role, a in asked]
        answer = _turns(choices[0].get("message", "")) if choices else []
        return _prompt_of(turns), answer[0][1] if answer else "", "gen_ai events"
    legacy = {name: a for name, a in events if name in ("gen_ai.content.prompt", "gen_ai.content.completion")}
    prompt_value = attrs.get("gen_ai.prompt", legacy.get("gen_ai.content.prompt", {}).get("gen_ai.prompt"))
    completion_value = attrs.get("gen_ai.completion",
                                 legacy.get("gen_ai.content.completion", {}).get("gen_ai.completion"))
    if prompt_value is not None or completion_value is not None:
        answer = _turns(completion_value)
        return _prompt_of(_turns(prompt_value)), answer[0][1] if answer else "", "gen_ai.prompt"
    indexed = _indexed(attrs)
    for asked_key, answered_key, convention in (
        ("gen_ai.prompt", "gen_ai.completion", "openllmetry"),
        ("llm.input_messages", "llm.output_messages", "openinference"),
    ):
        if asked_key in indexed or answered_key in indexed:
            answer = indexed.get(answered_key, [])
            return _prompt_of(indexed.get(asked_key, [])), answer[0][1] if answer else "", convention
    if "input.value" in attrs or "output.value" in attrs:
        return _prompt_of(_turns(attrs.get("input.value"))), _text(attrs.get("output.value", "")), "openinference"
    return None


def _first(attrs: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        value = attrs.get(key)
        if value is not None:
            return value
    return None


def _label(value: Any) -> str | None:
    return None if value is None else str(value)[:200]


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpanError(f"{what} must be a number, got {type(value).__name__}")
    return int(value)


def _cost(value: Any) -> float | None:
    """A cost attribute that is a usable price, else None: optional, never a reason to lose the span."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_NUMBER:
        return None  # NaN fails the comparison too
    return float(value)


def span_record(span: dict[str, Any], resource: Mapping[str, Any], scope: str, app: str | None) -> dict[str, Any]:
    """One GenAI span as a record dict (docs/record-format.md); raises SpanError when it cannot be one."""
    attrs = span["attrs"]
    if span["trace_id"] is None or span["span_id"] is None:
        raise SpanError("trace id must be 16 bytes and span id 8 bytes")
    model = _first(attrs, "gen_ai.response.model", "gen_ai.request.model", "llm.model_name")
    if not isinstance(model, str) or not model:
        raise SpanError("no model (gen_ai.response.model, gen_ai.request.model or llm.model_name)")
    start, end = span["start"], span["end"]
    if not end:
        raise SpanError("no end time")
    if end < start:
        raise SpanError("ends before it starts")
    found = content(attrs, span["events"])
    prompt, response, convention = found if found is not None else ("", "", None)
    finish = _first(attrs, "gen_ai.response.finish_reasons", "gen_ai.completion.0.finish_reason",
                    "llm.output_messages.0.message.finish_reason")
    if isinstance(finish, list):
        finish = finish[0] if finish else None
    error_type = attrs.get("error.type")
    failed = span["status"] == _STATUS_ERROR or error_type is not None
    metadata: dict[str, Any] = {
        "source": "otlp", "trace_id": span["trace_id"], "span_id": span["span_id"], "span_name": span["name"][:200],
        "scope": scope[:200],
        "content": convention or "not captured",
    }
    for key, name in (("gen_ai.provider.name", "provider"), ("gen_ai.system", "provider"),
                      ("llm.provider", "provider"), ("gen_ai.response.id", "response_id"),
                      ("gen_ai.operation.name", "operation"), ("error.type", "error_type")):
        if key in attrs and name not in metadata:
            metadata[name] = _label(attrs[key])
    return {
        "id": f"{span['trace_id']}-{span['span_id']}",
        "ts": end / 1e6,
        "model": model[:200],
        "prompt": prompt,
        "response": response,
        "status": "error" if failed else "ok",
        "error": (span["status_message"] or _label(error_type) or "error")[:2000] if failed else None,
        "latency_ms": (end - start) / 1e6,
        "tokens_in": _count(_first(attrs, "gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens",
                                   "llm.token_count.prompt"), "input tokens"),
        "tokens_out": _count(_first(attrs, "gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens",
                                    "llm.token_count.completion"), "output tokens"),
        "finish_reason": _label(finish),
        "cost_usd": _cost(_first(attrs, *_COST_KEYS)),
        "app": app or _label(resource.get("service.name")),
        "route": _label(_first(attrs, "gen_ai.operation.name", "llm.request.type")),
        "user": _label(_first(attrs, "user.id", "enduser.id", "gen_ai.user.id")),
        "session": _label(_first(attrs, "gen_ai.conversation.id", "session.id", "gen_ai.session.id")),
        "metadata": metadata,
    }


class OtlpDecoder:
    """`monitor.ingest.formats.Decoder` for OTLP trace export batches. ``app`` overrides ``service.name``."""

    def __init__(self, app: str | None = None) -> None:
        self.app = app

    def __call__(self, message: Message) -> Decoded:
        out = Decoded()
        if not message.value:
            out.dead_letters.append(dead_letter(message, "empty message (null value)"))
            return out
        position = 0
        try:
            for position, item in enumerate(spans_of(message.value)):
                try:
                    span = item["load"]()
                    if not is_genai(span["attrs"]):
                        out.skipped += 1
                        continue
                    record = as_record(span_record(span, item["resource"], item["scope"], self.app), message)
                    record.part = position + 1
                except (SpanError, RecordError, TypeError, ValueError, KeyError, AttributeError,
                        RecursionError, OverflowError) as exc:
                    reason = str(exc) if isinstance(exc, SpanError | RecordError) else type(exc).__name__
                    out.dead_letters.append(_span_letter(message, item, position, reason))
                    continue
                out.records.append(record)
        except ValueError as exc:
            out.dead_letters.append(dead_letter(message, str(exc)[:500]))
            return out
        return out


def _span_letter(message: Message, item: dict[str, Any], position: int, reason: str) -> DeadLetter:
    """The dead letter of one unusable span: ``part`` = its position + 1, ``raw`` = the span alone as a
    one-span export batch in the message's encoding (its resource and scope kept), so it can be read again
    by itself. Never the whole message: a batch of 10,000 bad spans must not store 10,000 copies of it."""
    try:
        raw = item["alone"]()
    except Exception:  # noqa: BLE001 - a span that cannot even be re-encoded keeps the message's bytes
        raw = message.value
    return DeadLetter(message.topic, message.partition, message.offset, message.key, raw,
                      f"span #{position} of an OTLP export batch (its GenAI siblings are stored): {reason}",
                      position + 1)


def to_otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """``request`` as the Collector's ``otlp_json`` encoding writes it: camelCase, hex ids, integer enums,
    64-bit integers as strings (protobuf's JSON mapping, with ids in hex instead of base64)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(request, use_integers_for_enums=True)
    for rs in data.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
                for link in span.get("links", []):
                    for key in ("traceId", "spanId"):
                        if key in link:
                            link[key] = base64.b64decode(link[key]).hex()
    return orjson.dumps(data)


__all__ = ["OtlpDecoder", "content", "export_items", "is_genai", "span_record", "spans_of", "to_otlp_json"]
