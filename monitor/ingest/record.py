"""The log record (docs/record-format.md) and its decoder.

A Kafka message is JSON, UTF-8, one record per message. `decode` turns raw bytes into a `Record` or raises
`RecordError` with a reason a human can act on; the pipeline sends such messages to `dead_letters` with
their raw bytes. Deployments whose logs use other field names give a mapping (``[record.fields]`` in
``monitor.toml``): ``{"response": "completion"}`` reads our ``response`` from their ``completion``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

KNOWN_FIELDS = (
    "id", "ts", "model", "prompt", "messages", "response", "latency_ms", "tokens_in", "tokens_out",
    "status", "error", "app", "route", "user", "session", "feedback", "metadata", "finish_reason", "cost_usd",
)
_KNOWN = frozenset(KNOWN_FIELDS)
_KNOWN_PRESENT_MAX = len(KNOWN_FIELDS)  # more keys than this: some are unknown
_OPTIONAL_STRINGS = ("app", "route", "user", "session", "error", "finish_reason")
_LABELS = frozenset(("app", "route", "user", "session"))
_MAX_ID_CHARS = 200
_MAX_LABEL_CHARS = 200  # model, app, route, user, session: column widths in `records`
_MAX_INT = 2**31 - 1  # token counts are 32-bit columns; the store's binary COPY must never be handed more
MAX_NUMBER = 1e12
"""Largest ``latency_ms`` / feedback ``score`` accepted (~31 years in milliseconds): far beyond any real value,
and small enough that the per-minute sums (`stream_minutes.latency_sum`) of millions of records stay finite."""
MAX_DEPTH = 64
"""Deepest nesting of objects and lists accepted in a message (the top-level object counts as 1). Every
walk over a record (detectors, redaction, NUL stripping, the JSON encoder of the store) is recursive:
bounding the input here bounds all of them. A deeper message is a dead letter."""


class RecordError(ValueError):
    """A message that breaks the record format (docs/record-format.md). The message says which field and why."""


@dataclass(slots=True)
class Record:
    """One accepted prompt/response log record, with where it came from on Kafka."""

    id: str
    ts: datetime
    model: str
    prompt: str
    response: str
    status: str = "ok"
    messages: list[dict[str, str]] | None = None
    latency_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    error: str | None = None
    app: str | None = None
    route: str | None = None
    user: str | None = None
    session: str | None = None
    finish_reason: str | None = None
    feedback_score: float | None = None
    feedback_comment: str | None = None
    cost_usd: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    topic: str = ""
    partition: int = 0
    offset: int = 0
    part: int = 0
    """0 for a message that is one record; i + 1 for item i of a many-record message (an OTLP span)."""


_SHOWN_SHAPE = re.compile(r"[0-9:.T+\- Z]{1,40}")


def _shown(value: Any) -> str:
    """A rejected value as a dead-letter reason may show it: numbers and timestamp-shaped text as they are,
    any other text only by its length — a reason is read by people and alerts, and the value may be a
    credential.

    >>> _shown("2026-01-01T00:00:00"), _shown("AKIAIOSFODNN7EXAMPLE"), _shown(1e400), _shown([1])
    ("'2026-01-01T00:00:00'", 'a 20-character string', 'inf', 'list')
    """
    if isinstance(value, str):
        return repr(value) if _SHOWN_SHAPE.fullmatch(value) else f"a {len(value)}-character string"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value!r:.40}"
    return type(value).__name__


def _string(obj: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise RecordError(f"missing required field '{key}'")
        return None
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
    return value


def _number(obj: Mapping[str, Any], key: str) -> float | None:
    value = obj.get(key)
    if value is None:
        return None
    if type(value) is float and 0 <= value <= MAX_NUMBER:  # the common case, checked cheaply
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RecordError(f"field '{key}' must be a finite number, got {_shown(value)}")
    if value < 0:
        raise RecordError(f"field '{key}' must not be negative, got {value}")
    if value > MAX_NUMBER:
        raise RecordError(f"field '{key}' is larger than {MAX_NUMBER:.0e}, got {value:.3g}")
    return float(value)


def _integer(obj: Mapping[str, Any], key: str) -> int | None:
    value = obj.get(key)
    if value is None or (type(value) is int and 0 <= value <= _MAX_INT):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"field '{key}' must be an integer, got {_shown(value)}")
    if value < 0:
        raise RecordError(f"field '{key}' must not be negative, got {value}")
    if value > _MAX_INT:
        raise RecordError(f"field '{key}' is larger than {_MAX_INT} (the `records` column is a 32-bit integer)")
    return value


def parse_ts(value: Any) -> datetime:
    """RFC 3339 string or epoch milliseconds -> aware UTC datetime."""
    if isinstance(value, bool):
        raise RecordError("field 'ts' must be an RFC 3339 string or epoch milliseconds, got a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value) or not 0 <= value < 32503680000000:
            raise RecordError(f"field 'ts' epoch milliseconds out of range: {value}")
        return datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)  # Python 3.11 reads RFC 3339, "Z" included
        except ValueError:
            raise RecordError(f"field 'ts' is not an RFC 3339 timestamp: {_shown(value)}") from None
        if parsed.tzinfo is None:
            raise RecordError(f"field 'ts' has no time zone offset: {_shown(value)}")
        if parsed.tzinfo is UTC:
            return parsed
        try:
            return parsed.astimezone(UTC)
        except OverflowError:  # "0001-01-01T00:00:00+14:00" is before the calendar's first instant in UTC
            raise RecordError(f"field 'ts' is outside the representable range in UTC: {_shown(value)}") from None
    if value is None:
        raise RecordError("missing required field 'ts'")
    raise RecordError(f"field 'ts' must be an RFC 3339 string or epoch milliseconds, got {type(value).__name__}")


def _messages(value: Any) -> list[dict[str, str]]:
    """Validate the chat turns in place (extra keys such as ``name`` are kept as sent)."""
    if not isinstance(value, list) or not value:
        raise RecordError("field 'messages' must be a non-empty list of {role, content}")
    for i, turn in enumerate(value):
        if type(turn) is not dict or type(turn.get("role")) is not str or type(turn.get("content")) is not str:
            raise RecordError(f"messages[{i}] must be an object with string 'role' and 'content'")
    return value


def _without_nul(value: Any) -> Any:
    """NUL cannot be stored in Postgres text or JSONB: replace it with U+FFFD rather than lose the record."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


