"""The drift fold: per-stream buckets written by the pipeline become one drift event per change, on the
stream that explains it, and the fold resumes from its checkpoint without losing or repeating anything.

These tests write the buckets with the real drift step and store (no Kafka); tests through Kafka and the
daemon are in tests/monitor/ingest/steps/test_drift.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, delete, insert, select

from detectors.chain import DetectorChain
from detectors.drift.subjects import SubjectCells
from monitor.config import Config, DriftConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record, decode
from monitor.ingest.steps.detect import DetectStep
from monitor.ingest.steps.drift import DriftStep
from monitor.jobs.drift import STATE_KEY, DriftFold, attribute, overlaps
from monitor.jobs.scheduler import Superseded
from monitor.storage.db import make_engine
from monitor.storage.schema import consumer_progress, detector_state, drift_buckets, drift_events, metadata
from monitor.storage.store import Store, text_policy
from monitor.synthetic.generator import Incident, TrafficGenerator

MODELS = ("gpt-4o-mini-2024-07", "llama-3.1-8b-instruct")
APPS = ("support-bot", "code-assistant", "travel-planner")
LLAMA = "llama-3.1-8b-instruct"
CONFIG = DriftConfig(topic_sample_rate=0.0)
TOPICS = DriftConfig(topic_sample_rate=0.5)
"""Topic drift on, at twice the default sampling (shorter tests)."""


def generated(n: int, incident: Incident | None, seed: int = 3) -> list[Record]:
    """Two models × three apps at 50 records/s of event time, spread over 4 partitions."""
    gen = TrafficGenerator(seed=seed, models=MODELS, apps=APPS, start=datetime(2026, 4, 1, tzinfo=UTC),
                           incidents=[incident] if incident else [])
    records = []
    for offset, item in enumerate(gen.generate(n)):
        record = decode(item.value)
        record.topic, record.partition, record.offset = "llm-logs", offset % 4, offset // 4
        records.append(record)
    return records


class Feed:
    """The pipeline's steps (detect, drift) and store on ``engine``, and a fold whose clock follows the data."""

    def __init__(self, engine: Engine, config: DriftConfig = CONFIG) -> None:
        self.engine = engine
        self.config = config
        self.store = Store(engine, text_policy("none"))
        self.detect = DetectStep(DetectorChain.from_config(Config().detectors, "none"))
        rate = config.topic_sample_rate
        self.step = DriftStep(bucket_s=config.bucket_s, topic_sample_rate=rate,
                              subjects=SubjectCells() if rate else None)
        self.now = 0.0

    def write(self, records: list[Record], size: int = 500) -> Iterator[None]:
        """Store ``records`` batch by batch, yielding after each (the clock then reads just past the batch)."""
        for i in range(0, len(records), size):
            batch = Batch(records=records[i:i + size])
            self.detect.process(batch)
            self.step.process(batch)
            self.store.write(batch)
            self.now = batch.records[-1].ts.timestamp() + 0.5
            yield

    def fold(self) -> DriftFold:
        return DriftFold(self.config, "wk", clock=lambda: self.now)


def events(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(drift_events).order_by(drift_events.c.id)).mappings()]


def run_through(feed: Feed, records: list[Record], fold: DriftFold | None = None) -> DriftFold:
    fold = fold or feed.fold()
    for _ in feed.write(records):
        fold.run(feed.engine)
    feed.now += 60
    fold.run(feed.engine)
    return fold


@pytest.fixture
def sqlite_engine(tmp_path) -> Iterator[Engine]:  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'fold.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


@pytest.mark.parametrize(("incident", "stream"), [
    (Incident("response_length_shift", 8000, 10**6, model=LLAMA, magnitude=1.2), f"model={LLAMA}"),
    (Incident("response_length_shift", 8000, 10**6, model=MODELS[0], app=APPS[1], magnitude=1.2),
     f"model={MODELS[0]},app={APPS[1]}"),
    (Incident("latency_shift", 8000, 10**6, app=APPS[2], magnitude=0.5), f"app={APPS[2]}"),
    (Incident("toxic_burst", 8000, 10**6, model=LLAMA, magnitude=0.05), f"model={LLAMA}"),
], ids=["one-model", "one-model-one-app", "one-app", "toxic-one-model"])
def test_a_change_is_reported_once_on_the_narrowest_stream_that_explains_it(sqlite_engine, incident, stream):
    """Whether a model, an app, or one model in one app changed, the SRE reads one event per signal, on
    that model / app / pair, with the streams it dragged along named in details.explains."""
    records = generated(11_000, incident)
    fold = run_through(Feed(sqlite_engine), records)
    found = events(sqlite_engine)
    signal = {"response_length_shift": "response_chars", "latency_shift": "latency_ms",
              "toxic_burst": "toxic"}[incident.kind]
    assert [(e["stream"], e["signal"]) for e in found if e["signal"] == signal] == [(stream, signal)], found
    assert {e["stream"] for e in found} == {stream}  # consequences (tokens, latency of longer answers) too
    assert len({(e["stream"], e["signal"]) for e in found}) == len(found)  # no duplicates
    event = next(e for e in found if e["signal"] == signal)
    first_shifted = records[incident.start].ts
    assert event["detected_at"].replace(tzinfo=UTC) > first_shifted
    budget_s = 90 if signal == "toxic" else 30  # 4,500 / 1,500 records of all streams (50 per second)
    assert (event["detected_at"].replace(tzinfo=UTC) - first_shifted).total_seconds() < budget_s
    key = "rate" if signal == "toxic" else "mean"
    assert event["after"][key] > 1.2 * event["before"][key]
    assert event["details"]["direction"] == "up" and event["details"]["records_since"] > 0
    # Every detector of that signal on a stream sharing records with it started over at the event, those still
    # warming up too: their warm-up so far held the old level (a refusal change once fired twice that way).
    overlapping = {s for s in fold.charts[signal] if overlaps(s, stream)}
    assert overlapping <= {key.split("|", 1)[1] for key in fold.rearmed if key.startswith(f"{signal}|")}


