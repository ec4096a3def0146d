"""Charts fed together, the way the bank feeds one signal of every stream at once, behave exactly as charts
fed one at a time: same detections at the same records, same state afterwards."""

from __future__ import annotations

import numpy as np
import orjson

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Chart, update_together
from detectors.drift.cusum import GaussianCUSUM


def _streams(rng: np.random.Generator, batches: int) -> list[list[np.ndarray]]:
    """Latencies of 12 streams in batches of 0-80 values each; two streams slow down part-way."""
    out = []
    for b in range(batches):
        row = []
        for s in range(12):
            slow = (s == 3 and b >= 150) or (s == 8 and b >= 250)
            row.append(rng.lognormal(6.0 + (0.4 if slow else 0.0), 0.5, int(rng.integers(0, 80))))
        out.append(row)
    return out


def _fed(charts: list[Chart], batches: list[list[np.ndarray]], together: bool) -> list[tuple[int, int, int, str]]:
    found = []
    for b, values in enumerate(batches):
        if together:
            results = update_together(charts, values)
        else:
            results = [c.update_many(v) for c, v in zip(charts, values, strict=True)]
        found += [(b, s, change.index, change.direction) for s, changes in enumerate(results) for change in changes]
    return found


def test_slowdowns_in_two_of_twelve_streams_are_found_at_the_same_records_either_way():
    batches = _streams(np.random.default_rng(11), 400)
    alone = [GaussianCUSUM(arl0=1e7, warmup=1000) for _ in range(12)]
    together = [GaussianCUSUM(arl0=1e7, warmup=1000) for _ in range(12)]
    expected = _fed(alone, batches, together=False)
    assert {s for _, s, _, _ in expected} == {3, 8}
    assert _fed(together, batches, together=True) == expected
    for a, b in zip(alone, together, strict=True):
        sa, sb = a.state(), b.state()
        assert sa["seen"] == sb["seen"] and sa["armed_at"] == sb["armed_at"]
        assert np.allclose(sa["sides"], sb["sides"], rtol=1e-9, atol=1e-9)


def test_rate_charts_fed_together_match_and_survive_a_restart_mid_way():
    rng = np.random.default_rng(12)
    batches = [[(rng.random(int(rng.integers(20, 60))) < (0.06 if s == 2 and b > 200 else 0.02)).astype(float)
                for s in range(6)] for b in range(400)]
    alone = [BernoulliCUSUM(arl0=1e7, warmup=2000) for _ in range(6)]
    together = [BernoulliCUSUM(arl0=1e7, warmup=2000) for _ in range(6)]
    expected = _fed(alone, batches, together=False)
    assert [s for _, s, _, _ in expected] == [2]
    first = _fed(together, batches[:100], together=True)
    restored = [Chart.from_state(orjson.loads(orjson.dumps(c.state()))) for c in together]
    later = [(b + 100, s, i, d) for b, s, i, d in _fed(restored, batches[100:], together=True)]
    assert first + later == expected


def test_a_warm_up_fed_in_small_batches_calibrates_exactly_like_one_fed_at_once():
    x = np.random.default_rng(13).lognormal(6.0, 0.5, 3000)
    whole, pieces = GaussianCUSUM(arl0=1e5, warmup=2000), GaussianCUSUM(arl0=1e5, warmup=2000)
    whole.update_many(x)
    for part in np.array_split(x, 97):
        assert pieces.update_many(part) == []
    a, b = whole.state(), pieces.state()
    assert a["armed_at"] == b["armed_at"] == 2000 and a["seen"] == b["seen"] == 3000
    assert a["own"]["hist"] == b["own"]["hist"]
    assert np.isclose(a["own"]["std"], b["own"]["std"], rtol=1e-12)
    assert np.allclose(a["sides"], b["sides"])
