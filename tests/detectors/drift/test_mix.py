"""The topic-mix chart: its false-alarm bound holds on stationary mixes, it catches a subject that rises and
names it, and its state continues exactly where it stopped."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from detectors.drift.mix import BucketMix

NAMES = tuple(f"s{i}" for i in range(16))
MIX = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.03, 0.02, 0.02] + [0.0] * 8)


@pytest.mark.parametrize("per_bucket", [5, 40])
def test_stationary_mixes_alarm_less_often_than_arl0(per_bucket):
    """Lorden's bound: at least arl0 observations per false alarm on average. At arl0 = 500 and 60,000
    observations the bound allows 120 alarms; a chart whose null were wrong would raise far more."""
    rng = np.random.default_rng(per_bucket)
    chart = BucketMix(arl0=500, warmup=200, names=NAMES)
    buckets = 60_000 // per_bucket
    alarms = sum(chart.update_counts(rng.multinomial(per_bucket, MIX), at=b) is not None for b in range(buckets))
    assert alarms <= 60_000 / 500


def test_a_subject_the_reference_never_saw_is_caught_quickly_and_named():
    rng = np.random.default_rng(7)
    chart = BucketMix(arl0=1e7, warmup=400, names=NAMES)
    for b in range(100):
        assert chart.update_counts(rng.multinomial(10, MIX), at=b) is None
    shifted = MIX * 0.85
    shifted[12] = 0.15  # a new subject: 15% of prompts
    change, b = None, 100
    while change is None:
        change = chart.update_counts(rng.multinomial(10, shifted), at=b)
        b += 1
    assert (b - 100) * 10 < 400  # observations after the change
    assert change.start >= 100 and change.details["moved"][0] == "s12"
    assert change.before["shares"]["s12"] < 0.01 < 0.08 < change.after["shares"]["s12"]
    assert chart.warming_up  # re-armed: learns the new mix


def test_a_restored_chart_continues_exactly():
    rng = np.random.default_rng(3)
    a = BucketMix(arl0=1e5, warmup=300, names=NAMES)
    for b in range(150):
        a.update_counts(rng.multinomial(8, MIX), at=b)
    b_chart = BucketMix.from_state(orjson.loads(orjson.dumps(a.state())))
    shifted = np.roll(MIX, 3)
    for b in range(150, 400):
        counts = rng.multinomial(8, shifted)
        assert (a.update_counts(counts, at=b) is None) == (b_chart.update_counts(counts, at=b) is None)
        assert a.statistic == pytest.approx(b_chart.statistic)


def test_a_young_stream_whose_window_holds_most_of_its_history_still_sees_a_change_soon():
    """A stream 2,450 prompts old, 35 per bucket: the window (96 start points) holds most of its history. The
    null learns from the window before each start point too, so three in ten prompts turning to other
    subjects are caught within about 100 prompts (a null from the warm-up alone took about 200)."""
    rng = np.random.default_rng(0)
    base = rng.dirichlet(np.full(16, 0.5))
    base[[0, 1]] = 0
    base /= base.sum()
    new = rng.dirichlet(np.full(16, 0.5))
    new[[0, 1]] += 0.3
    new /= new.sum()
    delays = []
    for _ in range(10):
        chart = BucketMix(arl0=1.2e7, warmup=250, names=NAMES)
        assert all(chart.update_counts(rng.multinomial(35, base), at=b) is None for b in range(70))
        after = 0.7 * base + 0.3 * new
        fired = next(b for b in range(70, 400) if chart.update_counts(rng.multinomial(35, after), at=b))
        delays.append((fired - 70 + 1) * 35)
    assert np.median(delays) <= 140, delays


def test_rivers_own_adwin_per_subject_catches_a_new_subject_and_continues_from_its_checkpoint():
    from river.drift import ADWIN

    from detectors.drift.mix import RiverMix

    rng = np.random.default_rng(2)
    chart = RiverMix(arl0=1e6, warmup=400, names=NAMES, detector="ADWIN")
    assert all(isinstance(r, ADWIN) for r in chart.rivers) and len(chart.rivers) == 16
    assert all(chart.update_counts(rng.multinomial(20, MIX), at=b) is None for b in range(100))
    restored = BucketMix.from_state(orjson.loads(orjson.dumps(chart.state())))
    assert isinstance(restored, RiverMix)
    shifted = MIX * 0.7
    shifted[10] = 0.3
    found = [(b, c) for b in range(100, 200) if (c := restored.update_counts(rng.multinomial(20, shifted), at=b))]
    assert found and found[0][0] < 130, found
    change = found[0][1]
    assert "s10" in change.details["moved"] and change.details["river"] == "ADWIN"
    assert change.before["shares"]["s10"] < 0.01 and change.after["shares"]["s10"] > 0.05
