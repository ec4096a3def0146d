"""The reference server watched: each scrape of its /health and /metrics is a ``reference_health`` row, and
the reference rules read those rows — down (and back), saturated, slower than before. The server is a real
HTTP server on loopback serving vLLM-shaped Prometheus text (tests/inference/scripted_server.py); real vLLM's
own metrics are checked in tests/inference/test_vllm_reference.py and through the daemon in
tests/monitor/shadow/test_vllm_daemon.py."""

from __future__ import annotations

import asyncio
import base64
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, select

from inference.budget import ReplayBudget
from inference.guest import GuestLimit
from monitor.alerts.rules import ReferenceDown, ReferenceLatency, ReferenceSaturated
from monitor.config import AlertRuleConfig, Config
from monitor.jobs.reference_health import ReferenceHealth
from monitor.shadow.candidates import Candidate
from monitor.shadow.replay import ShadowReplayer, answer_detectors, build_backend, build_comparer
from monitor.storage.schema import reference_health, shadow_comparisons
from tests.inference.scripted_server import Script, scripted_server

NOW = datetime.now(UTC).replace(microsecond=0)


def vllm_metrics(*, waiting: float, finished: float, latency_sum: float, slow: float = 0.0, tokens: float = 0) -> str:
    """vLLM's metric names and shapes; ``finished`` requests, ``slow`` of them over 2 s, the rest under 0.5 s."""
    fast = finished - slow
    return f"""# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{{engine="0",model_name="smollm2"}} {waiting}
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="smollm2"}} 1.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{{engine="0",model_name="smollm2"}} 0.25
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="0.5",model_name="smollm2"}} {fast}
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="2.0",model_name="smollm2"}} {fast}
vllm:e2e_request_latency_seconds_bucket{{engine="0",le="+Inf",model_name="smollm2"}} {finished}
vllm:e2e_request_latency_seconds_count{{engine="0",model_name="smollm2"}} {finished}
vllm:e2e_request_latency_seconds_sum{{engine="0",model_name="smollm2"}} {latency_sum}
# TYPE vllm:request_success counter
vllm:request_success_total{{engine="0",finished_reason="stop",model_name="smollm2"}} {finished}
# TYPE vllm:generation_tokens counter
vllm:generation_tokens_total{{engine="0",model_name="smollm2"}} {tokens}
"""


def config_for(url: str) -> Config:
    return Config.model_validate({"shadow": {"references": [{"url": url, "model": "smollm2"}]}})


def test_each_scrape_stores_the_load_and_what_happened_since_the_previous_one(engine: Engine) -> None:
    script = Script(models=("smollm2",), metrics=vllm_metrics(waiting=0, finished=10, latency_sum=3.0, tokens=100))
    with scripted_server(script) as url:
        job = ReferenceHealth(config_for(url), gpu=False)
        first = job.scrape_once(engine, NOW)[0]
        script.metrics = vllm_metrics(waiting=3, finished=30, latency_sum=9.0, tokens=400)
        second = job.scrape_once(engine, NOW + timedelta(seconds=15))[0]
        script.metrics = vllm_metrics(waiting=0, finished=4, latency_sum=1.0, tokens=40)  # vLLM restarted
        third = job.scrape_once(engine, NOW + timedelta(seconds=30))[0]
    assert first["up"] and first["waiting"] == 0 and first["kv_cache_usage"] == 0.25
    assert "requests" not in first  # its interval would be the server's whole life: left empty
    assert second["requests"] == 20 and second["e2e_sum_s"] == 6.0 and second["generation_tokens"] == 300
    assert 0 < second["e2e_p50_s"] <= 0.5 and second["waiting"] == 3 and second["finished"] == {"stop": 20}
    assert third["requests"] == 4 and third["generation_tokens"] == 40  # counted from zero after the restart
    with engine.connect() as conn:
        assert conn.execute(reference_health.select()).rowcount != 0
        assert len(conn.execute(reference_health.select()).all()) == 3


