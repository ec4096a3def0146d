"""Drift through Kafka and the real daemon: a change is reported once, on the stream that explains it, whatever
the partitions, daemons and crashes — for the scalar signals and for the topic mix of prompts."""

from __future__ import annotations

import signal
import time
import uuid
import zlib
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
import pytest
from sqlalchemy import select

from detectors.drift.subjects import SubjectCells
from monitor.ingest.batch import Batch
from monitor.ingest.record import decode
from monitor.ingest.steps.drift import DriftStep, streams_of
from monitor.jobs.drift import STATE_KEY, overlaps
from monitor.storage.db import make_engine
from monitor.storage.schema import consumer_progress, detector_state, drift_buckets, drift_events, samples
from monitor.storage.schema import records as records_table
from monitor.synthetic.broker import create_topic
from monitor.synthetic.generator import Incident, TrafficGenerator
from tests.helpers import DaemonThread, config_for, count, produce, start_daemon_process, wait_for, write_config


def test_sampled_prompts_are_counted_per_subject_in_the_four_streams_once():
    """The pipeline's side of topic drift: each sampled prompt adds one to its subject cell in each of its
    four streams, and a redelivered batch (one the store inserts nothing of) adds nothing."""
    gen = TrafficGenerator(seed=2, models=("m1",), apps=("support-bot",), start=datetime(2026, 4, 1, tzinfo=UTC))
    records = [decode(item.value) for item in gen.generate(400)]
    for offset, record in enumerate(records):
        record.topic, record.partition, record.offset = "t", 0, offset
    step = DriftStep(subjects=SubjectCells(), topic_sample_rate=0.5)
    first = Batch(records=records)
    step.process(first)
    (tally,) = first.tallies
    rows = tally.rows({r.id for r in records})[drift_buckets]
    topics = [r for r in rows if r["signal"].startswith("topic:")]
    by_stream = {s: sum(r["n"] for r in topics if r["stream"] == s) for s in streams_of("m1", "support-bot")}
    assert len(set(by_stream.values())) == 1 and 150 < by_stream["*"] < 250, by_stream  # about half, 4 times
    assert {r["signal"] for r in topics} >= {"topic:support"}
    assert tally.rows(set()) == {}
    half = {r.id for r in records[:200]}
    fewer = [r for r in tally.rows(half)[drift_buckets] if r["signal"].startswith("topic:") and r["stream"] == "*"]
    assert 0 < sum(r["n"] for r in fewer) < by_stream["*"]


# -- through Kafka and the daemon: drift per stream -------------------------------------------------------

MODELS = ("gpt-4o-mini-2024-07", "llama-3.1-8b-instruct")
APPS = ("support-bot", "code-assistant", "travel-planner")
LLAMA = "llama-3.1-8b-instruct"
LONGER = Incident("response_length_shift", start=7000, duration=100_000, model=LLAMA, magnitude=1.2)
FAST_DRIFT = """
[scheduler]
tick = "1s"

[drift]
bucket_s = 1.0
grace_s = 1.0
fold_every_s = 0.25
topic_sample_rate = 0.0
"""
NEW_SUBJECTS = Incident("topic_shift", start=7000, duration=100_000, model=LLAMA, magnitude=0.3)


def _traffic(n: int = 10_000) -> list[bytes]:
    """Two models × three apps; from record 7,000 one model's answers are 1.2 sd longer in every app."""
    gen = TrafficGenerator(seed=5, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC),
                           incidents=[LONGER])
    return [item.value for item in gen.generate(n)]


def _four_partitions(kafka_broker: str) -> str:
    name = f"llm-logs-{uuid.uuid4().hex[:8]}"
    create_topic(kafka_broker, name, partitions=4)
    return name


def _fold_done(db_url: str, last_ts_ms: int) -> Callable[[], bool]:
    """Whether the fold job has folded every bucket up to the last record's."""
    engine = make_engine(db_url)

    def done() -> bool:
        with engine.connect() as conn:
            state = conn.execute(select(detector_state.c.state).where(detector_state.c.key == STATE_KEY)).scalar()
        if state is None:
            return False
        cursor = orjson.loads(zlib.decompress(bytes(state)))["cursor"]
        return cursor is not None and cursor >= last_ts_ms - 1000

    return done


def _drift(db_url: str) -> list[tuple[str, str]]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return [(r.stream, r.signal) for r in conn.execute(select(drift_events).order_by(drift_events.c.id))]
    finally:
        engine.dispose()


def _assert_one_model_change(found: list[tuple[str, str]]) -> None:
    """The story every test below tells: the one model that changed, one event per signal, nothing else."""
    assert [e for e in found if e[1] == "response_chars"] == [(f"model={LLAMA}", "response_chars")], found
    assert {stream for stream, _ in found} == {f"model={LLAMA}"}, found  # tokens_out/latency follow lengths
    assert len(set(found)) == len(found), f"duplicate events: {found}"


def _last_ts_ms(values: list[bytes]) -> int:
    return int(max(decode(v).ts for v in values).timestamp()) * 1000