@pytest.mark.parametrize("config", [CONFIG, TOPICS], ids=["scalar", "with-topics"])
def test_stationary_traffic_of_six_streams_raises_nothing(sqlite_engine, config):
    run_through(Feed(sqlite_engine, config), generated(20_000, None, seed=8))
    assert events(sqlite_engine) == []


@pytest.mark.parametrize(("incident", "stream"), [
    (Incident("topic_shift", 8000, 10**6, model=LLAMA, magnitude=0.3), f"model={LLAMA}"),
    (Incident("topic_shift", 8000, 10**6, model=MODELS[0], app=APPS[1], magnitude=0.3),
     f"model={MODELS[0]},app={APPS[1]}"),
], ids=["one-model", "one-model-one-app"])
def test_a_topic_mix_change_is_one_event_on_its_stream_with_the_subjects_that_moved(sqlite_engine, incident, stream):
    """Three in ten of one model's prompts (in every app, or in one) turn to subjects it never had: one
    ``prompt_topic`` event on that model (or pair) — not one per subject, not one per app —, whose shares
    before → after name what rose."""
    records = generated(12_000, incident)
    run_through(Feed(sqlite_engine, TOPICS), records)
    found = [e for e in events(sqlite_engine) if e["signal"] == "prompt_topic"]
    assert [e["stream"] for e in found] == [stream], events(sqlite_engine)
    event = found[0]
    shifted = [r for r in records[8000:] if r.model == incident.model and (incident.app in (None, r.app))]
    delay = sum(r.ts < event["detected_at"].replace(tzinfo=UTC) for r in shifted)
    assert 0 < delay < 1000, delay
    before, after = event["before"]["shares"], event["after"]["shares"]
    assert after["legal"] + after["gaming"] > before["legal"] + before["gaming"] + 0.1
    assert event["details"]["moved"][0][0] in ("legal", "gaming", "support", "coding", "travel")


@pytest.mark.parametrize(("incident", "config"), [
    (Incident("response_length_shift", 8000, 10**6, model=LLAMA, magnitude=1.2), CONFIG),
    (Incident("topic_shift", 8000, 10**6, model=LLAMA, magnitude=0.3), TOPICS),
], ids=["length", "topics"])
def test_a_fold_restarted_from_its_checkpoint_every_batch_detects_exactly_what_one_uninterrupted_fold_does(
        engine, tmp_path, incident, config):
    """A daemon that dies after every fold (a new DriftFold, state read back from the database) against one
    that never does, on the same buckets: the same events, none repeated, none lost."""
    records = generated(11_000, incident)
    reference = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    metadata.create_all(reference)
    run_through(Feed(reference, config), records)
    expected = [(e["stream"], e["signal"], e["detected_at"].replace(tzinfo=UTC)) for e in events(reference)]
    reference.dispose()
    feed = Feed(engine, config)
    for _ in feed.write(records):
        feed.fold().run(engine)  # a fresh process each time
    feed.now += 60
    feed.fold().run(engine)
    got = [(e["stream"], e["signal"], e["detected_at"].replace(tzinfo=UTC)) for e in events(engine)]
    assert expected and got == expected


def test_a_fold_that_lost_its_lease_cannot_overwrite_the_newer_state(engine):
    """Two instances whose runs overlap (a lease that expired mid-run): the later write is refused and rolled
    back, so events are never written twice."""
    feed = Feed(engine)
    for _ in feed.write(generated(2000, None)):
        pass
    slow, fast = feed.fold(), feed.fold()
    slow.run(engine)
    with engine.connect() as conn:
        seen = slow._load(conn)  # slow starts its next run ...
    feed.now += 10
    fast.run(engine)  # ... fast runs and writes meanwhile
    with pytest.raises(Superseded, match="another instance"), engine.begin() as conn:
        slow._save(conn, seen)
    with engine.connect() as conn:
        assert conn.execute(select(detector_state.c.key)).scalars().all() == [STATE_KEY]