def nesting_depth_exceeds(obj: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``obj`` nests objects/lists deeper than ``limit`` (``obj`` itself at depth 1). Iterative, so
    it cannot itself hit the recursion limit it protects the rest of the chain from."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values() if isinstance(v, dict | list))
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value if isinstance(v, dict | list))
    return False


def last_user_turn(messages: list[dict[str, str]]) -> str:
    """The prompt of a chat record: its last user turn (or the last turn if no user spoke)."""
    for turn in reversed(messages):
        if turn["role"] == "user":
            return turn["content"]
    return messages[-1]["content"]


def decode(raw: bytes | None, fields: Mapping[str, str] | None = None) -> Record:
    """Validate one message against the record format (docs/record-format.md).

    ``fields`` maps our field names to the deployment's. Unknown top-level fields go into ``metadata``.

    >>> r = decode(b'{"id":"r1","ts":0,"model":"m","prompt":"hi","response":"hello","shoe":9}')
    >>> (r.id, r.prompt, r.metadata)
    ('r1', 'hi', {'shoe': 9})
    """
    if raw is None:
        raise RecordError("empty message (null value)")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RecordError(f"not valid UTF-8 JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise RecordError(f"message must be a JSON object, got {type(obj).__name__}")
    # Nesting can only exceed MAX_DEPTH if the message holds more than MAX_DEPTH brackets: counting them is
    # a C-speed scan, so the walk runs only for the rare message that might be too deep.
    if raw.count(b"{") + raw.count(b"[") > MAX_DEPTH and nesting_depth_exceeds(obj):
        raise RecordError(f"message nests objects/lists deeper than {MAX_DEPTH} levels")
    if b"\\u0000" in raw:
        obj = _without_nul(obj)
    if fields:
        obj = {ours: obj.pop(theirs) for ours, theirs in fields.items() if theirs in obj} | obj

    get = obj.get
    record_id, model, status = get("id"), get("model"), get("status")
    # The common case is checked with exact type tests; anything else goes through the validators, which
    # raise with the reason (or accept what the fast test was too strict for).
    if type(record_id) is not str or not 0 < len(record_id) <= _MAX_ID_CHARS:
        record_id = _string(obj, "id", required=True)
        assert record_id is not None
        if not record_id or len(record_id) > _MAX_ID_CHARS:
            raise RecordError(f"field 'id' must be 1..{_MAX_ID_CHARS} characters")
    if type(model) is not str:
        model = _string(obj, "model", required=True)
    if status is None:
        status = "ok"
    elif status != "ok" and status != "error":
        if type(status) is not str:
            raise RecordError(f"field 'status' must be a string, got {type(status).__name__}")
        if status:
            raise RecordError(f"field 'status' must be 'ok' or 'error', got {_shown(status)}")
        status = "ok"

    messages = get("messages")
    prompt = get("prompt")
    if messages is not None:
        messages = _messages(messages)
        if type(prompt) is not str or not prompt:
            prompt = _string(obj, "prompt", required=False) or last_user_turn(messages)
    elif type(prompt) is not str:
        prompt = _string(obj, "prompt", required=False)
        if prompt is None:
            raise RecordError("one of 'prompt' or 'messages' is required")
    response = get("response")
    if type(response) is not str:
        response = _string(obj, "response", required=status == "ok")

    feedback_score = feedback_comment = None
    feedback = get("feedback")
    if feedback is not None:
        if not isinstance(feedback, dict):
            raise RecordError("field 'feedback' must be an object {score, comment}")
        feedback_score = _number(feedback, "score")
        feedback_comment = _string(feedback, "comment", required=False)

    metadata = get("metadata")
    if metadata is None:
        metadata = {}
    elif not isinstance(metadata, dict):
        raise RecordError("field 'metadata' must be an object")
    if len(obj) > _KNOWN_PRESENT_MAX or not _KNOWN.issuperset(obj):
        unknown = obj.keys() - _KNOWN
        if unknown:
            metadata = {**metadata, **{k: obj[k] for k in unknown}}

    optional = {}
    for key in _OPTIONAL_STRINGS:
        value = get(key)
        if value is not None:
            if type(value) is not str:
                raise RecordError(f"field '{key}' must be a string, got {type(value).__name__}")
            if key in _LABELS and len(value) > _MAX_LABEL_CHARS:
                raise RecordError(f"field '{key}' is longer than {_MAX_LABEL_CHARS} characters")
        optional[key] = value
    if len(model or "") > _MAX_LABEL_CHARS:
        raise RecordError(f"field 'model' is longer than {_MAX_LABEL_CHARS} characters")
    if optional["finish_reason"] is not None:
        optional["finish_reason"] = optional["finish_reason"][:32]
    latency = get("latency_ms")
    if not (type(latency) is float and 0 <= latency <= MAX_NUMBER):
        latency = _number(obj, "latency_ms")
    return Record(
        id=record_id,
        ts=parse_ts(obj.get("ts")),
        model=model or "",
        prompt=prompt,
        response=response or "",
        status=status,
        messages=messages,
        latency_ms=latency,
        tokens_in=_integer(obj, "tokens_in"),
        tokens_out=_integer(obj, "tokens_out"),
        feedback_score=feedback_score,
        feedback_comment=feedback_comment,
        cost_usd=_number(obj, "cost_usd") if "cost_usd" in obj else None,
        metadata=metadata,
        **optional,
    )
