"""The OTLP logs topic: GenAI content events joined to their span's record by trace + span id, whichever of the
two arrives first, through the real chain (join → detect → … → store) on both databases."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from sqlalchemy import select

from monitor.ingest.batch import RawMessage
from monitor.ingest.chain import build_steps
from monitor.ingest.formats import decoders_for
from monitor.ingest.formats.otlp_logs import decode_otlp_logs
from monitor.ingest.pipeline import decode_messages
from monitor.storage.db import make_engine
from monitor.storage.schema import detections, genai_events, records, stream_minutes
from monitor.storage.store import Store, text_policy
from tests.helpers import config_for
from tests.monitor.ingest.formats.test_otlp import CHAT, T0, _any, batch_of, span

TRACE = bytes([7]) * 16
SECRET = "AKIAZ7Q4K2M3N6P5R2TX"


def event(n: int, name: str, body: object, *, as_attribute: bool = False, trace: bytes = TRACE) -> LogRecord:
    """One log record as openai-v2 emits it for span ``n``: the event name in ``event_name`` (or, older SDKs, in
    the ``event.name`` attribute), the message in the body."""
    log = LogRecord(time_unix_nano=T0 + n * 10**9, trace_id=trace, span_id=n.to_bytes(8, "big"))
    log.attributes.append(KeyValue(key="gen_ai.system", value=_any("openai")))
    if as_attribute:
        log.attributes.append(KeyValue(key="event.name", value=_any(name)))
    else:
        log.event_name = name
    if isinstance(body, dict):
        for key, value in body.items():
            kv = log.body.kvlist_value.values.add(key=key)
            if isinstance(value, dict):
                for k2, v2 in value.items():
                    kv.value.kvlist_value.values.add(key=k2).value.CopyFrom(_any(v2))
            else:
                kv.value.CopyFrom(_any(value))
    return log


def logs_of(*logs: LogRecord) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=list(logs))])])


def asked_and_answered(n: int, prompt: str, answer: str) -> list[LogRecord]:
    return [event(n, "gen_ai.system.message", {"content": "be terse"}),
            event(n, "gen_ai.user.message", {"content": prompt}, as_attribute=True),
            event(n, "gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                       "message": {"role": "assistant", "content": answer}})]


class Chain:
    """The daemon's chain and store over one database, fed messages by hand (offsets as Kafka would)."""

    def __init__(self, db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
        path = tmp_path / "monitor.toml"
        path.write_text(f'[database]\nurl = "{db_url}"\n[kafka]\ntopics = ["otlp_spans", "otlp_logs"]\n'
                        '[kafka.formats]\notlp_spans = "otlp"\notlp_logs = "otlp_logs"\n'
                        '[pipeline]\nstore_text = "redacted"\n')
        self.config = config_for(path)
        self.engine = make_engine(db_url)
        self.steps = build_steps(self.config, self.engine)
        self.store = Store(self.engine, text_policy("redacted"))
        self.decoders = decoders_for(self.config.kafka.topics, self.config.kafka.format, self.config.kafka.formats)
        self.offsets = {"otlp_spans": 0, "otlp_logs": 0}

    def feed(self, topic: str, raw: bytes, *, offset: int | None = None) -> None:
        if offset is None:
            offset = self.offsets[topic]
            self.offsets[topic] += 1
        batch = decode_messages([RawMessage(topic, 0, offset, None, raw)], decoders=self.decoders)
        for step in self.steps:
            step.process(batch)
        self.store.write(batch)

    def rows(self):  # type: ignore[no-untyped-def]
        with self.engine.connect() as conn:
            return {r.id[-1]: r for r in conn.execute(select(records))}


def test_the_join_step_runs_first_and_only_where_otlp_is_read(tmp_path):
    path = tmp_path / "monitor.toml"
    path.write_text('[kafka]\ntopics = ["llm-logs", "otlp_spans"]\nformats = {otlp_spans = "otlp"}\n'
                    '[sampling]\nenabled = false\n[drift]\nenabled = false\n')
    assert all(type(s).__name__ != "GenAIJoinStep" for s in build_steps(config_for(path), None))
    path.write_text('[kafka]\ntopics = ["llm-logs", "otlp_logs"]\n[kafka.formats]\notlp_logs = "otlp_logs"\n'
                    '[sampling]\nenabled = false\n[drift]\nenabled = false\n')
    assert type(build_steps(config_for(path), None)[0]).__name__ == "GenAIJoinStep"


def test_events_before_or_after_their_span_reach_the_record_once_redacted(migrated_db_url, tmp_path):
    """Span 1's events come first, span 2's after it (its record is stored without text first), span 3's
    split over two log messages around its span; then everything is replayed. Each record ends with its last
    user turn and answer, the key in an answer redacted and found by the secrets detector, the empty-answer
    refusal of the text-less record withdrawn, and every record counted once in the per-minute counters."""
    chain = Chain(migrated_db_url, tmp_path)
    early = logs_of(*asked_and_answered(1, "What is rye?", "A grain.")).SerializeToString()
    spans = batch_of(span(1, CHAT), span(2, CHAT), span(3, CHAT)).SerializeToString()
    late = logs_of(*asked_and_answered(2, "Give me the key", f"Here: {SECRET}")).SerializeToString()
    split = asked_and_answered(3, "Name a colour", "Blue.")
    first_half = logs_of(*split[:2]).SerializeToString()
    second_half = orjson.dumps(MessageToDict(logs_of(split[2])))  # otlp_json for the other half
    second_half = orjson.dumps(_hex_ids(orjson.loads(second_half)))

    chain.feed("otlp_logs", early)
    chain.feed("otlp_logs", first_half)
    chain.feed("otlp_spans", spans)
    chain.feed("otlp_logs", late)
    chain.feed("otlp_logs", second_half)
    rows = chain.rows()
    assert {k: (r.prompt, r.response) for k, r in rows.items()} == {
        "1": ("What is rye?", "A grain."), "2": ("Give me the key", "Here: [AWS_KEY]"),
        "3": ("Name a colour", "Blue.")}
    assert all(r.metadata["content"] == "gen_ai events (logs topic)" for r in rows.values())
    assert rows["2"].secret_count == 1 and rows["2"].response_chars == len(f"Here: {SECRET}")

    for offset, (topic, raw) in enumerate([("otlp_logs", early), ("otlp_logs", first_half)]):  # a replay
        chain.feed(topic, raw, offset=offset)
    chain.feed("otlp_spans", spans, offset=0)
    chain.feed("otlp_logs", late, offset=2)
    assert {k: (r.prompt, r.response) for k, r in chain.rows().items()} == {
        k: (r.prompt, r.response) for k, r in rows.items()}
    with chain.engine.connect() as conn:
        found = {(d.record_id[-1], d.detector): d.flagged for d in conn.execute(select(detections))}
        counted = conn.execute(select(stream_minutes.c.n)).scalars().all()
        held = conn.execute(select(genai_events.c.name)).scalars().all()
    assert found[("2", "secrets")] is True and found.get(("2", "refusal")) in (None, False)
    assert sum(counted) == 3 and len(held) == 9  # each event stored once, whatever was replayed
    chain.engine.dispose()


def _hex_ids(data: dict) -> dict:
    """protobuf's JSON mapping writes ids in base64; the Collector's otlp_json writes them in hex."""
    import base64

    for rl in data["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for log in sl["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in log:
                        log[key] = base64.b64decode(log[key]).hex()
    return data


def test_other_logs_are_skipped_and_a_broken_log_record_is_its_own_dead_letter():
    ok = asked_and_answered(1, "Q", "A")
    other = LogRecord(time_unix_nano=T0, severity_text="INFO")
    other.body.string_value = "GET /health 200"
    no_span = event(2, "gen_ai.user.message", {"content": "lost"}, trace=b"")
    raw = orjson.dumps(_hex_ids(orjson.loads(orjson.dumps(MessageToDict(logs_of(*ok, other, no_span))))))
    data = orjson.loads(raw)
    data["resourceLogs"][0]["scopeLogs"][0]["logRecords"].insert(1, {"attributes": "nope"})
    decoded = decode_otlp_logs(RawMessage("otlp_logs", 0, 9, None, orjson.dumps(data)))
    assert [e.name for e in decoded.events] == ["gen_ai.system.message", "gen_ai.user.message", "gen_ai.choice"]
    assert decoded.skipped == 2
    [letter] = decoded.dead_letters
    assert letter.part == 2 and "log record #1" in letter.reason and letter.raw == b'{"attributes":"nope"}'


@pytest.mark.parametrize("raw", [b"", b"\x0a\xff\xff\xff", b'{"resourceSpans": []}'])
def test_a_message_that_is_not_a_logs_batch_is_one_dead_letter(raw):
    decoded = decode_otlp_logs(RawMessage("otlp_logs", 0, 1, None, raw))
    assert decoded.events == [] and len(decoded.dead_letters) == 1 and decoded.dead_letters[0].part == 0
