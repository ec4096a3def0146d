"""The continuous chart on the kind of signals LLM traffic has: skewed latencies, integer token counts."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.drift.chart import Chart
from detectors.drift.cusum import GaussianCUSUM


def _run_alarms(chart: GaussianCUSUM, x: np.ndarray) -> int:
    return sum(len(chart.update_many(part)) for part in np.array_split(x, 50))


def test_stationary_skewed_and_discrete_traffic_stays_within_the_false_alarm_budget():
    rng = np.random.default_rng(5)
    n, arl0 = 400_000, 5_000
    latency = rng.lognormal(6.0, 0.8, n)                   # heavy right tail
    tokens = rng.poisson(12, n).astype(float)              # small integers
    assert _run_alarms(GaussianCUSUM(arl0, warmup=1000), latency) <= n / arl0
    assert _run_alarms(GaussianCUSUM(arl0, warmup=1000), tokens) <= n / arl0


def test_a_half_sigma_latency_regression_is_caught_quickly_with_the_numbers_a_human_needs():
    rng = np.random.default_rng(6)
    chart = GaussianCUSUM(arl0=1e7, warmup=5000)
    assert chart.update_many(rng.lognormal(5.5, 0.4, 30_000)) == []
    changes = chart.update_many(rng.lognormal(5.5 + 0.2, 0.4, 5_000))
    assert changes and changes[0].direction == "up"
    change = changes[0]
    assert change.index < 1_000
    assert change.before["n"] == 5000 and 230 < change.before["mean"] < 290
    assert change.after["mean"] > change.before["mean"] * 1.1
    assert 0 < change.after["n"] <= change.index + 1 + 200


def test_a_drop_is_a_change_too():
    rng = np.random.default_rng(8)
    chart = GaussianCUSUM(arl0=1e7, warmup=2000, transform="identity")
    chart.update_many(rng.normal(100, 10, 10_000))
    changes = chart.update_many(rng.normal(90, 10, 3_000))
    assert [c.direction for c in changes[:1]] == ["down"]


def test_after_a_detection_the_chart_warms_up_on_the_new_level_and_stays_quiet_there():
    rng = np.random.default_rng(9)
    chart = GaussianCUSUM(arl0=1e5, warmup=1000)
    chart.update_many(rng.lognormal(6, 0.5, 5_000))
    assert chart.update_many(rng.lognormal(6.5, 0.5, 1_000))
    assert chart.warming_up
    assert chart.update_many(rng.lognormal(6.5, 0.5, 50_000)) == []


def test_state_survives_serialisation_mid_drift_and_detects_at_the_same_record():
    rng = np.random.default_rng(10)
    before, after = rng.lognormal(6, 0.5, 20_000), rng.lognormal(6.15, 0.5, 5_000)
    straight = GaussianCUSUM(arl0=1e7, warmup=3000)
    straight.update_many(before)
    expected = straight.update_many(after)[0].index

    first = GaussianCUSUM(arl0=1e7, warmup=3000)
    first.update_many(before)
    cut = expected // 2
    assert first.update_many(after[:cut]) == []
    restarted = Chart.from_state(orjson.loads(orjson.dumps(first.state())))
    changes = restarted.update_many(after[cut:])
    assert changes and cut + changes[0].index == expected


def test_a_warm_up_interrupted_by_a_restart_is_not_reopened():
    rng = np.random.default_rng(12)
    chart = GaussianCUSUM(arl0=1e6, warmup=2000)
    chart.update_many(rng.lognormal(6, 0.5, 1500))
    restored = Chart.from_state(orjson.loads(orjson.dumps(chart.state())))
    restored.update_many(rng.lognormal(6, 0.5, 500))
    assert not restored.warming_up
