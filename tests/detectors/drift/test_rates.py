"""The fold's rate chart: a refusal or toxic spike caught in a few hundred records of its stream, no alarm on
steady traffic however rare the event, and a checkpoint that continues exactly."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.drift.buckets import BucketBernoulli, BucketChart
from detectors.drift.rates import BucketRate


def _feed(chart: BucketChart, events: np.ndarray, size: int, start: int = 0) -> list[tuple[int, object]]:
    """Feed 0/1 ``events`` in buckets of ``size``; return (bucket index, change) for every change."""
    found = []
    for b, i in enumerate(range(0, events.size, size)):
        x = events[i:i + size]
        change = chart.update_bucket(x.size, float(x.sum()), at=start + b)
        if change is not None:
            found.append((start + b, change))
    return found


def _delays(make, p0: float, p1: float, trials: int, seed: int) -> list[int]:  # type: ignore[no-untyped-def]
    """Records after the change until ``make()``'s chart fired (2,450 records before it, buckets of 35)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        chart = make()
        before, after = rng.random(2450) < p0, rng.random(8000) < p1
        assert not _feed(chart, before.astype(float), 35)
        changes = _feed(chart, after.astype(float), 35, start=70)
        out.append((changes[0][0] - 70 + 1) * 35 if changes else 10**6)
    return out


@pytest.mark.parametrize(("p0", "p1", "within"), [(0.01, 0.05, 1200), (0.015, 0.10, 400)])
def test_a_spike_is_caught_quicker_than_by_the_cusum_it_replaced_at_the_same_budget(p0, p1, within):
    """The bench's toxic (1% -> 5%) and refusal (1.5% -> 10%) shifts, on a stream 2,450 records old (the
    changed model's share of a bench trial); budget one false alarm per 1.2e7 records (10^6 per stream,
    12 signals)."""
    new = _delays(lambda: BucketRate(arl0=1.2e7, warmup=1000), p0, p1, trials=12, seed=5)
    old = _delays(lambda: BucketBernoulli(arl0=1.2e7, warmup=1000), p0, p1, trials=12, seed=5)
    assert np.median(new) < np.median(old), (new, old)
    assert np.median(new) <= within


def test_the_change_says_where_it_began_which_way_and_the_rates_before_and_after():
    rng = np.random.default_rng(3)
    chart = BucketRate(arl0=1.2e7, warmup=1000)
    assert not _feed(chart, (rng.random(10_000) < 0.02).astype(float), 50)
    changes = _feed(chart, (rng.random(10_000) < 0.002).astype(float), 50, start=200)
    assert changes, "a rate falling tenfold went unnoticed"
    bucket, change = changes[0]
    assert change.direction == "down" and 200 <= bucket < 260
    assert change.start >= 150  # the excursion began near the change
    assert 0.015 < change.before["rate"] < 0.025 and change.after["rate"] < 0.01
    assert len(changes) == 1  # it re-learnt its reference from the new level, and that is steady


@pytest.mark.parametrize(("p", "bucket"), [(0.005, 35), (0.05, 35), (0.3, 5)])
def test_steady_traffic_alarms_less_often_than_its_arl0_says_whatever_the_rate(p: float, bucket: int):
    """Lorden's bound, checked where it can be seen: at ``arl0`` = 500 records the chart may raise one false
    alarm per 500 records; on 200,000 steady records it raises far fewer, including its warm-ups on a rare
    event (0.5%: 5 events in the first 1,000 records)."""
    rng = np.random.default_rng(int(p * 1000) + bucket)
    alarms = 0
    for _ in range(10):
        chart = BucketRate(arl0=500, warmup=1000)
        alarms += len(_feed(chart, (rng.random(20_000) < p).astype(float), bucket))
    assert alarms <= 200_000 / 500 / 4, alarms


def test_a_checkpointed_rate_chart_continues_exactly_where_it_stopped():
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.random(4000) < 0.02, rng.random(4000) < 0.08]).astype(float)
    whole = BucketRate(arl0=1e6, warmup=1000)
    expected = [(b, c.after, c.start) for b, c in _feed(whole, values, 40)]
    first = BucketRate(arl0=1e6, warmup=1000)
    got = [(b, c.after, c.start) for b, c in _feed(first, values[:4400], 40)]
    resumed = BucketChart.from_state(orjson.loads(orjson.dumps(first.state())))
    assert isinstance(resumed, BucketRate)
    got += [(b, c.after, c.start) for b, c in _feed(resumed, values[4400:], 40, start=110)]
    assert expected and got == expected
