"""Detect step end to end: generated incidents (toxic burst, leaked secrets, leaked PII) come out as flagged
detections, and what the store writes holds placeholders, never the secrets — in process, and through Kafka
and the real daemon into both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select

from detectors.chain import DetectorChain
from detectors.config import DetectorsConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import decode
from monitor.ingest.steps.detect import DetectStep
from monitor.storage.db import make_engine
from monitor.storage.schema import detections, metadata, records, stream_minutes
from monitor.storage.store import Store, text_policy
from monitor.synthetic.generator import Incident, TrafficGenerator
from tests.helpers import DaemonThread, config_for, count, encode, good_record, produce, wait_for, write_config

N = 1200
INCIDENTS = [Incident("toxic_burst", 100, 200, magnitude=0.5), Incident("secret_leak", 400, 300, magnitude=0.5),
             Incident("pii_leak", 800, 300, magnitude=0.5)]


@pytest.fixture(scope="module")
def step() -> DetectStep:
    return DetectStep(DetectorChain.from_config(DetectorsConfig()))


@pytest.fixture(scope="module")
def traffic() -> list:  # type: ignore[type-arg]
    gen = TrafficGenerator(seed=11, incidents=INCIDENTS, start=datetime(2026, 3, 1, tzinfo=UTC))
    return [item for item in gen.generate(N) if item.value is not None and not item.truth.is_malformed]


def _processed(step: DetectStep, traffic: list) -> Batch:  # type: ignore[type-arg]
    batch = Batch(records=[decode(item.value) for item in traffic])
    step.process(batch)
    return batch


def test_incidents_come_out_as_flagged_detections(step: DetectStep, traffic: list) -> None:  # type: ignore[type-arg]
    batch = _processed(step, traffic)
    assert len(batch.annotations) == len(batch.records)
    flags = [{d.detector: d.flagged for d in a.detections} for a in batch.annotations]
    truths = [item.truth for item in traffic]

    toxic = [f["toxicity"] for f, t in zip(flags, truths, strict=True) if t.toxic]
    leaks = [f["secrets"] for f, t in zip(flags, truths, strict=True) if t.secrets]
    pii = [f["pii"] for f, t in zip(flags, truths, strict=True) if t.pii]
    clean = [f for f, t in zip(flags, truths, strict=True)
             if not (t.toxic or t.secrets or t.pii or t.refusal or t.truncated or t.status == "error")]
    assert len(toxic) > 50 and len(leaks) > 50 and len(pii) > 50  # the incidents really happened
    assert all(toxic) and all(leaks) and all(pii)
    assert not any(f["secrets"] or f["pii"] or f["refusal"] for f in clean)

    in_burst = [f["toxicity"] for f, t in zip(flags, truths, strict=True) if 100 <= t.index < 300]
    outside = [f["toxicity"] for f, t in zip(flags, truths, strict=True) if t.index >= 300]
    assert sum(in_burst) / len(in_burst) > 5 * sum(outside) / len(outside)


def test_a_secret_leaked_in_a_response_is_critical(step: DetectStep, traffic: list) -> None:  # type: ignore[type-arg]
    batch = _processed(step, traffic)
    leaked = [a for a, item in zip(batch.annotations, traffic, strict=True) if item.truth.secrets_response]
    severities = {next(d for d in a.detections if d.detector == "secrets").details["severity"] for a in leaked}
    assert severities == {"critical"}


def test_stored_rows_hold_placeholders_and_flagged_detections_not_secrets(
    step: DetectStep, traffic: list, tmp_path  # type: ignore[type-arg]
) -> None:
    leaking = [item for item in traffic if item.truth.secrets_response or item.truth.pii_response]
    batch = _processed(step, leaking)
    engine = create_engine(f"sqlite:///{tmp_path / 'wk.db'}")
    metadata.create_all(engine)
    Store(engine, text_policy("redacted")).write(batch)

    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(records))}
        flagged = {(row.record_id, row.detector) for row in conn.execute(select(detections)) if row.flagged}
    engine.dispose()

    secret_findings = 0
    for record, annotation, item in zip(batch.records, batch.annotations, leaking, strict=True):
        row = stored[record.id]
        for d in annotation.detections:
            for f in d.findings:
                raw_value = getattr(record, f.field)[f.start:f.end]
                assert raw_value not in row.response and raw_value not in row.prompt
                secret_findings += d.detector == "secrets"
        if item.truth.secrets_response:
            assert (record.id, "secrets") in flagged
            assert row.secret_count >= 1
        if item.truth.pii_response:
            assert (record.id, "pii") in flagged
            assert row.pii_count >= 1
        assert "[" in row.response
    assert secret_findings > 20


# What a leaked credential of each generated kind looks like, matched independently of the detectors: none of
# these may appear anywhere in the database after redaction.
RAW_SECRET = re.compile(
    r"AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{36}|glpat-[\w-]{20}|xoxb-[0-9]{12}|sk-[A-Za-z0-9]{20}|sk-proj-|"
    r"BEGIN RSA PRIVATE KEY|eyJhbGciOi|hunter2|jane\.doe@example\.org"
)


@pytest.mark.slow  # ~10 s per database: group join, 600 records, the daemon's start and stop
def test_through_kafka_incidents_are_flagged_and_no_raw_secret_reaches_the_database(
    migrated_db_url, kafka_broker, topic, tmp_path
):
    """A toxic burst and a secret leak in generated traffic, plus a failed request whose error message, feedback
    comment and metadata carry a key, an e-mail address and passwords, go through the real daemon."""
    gen = TrafficGenerator(seed=12, start=datetime(2026, 3, 1, tzinfo=UTC), incidents=[
        Incident("toxic_burst", 50, 150, magnitude=0.6), Incident("secret_leak", 250, 250, magnitude=0.5)])
    items = [item for item in gen.generate(600) if item.value is not None and not item.truth.is_malformed]
    failed = good_record(90_001, status="error", response="", error="upstream: key AKIA4HKQ2ZP7LW3NXR6T was revoked",
                         feedback={"score": 0, "comment": "it broke, write to jane.doe@example.org"},
                         metadata={"api_key": "sk-proj-3xAmPlEkEy_4bCdEfGhIjKlMnOpQrStUvWxYz0123456789ab",
                                   "db": {"password": "hunter2!x9"}, "max_tokens": 256})
    produce(kafka_broker, topic, [*(item.value for item in items), encode(failed)])
    path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic)
    with DaemonThread(config_for(path), services=False):
        wait_for(lambda: count(migrated_db_url, records) == len(items) + 1, 60, "every record to be stored")

    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(records))}
        flagged = {(row.record_id, row.detector) for row in conn.execute(select(detections)) if row.flagged}
        everything = " ".join(str(tuple(row)) for table in (records, detections, stream_minutes)
                              for row in conn.execute(select(table)))
    engine.dispose()

    toxic = [item.truth.id for item in items if item.truth.toxic]
    leaks = [item.truth.id for item in items if item.truth.secrets_response]
    assert len(toxic) > 30 and len(leaks) > 50  # the incidents really happened
    assert all((rid, "toxicity") in flagged for rid in toxic)
    assert all((rid, "secrets") in flagged and "[" in stored[rid].response for rid in leaks)
    assert RAW_SECRET.findall(everything) == []

    row = stored["req-090001"]
    assert row.error == "upstream: key [AWS_KEY] was revoked"
    assert row.feedback_comment == "it broke, write to [EMAIL]"
    assert row.metadata == {"api_key": "[OPENAI_KEY]", "db": {"password": "[PASSWORD]"}, "max_tokens": 256}
    assert (row.id, "secrets") in flagged and (row.id, "pii") in flagged