def test_a_dead_reference_is_a_down_row_and_the_down_rule_fires_then_resolves(engine: Engine) -> None:
    script = Script(models=("smollm2",), health=503)
    rule = ReferenceDown("reference_down", AlertRuleConfig(kind="reference_down", window="1m", min_samples=2))
    with scripted_server(script) as url:
        job = ReferenceHealth(config_for(url), gpu=False)
        job.scrape_once(engine, NOW)
        with engine.connect() as conn:
            assert rule.evaluate(conn, NOW) == {}  # one failed check is not an outage
        job.scrape_once(engine, NOW + timedelta(seconds=15))
        with engine.connect() as conn:
            firing = rule.evaluate(conn, NOW + timedelta(seconds=15))
        assert list(firing) == [f"reference={url}"]
        assert "/health answered 503" in firing[f"reference={url}"].summary
        script.health = 200
        job.scrape_once(engine, NOW + timedelta(seconds=30))
        with engine.connect() as conn:
            assert rule.evaluate(conn, NOW + timedelta(seconds=30)) == {}
    dead = ReferenceHealth(config_for("http://127.0.0.1:9"), gpu=False).scrape_once(engine, NOW)[0]
    assert dead["up"] is False and dead["error"].startswith("unreachable")


def test_a_down_reference_stays_down_when_the_window_holds_fewer_scrapes(engine: Engine) -> None:
    """A busy scheduler scrapes less often: a window with one failed scrape, after several failed ones and no
    answer since, is still an outage (the alert does not flap resolved/firing); the first answer resolves it."""
    rule = ReferenceDown("reference_down", AlertRuleConfig(kind="reference_down", window="3s", min_samples=2))
    down = {"up": False, "error": "unreachable: ConnectError"}
    rows = [_row(NOW - timedelta(seconds=20)), *(_row(NOW - timedelta(seconds=s), **down) for s in (12, 9, 6))]
    with engine.begin() as conn:
        conn.execute(insert(reference_health), [*rows, _row(NOW - timedelta(seconds=1), **down)])
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["reference=gpu-1"] and firing["reference=gpu-1"].sample_size == 4
    with engine.begin() as conn:
        conn.execute(insert(reference_health), [_row(NOW + timedelta(seconds=1))])
        assert rule.evaluate(conn, NOW + timedelta(seconds=2)) == {}


def _row(ts: datetime, **values: object) -> dict[str, object]:
    return {"reference": "gpu-1", "model": "m", "ts": ts, "up": True} | values


def test_a_queue_for_five_minutes_is_saturation_and_one_calm_scrape_is_not(engine: Engine) -> None:
    rule = ReferenceSaturated("reference_saturated", AlertRuleConfig(
        kind="reference_saturated", window="5m", min_samples=5, threshold=0, kv_cache=0.9))
    rows = [_row(NOW - timedelta(seconds=30 * i), waiting=4.0, kv_cache_usage=0.5) for i in range(9)]
    with engine.begin() as conn:
        conn.execute(insert(reference_health), rows)
    with engine.connect() as conn:
        assert "saturated for 5m: 9 of 9" in rule.evaluate(conn, NOW)["reference=gpu-1"].summary
    with engine.begin() as conn:
        conn.execute(insert(reference_health), [_row(NOW - timedelta(seconds=5), waiting=0.0, kv_cache_usage=0.1)])
    with engine.connect() as conn:
        assert rule.evaluate(conn, NOW) == {}


def test_latency_doubling_against_the_hour_before_is_a_regression(engine: Engine) -> None:
    rule = ReferenceLatency("reference_latency", AlertRuleConfig(
        kind="reference_latency", window="10m", baseline="1h", factor=2.0, min_samples=20))
    before = [_row(NOW - timedelta(minutes=11 + i), requests=10.0, e2e_sum_s=10.0, e2e_p95_s=1.5) for i in range(30)]
    steady = [_row(NOW - timedelta(minutes=i), requests=10.0, e2e_sum_s=12.0, e2e_p95_s=1.8) for i in range(9)]
    with engine.begin() as conn:
        conn.execute(insert(reference_health), before + steady)
    with engine.connect() as conn:
        assert rule.evaluate(conn, NOW) == {}  # 1.2 s against 1.0 s: not a regression
    slow = [_row(NOW - timedelta(minutes=i, seconds=30), requests=10.0, e2e_sum_s=50.0, e2e_p95_s=7.0)
            for i in range(9)]
    with engine.begin() as conn:
        conn.execute(insert(reference_health), slow)
    with engine.connect() as conn:
        evidence = rule.evaluate(conn, NOW)["reference=gpu-1"]
    assert evidence.before == {"mean_ms": 1000.0} and evidence.value > 2000 and "p95 up to 7000 ms" in evidence.summary


