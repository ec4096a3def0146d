"""OpenTelemetry GenAI traces from Kafka: real producers through the real daemon, the other conventions, and
malformed or adversarial export batches."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from sqlalchemy import select

from monitor.config import load_config
from monitor.ingest.batch import RawMessage
from monitor.ingest.formats.otlp import OtlpDecoder, to_otlp_json
from monitor.ingest.pipeline import decode_messages
from monitor.storage.db import make_engine
from monitor.storage.schema import dead_letters, records
from tests.helpers import (
    DaemonThread,
    committed_offsets,
    config_for,
    count,
    group_for,
    produce,
    wait_for,
    write_config,
)
from tests.inference import llama_server

T0 = 1_763_000_000_000_000_000  # ns


def _any(value: object) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, list):
        out = AnyValue()
        out.array_value.values.extend(_any(v) for v in value)
        return out
    return AnyValue(string_value=str(value))


def span(n: int, attrs: dict[str, object], *, events: list[tuple[str, dict]] = (), error: str | None = None,
         duration_ms: int = 250) -> Span:
    s = Span(trace_id=bytes([7]) * 16, span_id=n.to_bytes(8, "big"), name=f"span {n}",
             start_time_unix_nano=T0 + n * 10**9, end_time_unix_nano=T0 + n * 10**9 + duration_ms * 10**6)
    s.attributes.extend(KeyValue(key=k, value=_any(v)) for k, v in attrs.items())
    for name, event_attrs in events:
        event = s.events.add(name=name, time_unix_nano=s.end_time_unix_nano)
        event.attributes.extend(KeyValue(key=k, value=_any(v)) for k, v in event_attrs.items())
    if error:
        s.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
    return s


def batch_of(*spans: Span, service: str = "support-bot") -> ExportTraceServiceRequest:
    rs = ResourceSpans()
    rs.resource.attributes.append(KeyValue(key="service.name", value=_any(service)))
    rs.scope_spans.append(ScopeSpans(spans=list(spans)))
    return ExportTraceServiceRequest(resource_spans=[rs])


def decode_one(raw: bytes):  # type: ignore[no-untyped-def]
    return OtlpDecoder()(RawMessage("otlp_spans", 0, 5, None, raw))


CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-x"}


@pytest.mark.parametrize("encode", [lambda r: r.SerializeToString(), to_otlp_json], ids=["otlp_proto", "otlp_json"])
def test_each_content_convention_gives_the_last_user_turn_and_the_answer(encode):
    """Instrumentations disagree on where the text goes; whichever a span uses, the record reads the same."""
    spans = [
        span(1, CHAT | {"gen_ai.input.messages": orjson.dumps([
            {"role": "system", "parts": [{"type": "text", "content": "be kind"}]},
            {"role": "user", "parts": [{"type": "text", "content": "Q1"}]}]).decode(),
            "gen_ai.output.messages": '[{"role":"assistant","parts":[{"type":"text","content":"A1"}]}]'}),
        span(2, CHAT, events=[("gen_ai.user.message", {"content": "Q2"}),
                              ("gen_ai.choice", {"message": '{"content": "A2"}'})]),
        span(3, CHAT | {"gen_ai.prompt": '[{"role": "user", "content": "Q3"}]', "gen_ai.completion": "A3"}),
        span(4, {"gen_ai.system": "anthropic", "gen_ai.request.model": "claude-x", "gen_ai.prompt.0.role": "system",
                 "gen_ai.prompt.0.content": "sys", "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": "Q4",
                 "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.content": "A4",
                 "gen_ai.completion.0.finish_reason": "stop", "gen_ai.usage.prompt_tokens": 11,
                 "llm.request.type": "chat"}),
        span(5, {"openinference.span.kind": "LLM", "llm.model_name": "llama-x",
                 "llm.input_messages.0.message.role": "user", "llm.input_messages.0.message.content": "Q5",
                 "llm.output_messages.0.message.role": "assistant", "llm.output_messages.0.message.content": "A5",
                 "llm.token_count.prompt": 3, "llm.token_count.completion": 4, "session.id": "s-5"}),
    ]
    decoded = decode_one(encode(batch_of(*spans)))
    assert decoded.dead_letters == [] and decoded.skipped == 0
    got = {r.id[-1]: (r.prompt, r.response, r.metadata["content"]) for r in decoded.records}
    assert got == {"1": ("Q1", "A1", "gen_ai.input.messages"), "2": ("Q2", "A2", "gen_ai events"),
                   "3": ("Q3", "A3", "gen_ai.prompt"), "4": ("Q4", "A4", "openllmetry"),
                   "5": ("Q5", "A5", "openinference")}
    by_n = {r.id[-1]: r for r in decoded.records}
    assert (by_n["4"].model, by_n["4"].tokens_in, by_n["4"].finish_reason, by_n["4"].metadata["provider"]) == \
        ("claude-x", 11, "stop", "anthropic")
    assert (by_n["5"].tokens_in, by_n["5"].tokens_out, by_n["5"].session) == (3, 4, "s-5")
    assert by_n["1"].id == "07" * 16 + "-" + (1).to_bytes(8, "big").hex()
    assert by_n["1"].app == "support-bot" and by_n["1"].latency_ms == 250.0


@pytest.mark.parametrize("encode", [lambda r: r.SerializeToString(), to_otlp_json], ids=["otlp_proto", "otlp_json"])
def test_other_spans_are_skipped_and_one_bad_genai_span_is_its_own_dead_letter(encode):
    """An export batch mixes HTTP spans, good LLM calls and one LLM span without a model: two records, one
    skip count, and one dead letter for that span alone (part = its position + 1; raw = a one-span batch with
    its resource, which the decoder reads again by itself)."""
    raw = encode(batch_of(span(1, {"http.method": "GET"}), span(2, CHAT), span(3, {"gen_ai.operation.name": "chat"}),
                          span(4, CHAT, error="rate limited")))
    decoded = decode_one(raw)
    assert decoded.skipped == 1
    assert [(r.id[-1], r.status, r.error, r.part) for r in decoded.records] == [
        ("2", "ok", None, 2), ("4", "error", "rate limited", 4)]
    assert decoded.records[0].metadata["content"] == "not captured" and decoded.records[0].prompt == ""
    [letter] = decoded.dead_letters
    assert (letter.topic, letter.partition, letter.offset, letter.part) == ("otlp_spans", 0, 5, 3)
    assert "span #2" in letter.reason and "no model" in letter.reason and len(letter.raw) < len(raw)
    again = decode_one(letter.raw)  # the span alone: still unusable, with its service kept
    assert again.records == [] and again.dead_letters[0].part == 1
    fixed = orjson.loads(to_otlp_json(ExportTraceServiceRequest.FromString(letter.raw))) if letter.raw[:1] != b"{" \
        else orjson.loads(letter.raw)
    assert fixed["resourceSpans"][0]["resource"]["attributes"][0]["value"] == {"stringValue": "support-bot"}


def test_cost_is_read_where_instrumentations_put_it_and_a_bad_one_is_ignored():
    raw = batch_of(span(1, CHAT | {"gen_ai.usage.cost": 0.0021}), span(2, CHAT | {"llm.cost.total": 3}),
                   span(3, CHAT | {"gen_ai.usage.cost": "cheap"}), span(4, CHAT | {"gen_ai.usage.cost": -1.0}),
                   span(5, CHAT)).SerializeToString()
    decoded = decode_one(raw)
    assert [r.cost_usd for r in decoded.records] == [0.0021, 3.0, None, None, None]
    assert decoded.dead_letters == []


@pytest.mark.parametrize("raw, reason", [
    (batch_of(span(1, CHAT)).SerializeToString()[:-7], "not OTLP protobuf"),
    (b"\x0a\xff\xff\xff\xff\x0f", "not OTLP protobuf"),
    (b'{"resourceSpans": "nope"}', "not an OTLP JSON export request"),
    (b'{"resourceSpans": [', "not valid OTLP JSON"),
    (b'{"id": "r1", "ts": 0, "model": "m", "prompt": "p", "response": "r"}', "not an OTLP JSON export request"),
    (b"", "empty message"),
])
def test_a_message_that_is_not_an_export_batch_is_one_dead_letter(raw, reason):
    decoded = decode_one(raw)
    assert decoded.records == [] and len(decoded.dead_letters) == 1
    assert reason in decoded.dead_letters[0].reason and decoded.dead_letters[0].raw == raw


def test_wrong_types_huge_attributes_and_deep_nesting_stay_with_their_span():
    """Adversarial spans: the good sibling is stored, the others are named in the message's dead letter, and
    no attribute value (possibly a credential) appears in the reason."""
    good = to_otlp_json(batch_of(span(1, CHAT | {"gen_ai.completion": "x" * 5_000_000})))
    data = orjson.loads(good)
    spans = data["resourceSpans"][0]["scopeSpans"][0]["spans"]
    wrong = dict(spans[0], spanId="0000000000000002", attributes=[
        *spans[0]["attributes"][:3],
        {"key": "gen_ai.usage.input_tokens", "value": {"stringValue": "AKIAZ7Q4K2M3N6P5R2TX"}}])
    deep: dict = {"stringValue": "bottom"}
    for _ in range(40):  # deeper than the 32 levels a span may nest
        deep = {"kvlistValue": {"values": [{"key": "k", "value": deep}]}}
    nested = dict(spans[0], spanId="0000000000000003", attributes=[
        *spans[0]["attributes"][:3], {"key": "x", "value": deep}])
    not_a_span = 42
    spans += [wrong, nested, not_a_span]
    decoded = decode_one(orjson.dumps(data))
    assert [len(r.response) for r in decoded.records] == [5_000_000]
    assert [letter.part for letter in decoded.dead_letters] == [2, 3, 4]
    reasons = [letter.reason for letter in decoded.dead_letters]
    assert not any("AKIA" in r for r in reasons)
    assert "input tokens must be a number" in reasons[0] and "nested deeper" in reasons[1]
    assert all(len(letter.raw) < 10_000 for letter in decoded.dead_letters)  # not the 5 MB sibling again


def test_a_batch_of_ten_thousand_spans_becomes_ten_thousand_records():
    raw = batch_of(*(span(n, CHAT) for n in range(1, 10_001))).SerializeToString()
    batch = decode_messages([RawMessage("otlp_spans", 0, 0, None, raw)], decoders={"otlp_spans": OtlpDecoder()})
    assert len(batch.records) == 10_000 and len({r.id for r in batch.records}) == 10_000
    assert batch.next_offsets == {("otlp_spans", 0): 1} and batch.dead_letters == []


def test_ten_thousand_spans_half_unusable_are_stored_and_dead_lettered_one_by_one(migrated_db_url):
    """Every other span of a 10,000-span batch has no model: 5,000 records and 5,000 dead letters, one per span
    (its own part, its own bytes), and the batch stored again (a redelivery) adds nothing."""
    from monitor.storage.store import Store, text_policy

    raw = batch_of(*(span(n, CHAT if n % 2 else {"gen_ai.operation.name": "chat"})
                     for n in range(1, 10_001))).SerializeToString()
    store = Store(make_engine(migrated_db_url), text_policy("redacted"))
    for _ in range(2):
        batch = decode_messages([RawMessage("otlp_spans", 0, 0, None, raw)], decoders={"otlp_spans": OtlpDecoder()})
        assert len(batch.records) == 5_000 and len(batch.dead_letters) == 5_000
        store.write(batch)
    with store.engine.connect() as conn:
        parts = conn.execute(select(dead_letters.c.part, dead_letters.c.raw)).all()
    store.engine.dispose()
    assert count(migrated_db_url, records) == 5_000 and len(parts) == 5_000
    assert sorted(p for p, _ in parts) == list(range(2, 10_001, 2))
    assert all(len(r) < 500 for _, r in parts)  # each span alone, not the 10,000-span message again


def test_format_is_chosen_per_topic_and_by_environment(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\ntopics = ["llm-logs", "otlp_spans"]\n[kafka.formats]\notlp_spans = "otlp"\n')
    config = load_config(path, env={})
    assert (config.kafka.format_of("llm-logs"), config.kafka.format_of("otlp_spans")) == ("watchkeeper", "otlp")
    assert load_config(path, env={"WATCHKEEPER_KAFKA_FORMAT": "litellm"}).kafka.format_of("llm-logs") == "litellm"
    path.write_text('[kafka]\nformat = "jaeger"\n')
    with pytest.raises(Exception, match=r"kafka\.format"):
        load_config(path, env={})


@pytest.fixture(scope="module")
def real_spans(tmp_path_factory) -> dict[str, Path]:
    """Export batches from the real producer (openai client + OTel GenAI instrumentation → llama.cpp SmolLM2),
    with content capture on (the current span attributes) and off."""
    if reason := llama_server.missing():
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("otel")
    with llama_server.llama_server() as url:
        for capture in ("1", "0", "events"):
            subprocess.run([sys.executable, "-m", "tests.monitor.ingest.formats.otel_producer", url,
                            str(out / f"capture{capture}"), capture], check=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": os.getcwd()})
    return {f"{c}.{ext}": out / f"capture{c}.{ext}" for c in ("1", "0", "events")
            for ext in ("pb", "json", "logs.pb", "logs.json")}


def test_real_openai_spans_through_kafka_are_stored_once_with_the_right_fields(
        real_spans, migrated_db_url, kafka_broker, topic, tmp_path):
    """The openai client's own spans, as the Collector's kafka exporter writes them in both encodings, read by
    the real daemon with ``format = "otlp"``: one record per LLM call, the HTTP span skipped, the failed call
    stored as an error, the secret in a prompt redacted, and a replay (the same batches again) adds nothing."""
    messages = [real_spans[k].read_bytes() for k in ("1.pb", "0.json")]
    produce(kafka_broker, topic, messages + messages)  # the second copy: a producer retry / replay
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic, extra='store_text = "redacted"\n[kafka.formats]\n'
                                                        f'{topic} = "otlp"'))
    with DaemonThread(config) as daemon:
        wait_for(lambda: sum(v or 0 for v in committed_offsets(kafka_broker, topic, group_for(topic)).values()) == 4,
                 120, "all four messages committed")
        assert daemon.stop() == 0
        assert daemon.daemon.pipeline.counters.skipped == 4  # one HTTP span per batch, each seen twice
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(records)).all()
    engine.dispose()
    assert len(stored) == 8 and count(migrated_db_url, dead_letters) == 0
    captured = [r for r in stored if r.prompt]
    assert sorted(r.prompt for r in captured if "colour" in r.prompt) == ["Name one colour."]
    assert all((r.model, r.app, r.route) == ("smollm2", "bread-bot", "chat") for r in stored)
    ok = [r for r in stored if r.status == "ok"]
    assert len(ok) == 6 and all(r.latency_ms > 0 and r.tokens_in > 0 and r.tokens_out > 0 for r in ok)
    assert all(r.finish_reason in ("stop", "length") for r in ok)
    assert len([r for r in stored if r.status == "error"]) == 2
    secret = [r for r in captured if "key" in r.prompt]
    assert len(secret) == 1 and "AKIAZ7Q4K2M3N6P5R2TX" not in secret[0].prompt
    uncaptured = [r for r in stored if r.status == "ok" and not r.prompt]
    assert len(uncaptured) == 3 and all(r.response_chars == 0 for r in uncaptured)


def test_real_openai_text_sent_as_log_events_reaches_its_records(real_spans, migrated_db_url, kafka_broker, topic,
                                                                 tmp_path):
    """Content capture as events only: the spans (no text) on one topic, the log events with the text on the
    logs topic, in both encodings and both twice. The daemon reads both and joins them whichever it reads
    first: every call's record has its prompt and answer, the key redacted, nothing stored twice."""
    from monitor.synthetic.broker import create_topic

    logs_topic = f"{topic}-logs"
    create_topic(kafka_broker, logs_topic, partitions=1)
    spans = [real_spans["events.pb"].read_bytes()] * 2
    logs = [real_spans[k].read_bytes() for k in ("events.logs.pb", "events.logs.json")]
    produce(kafka_broker, logs_topic, logs)
    produce(kafka_broker, topic, spans)
    path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                        extra=f'store_text = "redacted"\n[kafka.formats]\n"{topic}" = "otlp"\n'
                              f'"{logs_topic}" = "otlp_logs"')
    path.write_text(path.read_text().replace(f'topics = ["{topic}"]', f'topics = ["{topic}", "{logs_topic}"]'))
    group = group_for(topic)
    with DaemonThread(config_for(path)) as daemon:
        wait_for(lambda: sum(v or 0 for v in committed_offsets(kafka_broker, topic, group).values()) == 2 and
                 sum(v or 0 for v in committed_offsets(kafka_broker, logs_topic, group).values()) == 2,
                 120, "both topics committed")
        assert daemon.stop() == 0
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        stored = conn.execute(select(records)).all()
    engine.dispose()
    assert len(stored) == 4 and count(migrated_db_url, dead_letters) == 0
    ok = [r for r in stored if r.status == "ok"]
    assert len(ok) == 3 and all(r.metadata["content"] == "gen_ai events (logs topic)" for r in ok)
    assert sorted(r.prompt for r in ok if "colour" in r.prompt) == ["Name one colour."]
    assert all(r.response for r in ok)
    [secret] = [r for r in ok if "key" in r.prompt]
    assert "AKIAZ7Q4K2M3N6P5R2TX" not in secret.prompt + secret.response
