"""The sampler keeps the share of traffic it promises, says so truthfully in each row, and decides the same
way when a batch is replayed."""

from __future__ import annotations

import math
from collections import Counter
from datetime import timedelta

from scipy.stats import binomtest
from sqlalchemy import select

from detectors.annotation import Annotation
from monitor.config import SamplingConfig
from monitor.ingest.batch import Batch
from monitor.ingest.steps.sampling import SamplingStep, unit_hash
from monitor.storage.db import make_engine
from monitor.storage.schema import drift_events, samples
from tests.monitor.review.traffic import DAY0, Stream, annotate, create_schema, generate, store


def _sample(config: SamplingConfig, records, annotations=None) -> list[dict]:  # type: ignore[no-untyped-def]
    step = SamplingStep(config)
    rows: list[dict] = []
    for i in range(0, len(records), 1000):
        batch = Batch(records=records[i:i + 1000], annotations=(annotations or [])[i:i + 1000])
        step.process(batch)
        rows.extend(batch.rows[samples])
    return rows


def test_each_stratum_is_sampled_at_its_rate_and_small_apps_get_their_own():
    config = SamplingConfig(uniform_rate=0.02, stratum_rates={"app=tiny": 0.3}, uniform_cap=None,
                            risk_rates={})
    records, _ = generate([Stream("m1", "chat", 30_000, 0.1), Stream("m1", "tiny", 1_000, 0.1)], seed=1)
    rows = _sample(config, records)
    kept = Counter(row["app"] for row in rows)
    # An exact binomial test per stratum: the hash behaves like an independent coin of the stated bias.
    assert binomtest(kept["chat"], 30_000, 0.02).pvalue > 0.001
    assert binomtest(kept["tiny"], 1_000, 0.3).pvalue > 0.001
    assert {row["inclusion_probability"] for row in rows if row["app"] == "tiny"} == {0.3}
    assert {row["reason"] for row in rows} == {"uniform"}


def test_inclusion_probabilities_reweight_to_the_true_volume_even_under_a_cap():
    # 1500 records a day against a cap of 60 at rate 0.5: the rate halves as the budget is used, and the
    # Horvitz-Thompson total with the stored probabilities still estimates the true volume without bias
    # (a hard stop at the cap would leave the evening unsampled and estimate about 376).
    config = SamplingConfig(uniform_rate=0.5, uniform_cap=60, risk_rates={})
    estimates, sizes = [], []
    for seed in range(120):
        records, _ = generate([Stream("m1", "chat", 1_500, 0.1)], seed=seed)
        rows = _sample(config.model_copy(update={"seed": f"s{seed}"}), records)
        sizes.append(len(rows))
        estimates.append(sum(1.0 / row["inclusion_probability"] for row in rows))
    assert max(sizes) <= 60 + math.log2(1_500)
    mean = sum(estimates) / len(estimates)
    sd = math.sqrt(sum((e - mean) ** 2 for e in estimates) / (len(estimates) - 1))
    assert abs(mean - 1_500) < 4 * sd / math.sqrt(len(estimates))
    rates = sorted({row["inclusion_probability"] for row in rows}, reverse=True)
    assert rates[:3] == [0.5, 0.25, 0.125]


def test_risky_records_are_sampled_with_their_reason_and_rate():
    config = SamplingConfig(uniform_rate=0.0, risk_rates={"toxicity": 1.0, "pii": 0.5, "low_feedback": 1.0})
    records, _ = generate([Stream("m1", "chat", 400, 0.1)], seed=3)
    for i, record in enumerate(records):
        if i % 10 == 0:
            record.response = f"mail me at user{i}@example.com"
        if i % 25 == 0:
            record.feedback_score = 0.0
    annotations = [annotate(r, toxic=i % 20 == 0) for i, r in enumerate(records)]
    rows = _sample(config, records, annotations)
    by_reason = Counter(row["reason"] for row in rows)
    assert by_reason["toxicity"] == 20 and by_reason["low_feedback"] == 16
    assert binomtest(by_reason["pii"], 40, 0.5).pvalue > 0.001
    assert {row["inclusion_probability"] for row in rows if row["reason"] == "pii"} == {0.5}
    assert "uniform" not in by_reason


def test_records_without_annotations_are_still_sampled_uniformly():
    config = SamplingConfig(uniform_rate=1.0, risk_rates={"toxicity": 1.0})
    records, _ = generate([Stream("m1", None, 10, 0.1)], seed=4)
    rows = _sample(config, records, annotations=[])
    assert [row["reason"] for row in rows] == ["uniform"] * 10
    assert rows[0]["stratum"] == "model=m1,app="


def test_a_drift_event_boosts_sampling_of_its_stream_for_a_while():
    config = SamplingConfig(uniform_rate=0.0, risk_rates={"drift": 1.0}, drift_boost_s=3600)
    records, _ = generate([Stream("m1", "chat", 200, 0.1), Stream("m2", "chat", 200, 0.1)], seed=5)
    step = SamplingStep(config)
    batch = Batch(records=records)
    step.boosts.learn([{"stream": "model=m1,app=*", "signal": "response_chars",
                        "detected_at": DAY0 + timedelta(hours=2)}])
    step.process(batch)
    drifted = batch.rows[samples]
    assert drifted and all(row["model"] == "m1" and row["reason"] == "drift" for row in drifted)
    assert all(timedelta(hours=2) <= row["ts"] - DAY0 <= timedelta(hours=3) for row in drifted)
    in_window = [r for r in records if r.model == "m1" and timedelta(hours=2) <= r.ts - DAY0 <= timedelta(hours=3)]
    assert len(drifted) == len(in_window)