def test_replay_backs_off_to_one_request_at_a_time_while_the_reference_has_a_queue(engine: Engine) -> None:
    """The guest limit reads vLLM's queue from /metrics: with requests waiting, replay drops from four in
    flight to one, yet every prompt is still answered and stored."""
    script = Script(models=("smollm2",), metrics=vllm_metrics(waiting=6, finished=0, latency_sum=0))
    with scripted_server(script) as url:
        config = config_for(url)
        backend = build_backend(config.shadow.references[0])
        guest = GuestLimit(4, probe=backend.queue_length, probe_every_s=0.0)
        replayer = ShadowReplayer(engine, backend, build_comparer(config.shadow, answer_detectors(config)),
                                  ReplayBudget(60_000, 4, 1000), guest=guest)
        candidates = [Candidate(f"r{i}", f"Question {i}?", "An answer.", "m", "chat", NOW) for i in range(8)]

        async def go():  # type: ignore[no-untyped-def]
            try:
                return await replayer.replay(candidates)
            finally:
                await backend.aclose()

        stats = asyncio.run(go())
    assert stats.compared == 8 and stats.guest_backoffs >= 2 and stats.guest_lowest == 1
    with engine.connect() as conn:
        assert len(conn.execute(shadow_comparisons.select()).all()) == 8


def test_a_reference_behind_basic_auth_in_its_url_is_used_and_its_password_is_shown_nowhere(
        engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    """A vLLM behind a proxy that wants basic auth, configured as ``http://alice:PASSWORD@host``: replays and
    scrapes authenticate (the proxy refuses anything else), and when it goes down the alert names it, but the
    credentials are in no comparison row, health row, alert or log line (the URL is the reference's label)."""
    caplog.set_level(logging.INFO)
    script = Script(models=("smollm2",), metrics=vllm_metrics(waiting=0, finished=3, latency_sum=0.3),
                    auth="Basic " + base64.b64encode(b"alice:hunter2-proxy-secret").decode())
    rule = ReferenceDown("reference_down", AlertRuleConfig(kind="reference_down", window="1m", min_samples=2))
    with scripted_server(script) as url:
        config = config_for(url.replace("http://", "http://alice:hunter2-proxy-secret@"))
        backend = build_backend(config.shadow.references[0])
        replayer = ShadowReplayer(engine, backend, build_comparer(config.shadow, answer_detectors(config)),
                                  ReplayBudget(60_000, 2, 1000))
        candidates = [Candidate(f"r{i}", f"Question {i}?", "An answer.", "m", "chat", NOW) for i in range(3)]

        async def go():  # type: ignore[no-untyped-def]
            try:
                await backend.check()
                return await replayer.replay(candidates)
            finally:
                await backend.aclose()

        assert asyncio.run(go()).compared == 3
        job = ReferenceHealth(config, gpu=False)
        assert job.scrape_once(engine, NOW)[0]["up"] is True
        script.health = 503
        job.scrape_once(engine, NOW + timedelta(seconds=75))
        job.scrape_once(engine, NOW + timedelta(seconds=90))
        with engine.connect() as conn:
            firing = rule.evaluate(conn, NOW + timedelta(seconds=90))
    shown = url.replace("http://", "http://***@")
    assert list(firing) == [f"reference={shown}"]
    with engine.connect() as conn:
        stored = [conn.execute(select(table)).all() for table in (shadow_comparisons, reference_health)]
    assert {row.reference_endpoint for row in stored[0]} == {shown}
    assert {row.reference for row in stored[1]} == {shown}
    # Ours, not httpx's: every Watchkeeper process keeps httpx's one-line-per-request INFO log off
    # (monitor.app.logs), since it prints the URL as given.
    ours = [r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    assert any("is down" in line for line in ours)
    for text in (repr(stored), repr(firing), *ours):
        assert "hunter2" not in text and "alice" not in text
