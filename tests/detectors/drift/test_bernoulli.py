"""The rate chart: toxic answers, errors, refusals."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Chart


def test_a_stationary_one_percent_rate_stays_within_the_false_alarm_budget():
    rng = np.random.default_rng(1)
    n, arl0 = 600_000, 5_000
    chart = BernoulliCUSUM(arl0, warmup=5000)
    alarms = sum(len(chart.update_many(part)) for part in np.array_split(rng.random(n) < 0.01, 60))
    assert alarms <= n / arl0


def test_toxic_answers_going_from_one_to_three_percent_are_caught_with_the_rates_either_side():
    rng = np.random.default_rng(2)
    chart = BernoulliCUSUM(arl0=1e7, warmup=5000)
    assert chart.update_many(rng.random(50_000) < 0.01) == []
    changes = chart.update_many(rng.random(20_000) < 0.03)
    assert changes and changes[0].direction == "up" and changes[0].index < 5_000
    assert 0.005 < changes[0].before["rate"] < 0.015
    assert changes[0].after["rate"] > 0.02


def test_a_signal_that_never_fired_in_warm_up_does_not_alarm_on_its_first_event():
    rng = np.random.default_rng(3)
    chart = BernoulliCUSUM(arl0=1e6, warmup=2000)
    assert chart.update_many(np.zeros(2000)) == []
    assert chart.ratio_used > chart.odds_ratio  # too few events to tell a doubling from noise
    assert chart.update_many(rng.random(100_000) < 1 / 4000) == []
    assert chart.update_many(rng.random(5_000) < 0.05)  # an error spike still shows


def test_state_round_trip():
    rng = np.random.default_rng(4)
    chart = BernoulliCUSUM(arl0=1e6, warmup=1000)
    chart.update_many(rng.random(3000) < 0.02)
    copy = Chart.from_state(orjson.loads(orjson.dumps(chart.state())))
    tail = rng.random(20_000) < 0.06
    assert [c.index for c in copy.update_many(tail)] == [c.index for c in chart.update_many(tail)]
