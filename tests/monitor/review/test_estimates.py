"""Accuracy estimates from labelled samples cover the truth, and the analysts' SQL views agree with them."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import text

from monitor.config import ReviewConfig, SamplingConfig
from monitor.ingest.batch import Batch
from monitor.ingest.steps.sampling import SamplingStep
from monitor.review.auth import ReviewerRegistry
from monitor.review.estimates import (
    Proportion,
    accuracy_estimates,
    agreement,
    cohen_kappa,
    significantly_lower,
    weighted_proportion,
    wilson,
)
from monitor.review.queue import ReviewQueue
from monitor.storage.db import make_engine
from monitor.storage.schema import samples
from tests.monitor.review.traffic import DAY0, Stream, create_schema, generate, store


def test_wilson_matches_the_textbook_interval():
    # Agresti & Coull's example: 0 successes out of 10 gives (0, 0.278) at 95%.
    low, high = wilson(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)


def test_cohen_kappa_of_the_classic_example():
    # 50 items: both yes 20, yes/no 5, no/yes 10, both no 15 -> kappa 0.4.
    pairs = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    assert cohen_kappa(pairs) == pytest.approx(0.4)
    assert cohen_kappa([("a", "a")] * 5) is None  # one category only: chance agreement is 1


def _labelled_uniform(seed: int, streams, config):  # type: ignore[no-untyped-def]
    records, truth = generate(streams, seed=seed)
    step = SamplingStep(config.model_copy(update={"seed": f"coverage-{seed}"}))
    batch = Batch(records=records)
    step.process(batch)
    rows = [r for r in batch.rows[samples] if r["reason"] == "uniform"]
    return records, truth, rows


def test_the_interval_covers_the_true_accuracy_of_generated_traffic():
    # A model serves a big app with 8% errors and a small app with 35% errors; the small app is sampled at a
    # higher rate, so unweighted it would drag the estimate down. Over 300 days of traffic the reweighted
    # 95% interval must cover the day's true accuracy about 95% of the time.
    streams = [Stream("m1", "chat", 4_000, 0.08), Stream("m1", "tiny", 300, 0.35)]
    config = SamplingConfig(uniform_rate=0.03, stratum_rates={"app=tiny": 0.4}, uniform_cap=None, risk_rates={})
    covered, naive_bias, hajek_bias = 0, 0.0, 0.0
    runs = 300
    for seed in range(runs):
        _, truth, rows = _labelled_uniform(seed, streams, config)
        true_accuracy = sum(truth.values()) / len(truth)
        values = [1.0 if truth[r["record_id"]] else 0.0 for r in rows]
        estimate = weighted_proportion(values, [1 / r["inclusion_probability"] for r in rows])
        covered += estimate.low <= true_accuracy <= estimate.high
        hajek_bias += (estimate.estimate - true_accuracy) / runs
        naive_bias += (sum(values) / len(values) - true_accuracy) / runs
    assert 0.91 <= covered / runs <= 0.99
    assert abs(hajek_bias) < 0.005 < abs(naive_bias)


def test_a_real_drop_in_accuracy_is_significant_and_noise_is_not():
    rng = random.Random(9)

    def window(error_rate: float, n: int = 400) -> Proportion:
        return weighted_proportion([float(rng.random() >= error_rate) for _ in range(n)], [1.0] * n)

    assert significantly_lower(window(0.25), window(0.10))
    false_alarms = sum(significantly_lower(window(0.10), window(0.10)) for _ in range(200))
    assert false_alarms <= 20  # alpha 0.05: about 10 expected


@pytest.fixture
def labelled_db(db_url):  # type: ignore[no-untyped-def]
    """Two models' traffic stored and sampled through the real pipeline pieces, then labelled by two
    reviewers with the ground truth (reviewer bo disagrees on every fifth record)."""
    engine = make_engine(db_url)
    create_schema(engine)
    streams = [Stream("m1", "chat", 1_500, 0.1), Stream("m1", "tiny", 200, 0.4), Stream("m2", "chat", 800, 0.2)]
    records, truth = generate(streams, seed=11)
    config = SamplingConfig(uniform_rate=0.05, stratum_rates={"app=tiny": 0.5}, risk_rates={},
                            double_review_share=0.3)
    store(engine, SamplingStep(config), records)
    registry = ReviewerRegistry(engine)
    for name in ("ana", "bo"):
        registry.add(name)
    ids = {r.name: r.id for r in registry.list()}
    queue = ReviewQueue(engine, ReviewConfig(queue_size=500))
    for name, reviewer_id in ids.items():
        queue.fill(reviewer_id)
        for i, item in enumerate(queue.pending(reviewer_id)):
            verdict = "correct" if truth[item.record_id] else "incorrect"
            if name == "bo" and i % 5 == 0:
                verdict = "unsure" if i % 10 == 0 else ("incorrect" if verdict == "correct" else "correct")
            queue.label(reviewer_id, item.sample_id, verdict)
    yield engine, truth
    engine.dispose()


def test_estimates_and_views_agree_on_both_databases(labelled_db):
    engine, truth = labelled_db
    start, end = DAY0, DAY0 + timedelta(days=1)
    by_model = {e.group["model"]: e.accuracy for e in accuracy_estimates(engine, start, end)}
    assert set(by_model) == {"m1", "m2"}
    # Reweighting makes m1's estimate reflect the true mix of its apps (1500 chat at 90%, 200 tiny at 60%).
    m1_truth = sum(v for k, v in truth.items() if "-m1-" in k) / sum("-m1-" in k for k in truth)
    assert by_model["m1"].low <= m1_truth <= by_model["m1"].high
    with engine.connect() as conn:
        view = conn.execute(text(
            "SELECT model, SUM(accuracy * sum_w) / SUM(sum_w), SUM(n_labelled), SUM(sum_w) "
            "FROM review_accuracy_daily GROUP BY model ORDER BY model")).all()
        kappa_view = conn.execute(text("SELECT SUM(n_pairs), MIN(kappa) FROM review_agreement")).one()
        per_model_kappa = conn.execute(text("SELECT model, n_pairs, kappa FROM review_agreement")).all()
    for model, accuracy, n, _ in view:
        assert accuracy == pytest.approx(by_model[model].estimate)
        assert n == by_model[model].n
    by_app = accuracy_estimates(engine, start, end, by=("model", "app"))
    assert [tuple(e.group.values()) for e in by_app] == [("m1", "chat"), ("m1", "tiny"), ("m2", "chat")]

    overall = agreement(engine, start, end)
    assert overall.n_pairs == kappa_view[0] > 10
    assert 0.3 < overall.kappa < 0.95  # bo disagrees on a fifth of records: good but not perfect agreement
    pairs_by_model = {m: (n, k) for m, n, k in per_model_kappa}
    assert sum(n for n, _ in pairs_by_model.values()) == overall.n_pairs
    assert all(k is not None and -1 <= k <= 1 for _, k in pairs_by_model.values())
