"""The bank: every record feeds its (model, app) stream and the global one; state is bytes-safe JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import orjson

from detectors.drift.bank import GLOBAL, DriftBank, Observation, stream_name

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _traffic(rng: np.random.Generator, n: int, start: int, slow_app: str | None = None) -> list[Observation]:
    out = []
    for i in range(start, start + n):
        app = ("chat", "search")[i % 2]
        latency = rng.lognormal(6.0 + (0.3 if app == slow_app else 0.0), 0.4)
        out.append(Observation(f"r{i}", T0 + timedelta(milliseconds=i), stream_name("m1", app),
                               {"latency_ms": latency, "error": float(rng.random() < 0.01)}))
    return out


def test_a_slowdown_in_one_app_is_reported_for_that_stream_with_before_and_after():
    rng = np.random.default_rng(1)
    bank = DriftBank(arl0=1e6, warmup=2000)
    assert bank.update(_traffic(rng, 20_000, 0)) == []
    events = bank.update(_traffic(rng, 10_000, 20_000, slow_app="search"))
    mine = [e for e in events if e.stream == "model=m1,app=search"]
    assert [(e.signal, e.detector, e.direction) for e in mine] == [("latency_ms", "cusum", "up")]
    event = mine[0]
    assert event.record_id.startswith("r") and event.detected_at > T0 + timedelta(milliseconds=20_000)
    assert event.after["mean"] > event.before["mean"]
    assert not [e for e in events if e.stream == "model=m1,app=chat"]


def test_streams_are_capped_and_the_longest_idle_goes_first():
    bank = DriftBank(warmup=100, max_streams=2)
    for app in ("a", "b", "c"):
        bank.update([Observation("x", T0, stream_name("m", app), {"latency_ms": 1.0})])
    assert set(bank.detectors) == {GLOBAL, "model=m,app=b", "model=m,app=c"}
    assert bank.evicted == 1


def test_restored_bank_continues_a_drift_in_progress():
    rng = np.random.default_rng(2)
    bank = DriftBank(arl0=1e6, warmup=2000)
    bank.update(_traffic(rng, 20_000, 0))
    assert bank.update(_traffic(rng, 40, 20_000, slow_app="chat")) == []  # the slowdown has begun
    copy = DriftBank(arl0=1e6, warmup=2000)
    copy.restore(orjson.loads(orjson.dumps(bank.state())))
    later = _traffic(rng, 5_000, 20_040, slow_app="chat")
    assert [e.record_id for e in copy.update(later)] == [e.record_id for e in bank.update(later)] != []