def test_records_added_to_a_bucket_already_folded_are_still_watched(engine):
    feed = Feed(engine)
    records = generated(3000, None)
    fold = feed.fold()
    for _ in feed.write(records[:2000]):
        fold.run(engine)
    chart = fold.charts["latency_ms"]["*"]
    seen = chart.seen
    straggler = Batch()  # three records of a bucket already folded, stored late (as the drift step adds them)
    straggler.increments[drift_buckets].append({"bucket_ms": fold.cursor, "stream": "*", "signal": "latency_ms",
                                                "n": 3, "total": 18.0, "total_sq": 108.0,
                                                "updated_at": datetime.now(UTC)})
    feed.store.write(straggler)
    fold.run(engine)
    assert fold.late == 3 and fold.charts["latency_ms"]["*"].seen == seen + 3
    fold.run(engine)
    assert fold.late == 3  # fed once


def test_a_partition_that_just_caught_up_holds_the_fold_back_until_it_has_been_idle(engine):
    """A producer writes a burst of past-dated records (a replay, a backlog flushed): partition 1 is read to its
    end for a moment while partition 0 is behind. Folding up to "now" then would leave partition 1's next
    records in buckets already folded; it holds the fold back while its newest event time still moves, and
    holds nothing once it has been idle for ``idle_s``."""
    t0 = datetime(2026, 4, 1, tzinfo=UTC)
    clock = [t0.timestamp() + 3600]  # the records are an hour old
    fold = DriftFold(DriftConfig(grace_s=2.0, idle_s=2.0), "wk", clock=lambda: clock[0])

    def progress(behind_ts: datetime, caught_up_ts: datetime) -> int:
        with engine.begin() as conn:
            conn.execute(delete(consumer_progress))
            conn.execute(insert(consumer_progress), [
                {"group_id": "wk", "topic": "llm-logs", "partition": 0, "committed": 10, "highwater": 50,
                 "last_record_ts": behind_ts, "updated_at": datetime.fromtimestamp(clock[0], UTC)},
                {"group_id": "wk", "topic": "llm-logs", "partition": 1, "committed": 40, "highwater": 40,
                 "last_record_ts": caught_up_ts, "updated_at": datetime.fromtimestamp(clock[0], UTC)}])
            return fold.watermark(conn, int(clock[0] * 1000))

    ms = int(t0.timestamp() * 1000)
    assert progress(t0 + timedelta(seconds=30), t0 + timedelta(seconds=20)) == ms + 18_000
    clock[0] += 1
    assert progress(t0 + timedelta(seconds=30), t0 + timedelta(seconds=25)) == ms + 23_000  # it moved: active
    clock[0] += 1.5
    assert progress(t0 + timedelta(seconds=30), t0 + timedelta(seconds=25)) == ms + 23_000  # idle 1.5 s < 2 s
    clock[0] += 1
    assert progress(t0 + timedelta(seconds=30), t0 + timedelta(seconds=25)) == ms + 28_000  # idle: only p0 holds


def test_attribution_goes_down_to_a_child_only_when_its_siblings_did_not_change():
    """Unit story for `attribute`: z-scores from each stream's reference decide."""
    from detectors.drift.buckets import BucketCUSUM

    def chart() -> BucketCUSUM:
        c = BucketCUSUM(arl0=1e6, warmup=100, transform="identity")
        c.update_bucket(100, 0.0, 100.0)  # reference: mean 0, sd 1
        return c

    streams = ["*", "model=a", "model=b", "app=x", "app=y", "model=a,app=x", "model=a,app=y", "model=b,app=x",
               "model=b,app=y"]
    charts = {s: chart() for s in streams}
    # model a moved by one sd in both apps; b did not: 100 records per pair since the change.
    shift = {"model=a,app=x": 1.0, "model=a,app=y": 1.0, "model=b,app=x": 0.0, "model=b,app=y": 0.0}

    def sums(shifts: dict[str, float]) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for pair, d in shifts.items():
            m, a = pair.split(",")
            for s in ("*", m, a, pair):
                n, t = out.get(s, (0.0, 0.0))
                out[s] = (n + 100, t + 100 * d)
        return out

    assert attribute("up", {"*"}, sums(shift), charts) == "model=a"
    only_pair = {**shift, "model=a,app=y": 0.0}
    assert attribute("up", {"model=a,app=x"}, sums(only_pair), charts) == "model=a,app=x"
    one_app = {"model=a,app=x": 1.0, "model=a,app=y": 0.0, "model=b,app=x": 1.0, "model=b,app=y": 0.0}
    assert attribute("up", {"model=a,app=x", "app=x"}, sums(one_app), charts) == "app=x"
    everywhere = dict.fromkeys(shift, 1.0)
    assert attribute("up", {"*"}, sums(everywhere), charts) == "*"
