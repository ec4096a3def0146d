"""Poison messages: every input that once stopped the daemon or lost data, and the classic fuzz cases.

Each `Poison` says what must become of it: stored (valid, if odd) or dead-lettered with a reason containing
``reason``. The fault tests (tests/monitor/ingest/test_faults.py) and `bench/faults` send this corpus through
Kafka and the real daemon; nothing here may be allowed to crash the daemon or block the messages behind it.

>>> names = [p.name for p in corpus()]
>>> "ts_calendar_edge" in names and "metadata_1000_deep" in names
True
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

REQUIRED = ("id", "ts", "model", "prompt", "response")
TYPED_FIELDS = ("id", "ts", "model", "prompt", "messages", "response", "latency_ms", "tokens_in", "tokens_out",
                "status", "error", "app", "route", "user", "session", "feedback", "metadata")


@dataclass(frozen=True)
class Poison:
    name: str
    value: bytes | None
    reason: str | None
    """Substring of the dead letter's reason; None when the message is valid and must be stored."""


def base(record_id: str, **fields: object) -> dict[str, object]:
    record: dict[str, object] = {"id": record_id, "ts": 1_763_000_000_000, "model": "m-poison",
                                 "prompt": "a question", "response": "an answer"}
    record.update(fields)
    return record


def nested(depth: int) -> object:
    """A metadata value ``depth`` objects deep."""
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def _raw_nested(record_id: str, depth: int) -> bytes:
    """Deep nesting written by hand: orjson itself refuses to encode past 254 levels."""
    head = orjson.dumps(base(record_id))[:-1] + b',"metadata":'
    return head + b'{"a":' * depth + b"1" + b"}" * depth + b"}"


def _wrong_types(prefix: str) -> list[Poison]:
    """Every contract field with a value of the wrong type."""
    wrong: dict[str, object] = {"id": 5, "ts": [1], "model": 3.5, "prompt": {"x": 1}, "messages": "hi",
                                "response": 7, "latency_ms": "fast", "tokens_in": "12", "tokens_out": 1.5,
                                "status": 1, "error": [], "app": 1, "route": {}, "user": True, "session": 2,
                                "feedback": "good", "metadata": [1, 2]}
    return [Poison(f"wrong_type_{name}", orjson.dumps(base(f"{prefix}-wt-{name}", **{name: value})), name)
            for name, value in wrong.items()]


def corpus(prefix: str = "poison", big_mb: int = 0) -> list[Poison]:
    """The corpus. ``prefix`` makes the ids of the stored ones unique per run; ``big_mb`` > 0 adds a valid
    message of that many megabytes (the broker and producer must allow it)."""
    out = [
        Poison("ts_calendar_edge", orjson.dumps(base(f"{prefix}-ts-edge", ts="0001-01-01T00:00:00+14:00")),
               "field 'ts'"),
        Poison("ts_calendar_end", orjson.dumps(base(f"{prefix}-ts-end", ts="9999-12-31T23:59:59-14:00")),
               "field 'ts'"),
        Poison("metadata_1000_deep", _raw_nested(f"{prefix}-deep1000", 1000), "deeper than 64"),
        Poison("metadata_300_deep", _raw_nested(f"{prefix}-deep300", 300), "deeper than 64"),
        Poison("metadata_65_deep", orjson.dumps(base(f"{prefix}-deep65", metadata=nested(64))), "deeper than 64"),
        Poison("metadata_63_deep", orjson.dumps(base(f"{prefix}-deep63", metadata=nested(62))), None),
        Poison("nesting_10000_deep", b"[" * 10_000 + b"]" * 10_000, "not valid UTF-8 JSON"),
        Poison("latency_1e308_a", orjson.dumps(base(f"{prefix}-lat-a", latency_ms=1e308)), "latency_ms"),
        Poison("latency_1e308_b", orjson.dumps(base(f"{prefix}-lat-b", latency_ms=1e308)), "latency_ms"),
        Poison("number_1e999", orjson.dumps(base(f"{prefix}-inf"))[:-1] + b',"latency_ms":1e999}',
               "not valid UTF-8 JSON"),
        Poison("huge_integer_tokens", orjson.dumps(base(f"{prefix}-huge"))[:-1] + b',"tokens_in":' + b"9" * 40 + b"}",
               "tokens_in"),
        Poison("huge_integer_metadata",
               orjson.dumps(base(f"{prefix}-huge-md"))[:-1] + b',"metadata":{"n":' + b"9" * 40 + b"}}", None),
        Poison("invalid_utf8", orjson.dumps(base(f"{prefix}-utf8"))[:-2] + b'\xff\xfe"}', "not valid UTF-8 JSON"),
        Poison("lone_surrogate", orjson.dumps(base(f"{prefix}-sur"))[:-1] + b',"prompt":"\\ud800"}',
               "not valid UTF-8 JSON"),
        Poison("nul_escaped", orjson.dumps(base(f"{prefix}-nul", prompt="a\x00b", metadata={"k\x00": "v\x00"})),
               None),
        Poison("nul_raw_byte", orjson.dumps(base(f"{prefix}-nulraw"))[:-2] + b'\x00"}', "not valid UTF-8 JSON"),
        Poison("duplicated_keys", orjson.dumps(base(f"{prefix}-dup"))[:-1] + b',"model":"m-second"}', None),
        Poison("not_an_object", b"[1,2,3]", "JSON object"),
        Poison("empty_value", None, "empty message"),
        Poison("empty_bytes", b"", "not valid UTF-8 JSON"),
        Poison("negative_latency", orjson.dumps(base(f"{prefix}-neg", latency_ms=-1)), "latency_ms"),
        *_wrong_types(prefix),
        *[Poison(f"missing_{name}", orjson.dumps({k: v for k, v in base(f"{prefix}-miss-{name}").items()
                                                 if k != name}), name if name != "prompt" else "prompt")
          for name in REQUIRED],
    ]
    if big_mb:
        out.append(Poison(f"message_{big_mb}mb", orjson.dumps(base(f"{prefix}-big", response="x" * (big_mb << 20))),
                          None))
    return out