def test_a_drift_event_on_a_stream_without_app_boosts_the_records_without_app():
    # The drift bank names the stream of records that carry no app "model=m1,app=-".
    config = SamplingConfig(uniform_rate=0.0, risk_rates={"drift": 1.0}, drift_boost_s=3600)
    records, _ = generate([Stream("m1", None, 200, 0.1), Stream("m1", "chat", 200, 0.1)], seed=9)
    batch = Batch(records=records)
    step = SamplingStep(config)
    step.boosts.learn([{"stream": "model=m1,app=-", "detected_at": DAY0 + timedelta(hours=2)}])
    step.process(batch)
    assert batch.rows[samples] and all(row["app"] is None for row in batch.rows[samples])


def test_every_decision_is_the_documented_hash_of_seed_reason_and_id():
    config = SamplingConfig(uniform_rate=0.3, uniform_cap=None, risk_rates={"toxicity": 0.5}, risk_cap=None)
    records, _ = generate([Stream("m1", "chat", 2_000, 0.1)], seed=10)
    annotations = [annotate(r, toxic=i % 3 == 0) for i, r in enumerate(records)]
    kept = {(row["record_id"], row["reason"]) for row in _sample(config, records, annotations)}
    expected = {(r.id, "uniform") for r in records if unit_hash(config.seed, "uniform", r.id) < 0.3}
    expected |= {(r.id, "toxicity") for i, r in enumerate(records)
                 if i % 3 == 0 and unit_hash(config.seed, "toxicity", r.id) < 0.5}
    assert kept == expected

def test_a_share_of_records_is_marked_for_two_reviewers():
    config = SamplingConfig(uniform_rate=1.0, uniform_cap=None, double_review_share=0.2, risk_rates={})
    records, _ = generate([Stream("m1", "chat", 5_000, 0.1)], seed=6)
    rows = _sample(config, records)
    doubles = sum(row["reviews_wanted"] == 2 for row in rows)
    assert binomtest(doubles, len(rows), 0.2).pvalue > 0.001


def test_a_replayed_batch_decides_the_same_and_a_restart_keeps_the_cap(sqlite_url):
    engine = make_engine(sqlite_url)
    create_schema(engine)
    config = SamplingConfig(uniform_rate=1.0, uniform_cap=40, risk_rates={})
    records, _ = generate([Stream("m1", "chat", 100, 0.1)], seed=7)
    store(engine, SamplingStep(config), records[:50], batch_size=25)
    with engine.connect() as conn:
        probabilities = conn.execute(select(samples.c.inclusion_probability)).scalars().all()
    assert probabilities.count(1.0) == 20 and 20 < len(probabilities) < 40  # then the rate halves

    # The daemon restarts and Kafka hands the last 25 records out again, plus 50 new ones: the restarted
    # sampler continues the budget instead of starting afresh at rate 1.
    again = SamplingStep.from_database(config, engine, now=DAY0 + timedelta(hours=23))
    store(engine, again, records[25:], batch_size=25)
    with engine.connect() as conn:
        rows = conn.execute(select(samples.c.record_id, samples.c.inclusion_probability)).all()
    later = {r.id for r in records[50:]}
    assert [p for rid, p in rows if rid in later] and all(p < 1.0 for rid, p in rows if rid in later)
    assert len(rows) <= 40 + math.log2(100)

    # Deciding a batch twice gives the same rows.
    one, two = Batch(records=records), Batch(records=records)
    SamplingStep(config).process(one)
    SamplingStep(config).process(two)
    assert one.rows[samples] and [(r["record_id"], r["inclusion_probability"]) for r in one.rows[samples]] \
        == [(r["record_id"], r["inclusion_probability"]) for r in two.rows[samples]]


def test_sampling_is_off_when_disabled():
    records, _ = generate([Stream("m1", "chat", 50, 0.1)], seed=8)
    assert _sample(SamplingConfig(enabled=False, uniform_rate=1.0), records, [Annotation()] * 50) == []


def test_drift_events_in_the_table_boost_sampling_and_a_restarted_sampler_still_knows_them(sqlite_url):
    """Drift is found by the fold job on whichever daemon holds the lease: the sampler reads the events from
    `drift_events`, on start (a restart forgets none) and then as they come (every few seconds)."""
    engine = make_engine(sqlite_url)
    create_schema(engine)
    config = SamplingConfig(uniform_rate=0.0, risk_rates={"drift": 1.0}, drift_boost_s=86_400, risk_cap=None)
    records, _ = generate([Stream("m1", "chat", 200, 0.1), Stream("m2", "chat", 200, 0.1)], seed=5)
    clock = [0.0]
    step = SamplingStep.from_database(config, engine, now=DAY0)
    step.boosts.clock = lambda: clock[0]
    first = Batch(records=records[:200])
    step.process(first)
    assert first.rows[samples] == []  # no drift yet
    with engine.begin() as conn:
        conn.execute(drift_events.insert().values(stream="model=m1", signal="prompt_topic", detector="bucket_mix",
                                                  detected_at=DAY0, created_at=DAY0))
    clock[0] += 1.0  # within the poll interval: not read yet
    second = Batch(records=records[200:300])
    step.process(second)
    assert second.rows[samples] == []
    clock[0] += 5.0
    third = Batch(records=records[300:])
    step.process(third)
    assert [r["record_id"] for r in third.rows[samples]] == [r.id for r in records[300:] if r.model == "m1"]
    restarted = SamplingStep.from_database(config, engine, now=DAY0)
    again = Batch(records=records)
    restarted.process(again)
    assert [r["record_id"] for r in again.rows[samples]] == [r.id for r in records if r.model == "m1"]