def _one_daemon_reads(values: list[bytes], extra: str, db_url: str, kafka_broker: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Produce ``values`` into a fresh 4-partition topic, run the daemon (config ``extra``) until every
    record is stored and folded, and stop it cleanly."""
    topic = _four_partitions(kafka_broker)
    produce(kafka_broker, topic, values)
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=kafka_broker,
                                     topic=topic, extra=extra))
    with DaemonThread(config) as daemon:
        wait_for(lambda: count(db_url, records_table) == len(values), 120, "every record stored")
        wait_for(_fold_done(db_url, _last_ts_ms(values)), 60, "the fold to reach the last bucket")
        assert daemon.stop() == 0


@pytest.mark.slow
def test_a_model_wide_change_on_a_4_partition_topic_with_3_apps_is_reported_once_on_the_model(
        migrated_db_url, kafka_broker, tmp_path):
    _one_daemon_reads(_traffic(), FAST_DRIFT, migrated_db_url, kafka_broker, tmp_path)
    _assert_one_model_change(_drift(migrated_db_url))


@pytest.mark.slow
def test_a_daemon_killed_mid_stream_and_restarted_neither_loses_nor_repeats_a_detection(
        migrated_db_url, kafka_broker, tmp_path):
    values = _traffic()
    topic = _four_partitions(kafka_broker)
    produce(kafka_broker, topic, values)
    path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                        extra=FAST_DRIFT)
    first = start_daemon_process(path, tmp_path / "first.log")
    try:
        wait_for(lambda: count(migrated_db_url, records_table) >= 7500, 120, "the change to be under way")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    second = start_daemon_process(path, tmp_path / "second.log")
    try:
        wait_for(lambda: count(migrated_db_url, records_table) == len(values), 120, "every record stored")
        wait_for(_fold_done(migrated_db_url, _last_ts_ms(values)), 60, "the fold to reach the last bucket")
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(30)
    _assert_one_model_change(_drift(migrated_db_url))


@pytest.mark.slow
def test_two_daemons_in_one_group_detect_exactly_as_one_does(migrated_db_url, kafka_broker, tmp_path):
    values = _traffic()
    topic = _four_partitions(kafka_broker)
    path = write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker, topic=topic,
                        extra=FAST_DRIFT)
    daemons = [start_daemon_process(path, tmp_path / f"{name}.log") for name in ("a", "b")]
    try:
        wait_for(lambda: all("partitions assigned" in (tmp_path / f"{name}.log").read_text() for name in ("a", "b")),
                 90, "both daemons in the group before the traffic arrives, so that each reads its share")
        produce(kafka_broker, topic, values)
        wait_for(lambda: count(migrated_db_url, records_table) == len(values), 120, "every record stored")
        wait_for(_fold_done(migrated_db_url, _last_ts_ms(values)), 60, "the fold to reach the last bucket")
        engine = make_engine(migrated_db_url)
        with engine.connect() as conn:
            owners = set(conn.execute(select(records_table.c.partition)).scalars())
            progress = conn.execute(select(consumer_progress.c.partition)).scalars().all()
        engine.dispose()
        assert owners == {0, 1, 2, 3} and len(progress) == 4
    finally:
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        for daemon in daemons:
            daemon.wait(30)
    logs = [(tmp_path / f"{name}.log").read_text() for name in ("a", "b")]
    assert all(f"partitions assigned: [('{topic}'" in log for log in logs), "a daemon read no partition"
    _assert_one_model_change(_drift(migrated_db_url))


@pytest.mark.slow
def test_a_deployment_that_chooses_rivers_adwin_for_a_signal_gets_rivers_detections_through_the_daemon(
        migrated_db_url, kafka_broker, tmp_path):
    """``[drift.river.response_chars] detector = "ADWIN"``: that signal is watched by river's own ADWIN (fed
    bucket means) on every stream, the others by the calibrated charts; its events say so."""
    values = _traffic()
    river = FAST_DRIFT + '[drift.river.response_chars]\ndetector = "ADWIN"\noptions = { clock = 4 }\n'
    _one_daemon_reads(values, river, migrated_db_url, kafka_broker, tmp_path)
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        rows = conn.execute(select(drift_events.c.stream, drift_events.c.signal, drift_events.c.detector,
                                   drift_events.c.detected_at)).all()
    engine.dispose()
    change = decode(values[7000]).ts
    lengths = [r for r in rows if r.signal == "response_chars"]
    assert lengths and all(r.detector == "river:ADWIN" for r in lengths), rows
    assert any(overlaps(r.stream, f"model={LLAMA}") and r.detected_at.replace(tzinfo=UTC) >= change
               for r in lengths), rows
    assert all(r.detector != "river:ADWIN" for r in rows if r.signal != "response_chars")


@pytest.mark.slow
def test_a_topic_mix_change_of_one_model_is_reported_once_on_the_model(migrated_db_url, kafka_broker, tmp_path):
    """From record 7,000 three in ten of one model's prompts are about subjects its users never asked about
    (legal, gaming), in every app. Through 4 partitions and the daemon, half the prompts sampled: one
    ``prompt_topic`` event, on ``model=M``, naming the subjects that rose, before → after."""
    gen = TrafficGenerator(seed=5, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC),
                           incidents=[NEW_SUBJECTS])
    values = [item.value for item in gen.generate(10_000)]
    extra = FAST_DRIFT.replace("topic_sample_rate = 0.0", "topic_sample_rate = 0.5")
    _one_daemon_reads(values, extra, migrated_db_url, kafka_broker, tmp_path)
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(drift_events)).mappings()]
    engine.dispose()
    mix = [r for r in rows if r["signal"] == "prompt_topic"]
    assert [r["stream"] for r in mix] == [f"model={LLAMA}"], rows
    event = mix[0]
    assert event["detector"] == "bucket_mix" and event["detected_at"].replace(tzinfo=UTC) >= decode(values[7000]).ts
    risen = {name for name, before, after in event["details"]["moved"] if after > before}
    assert risen & {"legal", "gaming"}, event["details"]
    assert sum(event["after"]["shares"].values()) == pytest.approx(1.0, abs=0.01)
    assert {r["stream"] for r in rows} <= {f"model={LLAMA}"} | {f"model={LLAMA},app={a}" for a in APPS}, rows


@pytest.mark.slow
def test_a_deployment_that_chooses_rivers_adwin_for_the_topic_mix_gets_rivers_detections_through_the_daemon(
        migrated_db_url, kafka_broker, tmp_path):
    """``[drift.river.prompt_topic] detector = "ADWIN"``: the topic mix is watched by river's own ADWIN, one per
    subject (each sampled prompt is 1 for its subject, 0 for the others), on every stream. Three in ten of one
    model's prompts turn to new subjects: river reports it on a stream of that model, after the change, with
    the shares before -> after (which subjects river's cut shows moved is river's judgement: at its defaults
    it may name a subject that moved by chance); the scalar signals keep the calibrated charts."""
    gen = TrafficGenerator(seed=5, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC),
                           incidents=[NEW_SUBJECTS])
    values = [item.value for item in gen.generate(10_000)]
    extra = FAST_DRIFT.replace("topic_sample_rate = 0.0", "topic_sample_rate = 0.5") \
        + '[drift.river.prompt_topic]\ndetector = "ADWIN"\n'
    _one_daemon_reads(values, extra, migrated_db_url, kafka_broker, tmp_path)
    engine = make_engine(migrated_db_url)
    with engine.connect() as conn:
        rows = [dict(r) for r in conn.execute(select(drift_events)).mappings()]
    engine.dispose()
    mix = [r for r in rows if r["signal"] == "prompt_topic"]
    assert mix and all(r["detector"] == "river:ADWIN" for r in mix), rows
    change = decode(values[7000]).ts
    caught = [r for r in mix if overlaps(r["stream"], f"model={LLAMA}") and r["stream"] != "*"
              and r["detected_at"].replace(tzinfo=UTC) >= change]
    assert caught, mix
    assert all(r["details"]["moved"] and sum(r["after"]["shares"].values()) == pytest.approx(1.0, abs=0.01)
               for r in caught), caught  # before -> after, as the calibrated chart's events say it
    assert all(r["detector"] != "river:ADWIN" for r in rows if r["signal"] != "prompt_topic")


def test_a_drift_event_written_by_another_daemon_boosts_sampling_of_its_stream(migrated_db_url, kafka_broker,
                                                                               tmp_path):
    """The fold that found a drift may run on another daemon: this daemon's sampler reads the event from the
    table within seconds and samples that stream's records for review (reason ``drift``), and only them."""
    gen = TrafficGenerator(seed=9, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC))
    values = [item.value for item in gen.generate(1200)]
    topic = _four_partitions(kafka_broker)
    extra = """
[drift]
enabled = false

[sampling]
uniform_rate = 0.0
drift_boost_s = 86400
risk_cap = 100000

[sampling.risk_rates]
drift = 1.0
"""
    config = config_for(write_config(tmp_path / "monitor.toml", db_url=migrated_db_url, bootstrap=kafka_broker,
                                     topic=topic, extra=extra))
    engine = make_engine(migrated_db_url)
    try:
        with DaemonThread(config):
            produce(kafka_broker, topic, values[:600])
            wait_for(lambda: count(migrated_db_url, records_table) == 600, 120, "the first records stored")
            with engine.begin() as conn:  # what the fold on another daemon writes
                conn.execute(drift_events.insert().values(
                    stream=f"model={LLAMA}", signal="prompt_topic", detector="bucket_mix",
                    detected_at=datetime(2026, 4, 1, tzinfo=UTC), created_at=datetime.now(UTC)))
            time.sleep(3)  # the sampler polls every 2 s
            produce(kafka_broker, topic, values[600:])
            wait_for(lambda: count(migrated_db_url, records_table) == len(values), 120, "every record stored")
        with engine.connect() as conn:
            rows = conn.execute(select(samples.c.record_id, samples.c.model).where(samples.c.reason == "drift")).all()
    finally:
        engine.dispose()
    later = {decode(v).id for v in values[600:] if decode(v).model == LLAMA}
    assert rows and {model for _, model in rows} == {LLAMA}
    assert {rid for rid, _ in rows} == later
