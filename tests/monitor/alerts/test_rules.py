"""Rules: each says which scopes fire, with the numbers that prove it — and stays quiet without evidence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, text

from monitor.alerts.rules import (
    RULES,
    Accuracy,
    ConsumerLag,
    DeadLetterRate,
    Drift,
    ErrorRate,
    InjectionRate,
    LatencyP95,
    NoTraffic,
    PiiInResponse,
    RefusalRate,
    SecretInResponse,
    ShadowAgreement,
    ToxicityRate,
    build_rules,
)
from monitor.config import AlertRuleConfig, ConfigError, ReviewConfig, SamplingConfig, load_config
from monitor.ingest.batch import Batch
from monitor.ingest.steps.aggregate import MinuteCounts
from monitor.ingest.steps.sampling import SamplingStep
from monitor.review.auth import ReviewerRegistry
from monitor.review.estimates import weighted_proportion
from monitor.review.queue import ReviewQueue
from monitor.storage.schema import (
    consumer_progress,
    dead_letters,
    detections,
    drift_events,
    shadow_comparisons,
    stream_minutes,
)
from monitor.storage.store import Store, text_policy
from tests.monitor._rows import insert_records, record_row
from tests.monitor.alerts.conftest import NOW, add_leak, add_records, count_records, make_config
from tests.monitor.review.traffic import DAY0, Stream, create_schema, generate, store


def cfg(kind: str, **kw) -> AlertRuleConfig:  # type: ignore[no-untyped-def]
    return AlertRuleConfig(kind=kind, **kw)


def test_a_rate_rule_needs_enough_samples_and_a_rate_above_threshold() -> None:
    rule = ToxicityRate("toxicity_rate", cfg("toxicity_rate", scope="model", threshold=0.05, min_samples=50))
    fetched = {"current": {"model=m1": (40, 30), "model=m2": (200, 20), "model=m3": (200, 5)}, "baseline": {}}
    firing = rule.decide(fetched, NOW)
    assert list(firing) == ["model=m2"]  # m1: too few records; m3: 2.5 % is under 5 %
    ev = firing["model=m2"]
    assert (ev.value, ev.sample_size, ev.after) == (0.1, 200, {"rate": 0.1, "n": 200, "hits": 20})
    assert "10.0%" in ev.summary and "20 of 200" in ev.summary


def test_a_spike_rule_compares_with_the_baseline_before_the_window() -> None:
    rule = RefusalRate("refusal_rate", cfg("refusal_rate", threshold=0.05, baseline="1h", factor=2.0,
                                           min_samples=100))
    steady = {"current": {"global": (1000, 120)}, "baseline": {"global": (6000, 600)}}  # 12 % vs 10 %
    spike = {"current": {"global": (1000, 250)}, "baseline": {"global": (6000, 600)}}   # 25 % vs 10 %
    assert rule.decide(steady, NOW) == {}
    ev = rule.decide(spike, NOW)["global"]
    assert ev.before == {"rate": 0.1, "n": 6000} and ev.after["rate"] == 0.25


def test_rate_rules_count_records_in_the_database(engine) -> None:  # type: ignore[no-untyped-def]
    add_records(engine, 90, status="ok", model="m1")
    bad = add_records(engine, 10, status="error", model="m1")
    add_records(engine, 100, status="ok", model="m2")
    add_records(engine, 50, status="error", model="m1", at=NOW - timedelta(hours=2))  # outside the window
    rule = ErrorRate("error_rate", cfg("error_rate", scope="model", threshold=0.05, min_samples=20))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["model=m1"]
    assert firing["model=m1"].sample_size == 100 and firing["model=m1"].value == pytest.approx(0.1)
    assert set(firing["model=m1"].examples) <= set(bad) and len(firing["model=m1"].examples) == 3
    assert "status = 'error'" in firing["model=m1"].look and "model = 'm1'" in firing["model=m1"].look


def judged_prompts(engine, model: str, n: int, attacks: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``n`` records of ``model`` whose prompts the injection detector judged, ``attacks`` of them flagged: the
    detections rows and the per-minute counters, as the pipeline writes them."""
    rows = [record_row(f"{model}-{i}", NOW - timedelta(seconds=i), model=model) for i in range(n)]
    insert_records(engine, rows)
    with engine.begin() as conn:
        conn.execute(insert(detections), [{"record_id": r["id"], "detector": "prompt_injection", "score": 0.9,
                                           "flagged": True, "details": {"signals": ["override"]}}
                                          for r in rows[:attacks]])
    counts = MinuteCounts()
    for i, r in enumerate(rows):
        counts.add(r["ts"], model, None, "ok", None, toxicity=None, refusal=None, injection=i < attacks)
    Store(engine, text_policy("none")).write(Batch(increments={stream_minutes: counts.rows(NOW)}))
    return [r["id"] for r in rows[:attacks]]


def test_injection_rate_fires_for_the_model_whose_prompts_are_attacks_and_names_them(engine) -> None:  # type: ignore[no-untyped-def]
    attacks = judged_prompts(engine, "m1", 100, 10)
    judged_prompts(engine, "m2", 100, 1)  # 1 %: under the threshold
    judged_prompts(engine, "m3", 20, 10)  # too few judged prompts to say
    rule = InjectionRate("injection_rate", cfg("injection_rate", scope="model", threshold=0.02, min_samples=50))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["model=m1"]
    ev = firing["model=m1"]
    assert (ev.sample_size, ev.value) == (100, pytest.approx(0.1)) and "10 of 100" in ev.summary
    assert ev.examples and set(ev.examples) <= set(attacks)
    assert "prompt_injection" in ev.look
    with engine.connect() as conn:  # the look-up query the message shows runs and finds the attacks
        found = conn.execute(text(ev.look.replace("LIMIT 50", "LIMIT 500"))).scalars().all()
    assert sorted(found) == sorted(attacks)


def test_latency_p95_regression_against_the_previous_hour(engine) -> None:  # type: ignore[no-untyped-def]
    add_records(engine, 200, latency_ms=100.0, at=NOW - timedelta(minutes=20), spread=timedelta(minutes=30))
    add_records(engine, 100, latency_ms=900.0, spread=timedelta(minutes=5))
    rule = LatencyP95("latency_p95", cfg("latency_p95", window="10m", baseline="1h", factor=1.5, min_samples=50))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    ev = firing["global"]
    assert ev.before == {"p95_ms": 100.0, "n": 200} and ev.after == {"p95_ms": 900.0, "n": 100}


def test_latency_without_a_baseline_only_fires_on_an_absolute_floor() -> None:
    relative = LatencyP95("l", cfg("latency_p95", baseline="1h", factor=1.5, min_samples=10))
    assert relative.decide({"current": {"global": (100, 5000.0)}, "baseline": {}}, NOW) == {}
    floor = LatencyP95("l", cfg("latency_p95", baseline="1h", factor=1.5, threshold=2000, min_samples=10))
    assert list(floor.decide({"current": {"global": (100, 5000.0)}, "baseline": {}}, NOW)) == ["global"]


def test_a_secret_in_the_response_fires_but_one_in_the_prompt_does_not(engine) -> None:  # type: ignore[no-untyped-def]
    add_leak(engine, field="prompt", model="m2")  # the user pasted a key: not the model leaking it
    leaked = add_leak(engine, field="response", model="m1")
    add_leak(engine, detector="pii", field="response", model="m1")
    rule = SecretInResponse("secret_in_response", cfg("secret_in_response", scope="model", window="15m"))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["model=m1"]
    assert firing["model=m1"].examples == (leaked,) and firing["model=m1"].value == 1
    pii = PiiInResponse("pii_in_response", cfg("pii_in_response", scope="model"))
    with engine.connect() as conn:
        assert list(pii.evaluate(conn, NOW)) == ["model=m1"]


def test_no_traffic_fires_only_for_a_stream_that_used_to_have_traffic(engine) -> None:  # type: ignore[no-untyped-def]
    add_records(engine, 50, model="busy", at=NOW - timedelta(minutes=10), spread=timedelta(minutes=30))
    add_records(engine, 2, model="rare", at=NOW - timedelta(minutes=10))
    add_records(engine, 50, model="live", spread=timedelta(minutes=30))
    rule = NoTraffic("no_traffic", cfg("no_traffic", scope="model", window="5m", min_samples=10, baseline="1h"))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["model=busy"]
    assert firing["model=busy"].before == {"records": 50}


def test_no_traffic_stays_quiet_while_the_daemon_catches_up_a_backlog(engine) -> None:  # type: ignore[no-untyped-def]
    """After an outage the newest stored record is old by event time, but the records are waiting in Kafka:
    that is catching up (the lag rule's business), not "nothing arrives". Once caught up, the rule fires."""
    add_records(engine, 50, model="busy", at=NOW - timedelta(minutes=10), spread=timedelta(minutes=30))
    rule = NoTraffic("no_traffic", cfg("no_traffic", scope="model", window="5m", min_samples=10, baseline="1h"))
    with engine.begin() as conn:
        conn.execute(insert(consumer_progress), [
            {"group_id": "watchkeeper", "topic": "t", "partition": 0, "committed": 100, "highwater": 5000,
             "updated_at": NOW}])
    with engine.connect() as conn:
        assert rule.evaluate(conn, NOW) == {}
    with engine.begin() as conn:
        conn.execute(consumer_progress.update().values(committed=5000))
    with engine.connect() as conn:
        assert list(rule.evaluate(conn, NOW)) == ["model=busy"]


def test_a_replay_of_old_records_with_a_few_malformed_ones_is_not_a_full_dead_letter_rate(engine) -> None:  # type: ignore[no-untyped-def]
    """Last week's logs replayed through the topic: 200 records stored in the last minutes, dated a week ago,
    and 4 malformed messages. The rate is 4 of 204 — not 4 of 4, as when accepted records were counted by
    event time."""
    week_ago = NOW - timedelta(days=7)
    rows = [record_row(f"replayed-{i}", week_ago + timedelta(seconds=i), ingested_at=NOW - timedelta(seconds=i))
            for i in range(200)]
    insert_records(engine, rows)
    count_records(engine, rows)
    with engine.begin() as conn:
        conn.execute(insert(dead_letters), [
            {"topic": "llm-logs", "partition": 0, "offset": 10_000 + i, "raw": b"{", "reason": "not JSON",
             "received_at": NOW - timedelta(seconds=i)} for i in range(4)])
    rule = DeadLetterRate("dead_letter_rate", cfg("dead_letter_rate", window="5m", threshold=0.01, min_samples=20))
    with engine.connect() as conn:
        assert rule.fetch(conn, NOW) == (4, 200)
        assert rule.evaluate(conn, NOW)["global"].value == pytest.approx(4 / 204)


def test_consumer_stuck_or_far_behind(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(insert(consumer_progress), [
            {"group_id": "watchkeeper", "topic": "t", "partition": 0, "committed": 100, "highwater": 150,
             "updated_at": NOW - timedelta(minutes=5)},
            {"group_id": "watchkeeper", "topic": "t", "partition": 1, "committed": 10, "highwater": 10,
             "updated_at": NOW},
            {"group_id": "old-deployment", "topic": "t", "partition": 0, "committed": 0, "highwater": 10**6,
             "updated_at": NOW - timedelta(days=30)},
        ])
    stuck = ConsumerLag("consumer_lag", cfg("consumer_lag", window="2m", threshold=100_000))
    with engine.connect() as conn:
        ev = stuck.evaluate(conn, NOW)["global"]
    assert ev.value == 50 and "no progress for 5m" in ev.summary  # the old group is not ours
    fresh = [("t", 0, 100, 150, NOW)]
    assert stuck.decide(fresh, NOW) == {}  # a little behind but moving
    far = stuck.decide([("t", 0, 0, 200_000, NOW)], NOW)
    assert list(far) == ["global"]  # far behind
    assert "catching up" in far["global"].summary  # behind but moving, unlike a stuck consumer


def test_drift_events_map_to_scopes(engine) -> None:  # type: ignore[no-untyped-def]
    with engine.begin() as conn:
        conn.execute(insert(drift_events), [
            {"stream": "model=m1,app=*", "signal": "response_chars", "detector": "cusum", "detected_at": NOW,
             "created_at": NOW - timedelta(minutes=1), "record_id": "r-drift",
             "before": {"mean": 800.0, "n": 5000}, "after": {"mean": 200.0, "n": 300}},
            {"stream": "*", "signal": "latency_ms", "detector": "cusum", "detected_at": NOW,
             "created_at": NOW - timedelta(hours=3), "record_id": None, "before": {}, "after": {}},  # too old
        ])
    rule = Drift("drift", cfg("drift", scope="model", window="15m"))
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
    assert list(firing) == ["model=m1"]
    assert firing["model=m1"].before == {"mean": 800.0, "n": 5000.0}
    assert firing["model=m1"].examples == ("r-drift",)


def test_a_templated_prompt_one_character_longer_is_recorded_but_does_not_page(engine) -> None:  # type: ignore[no-untyped-def]
    """A health-check app sends one fixed prompt (45 characters, no spread at all) and then one a character
    longer: the detector rightly records the change, but +2% of a prompt's length is not news for the SRE on
    call. The default drift rule pages from a 5% change of a continuous signal; rates are the detector's call."""
    with engine.begin() as conn:
        conn.execute(insert(drift_events), [
            {"stream": "model=probe", "signal": "prompt_chars", "detector": "bucket_cusum", "detected_at": NOW,
             "created_at": NOW - timedelta(minutes=1), "record_id": None,
             "before": {"mean": 45.0, "log_std": 1e-9, "n": 500}, "after": {"mean": 46.0, "n": 40}},
            {"stream": "model=m2", "signal": "toxic", "detector": "bucket_rate", "detected_at": NOW,
             "created_at": NOW - timedelta(minutes=2), "record_id": None,
             "before": {"rate": 0.010, "n": 5000}, "after": {"rate": 0.0104, "n": 900}},
        ])
    drift = next(r for r in build_rules(load_config(None, env={}).alerts) if r.config.kind == "drift")
    with engine.connect() as conn:
        assert list(drift.evaluate(conn, NOW)) == ["model=m2"]
    with engine.begin() as conn:  # the same probe's answers then get 30% shorter: that pages
        conn.execute(insert(drift_events).values(
            stream="model=probe", signal="response_chars", detector="bucket_cusum", detected_at=NOW,
            created_at=NOW, record_id=None, before={"mean": 800.0, "n": 5000}, after={"mean": 560.0, "n": 80}))
    with engine.connect() as conn:
        assert sorted(drift.evaluate(conn, NOW)) == ["model=m2", "model=probe"]


def test_config_merges_rule_overrides_over_defaults_and_rejects_unknown_kinds(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "monitor.toml"
    path.write_text('[alerts.rules.toxicity_rate]\nthreshold = 0.2\n[alerts.rules.drift]\nenabled = false\n')
    config = load_config(path, env={})
    tox = config.alerts.rules["toxicity_rate"]
    assert (tox.threshold, tox.min_samples, tox.severity) == (0.2, 50, "warning")
    assert "drift" not in {r.name for r in build_rules(config.alerts)}
    path.write_text('[alerts.rules.accuracy]\nkind = "accuracy_wilson"\n')
    with pytest.raises(ConfigError, match="unknown kind 'accuracy_wilson'"):
        load_config(path, env={})


def test_slack_from_the_environment_alone() -> None:
    config = load_config(None, env={"SLACK_WEBHOOK_URL": "https://hooks.slack.test/services/SECRET"})
    assert config.alerts.slack_webhook_url is not None
    assert "SECRET" not in repr(config.alerts)
    with pytest.raises(ConfigError, match="needs a channel"):
        load_config(None, env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert make_config(slack_bot_token="xoxb-1", slack_channel="#oncall").alerts.slack_channel == "#oncall"


def labelled(correct: int, n: int):  # type: ignore[no-untyped-def]
    """The estimate from ``n`` equally weighted labels of which ``correct`` say correct."""
    return weighted_proportion([1.0] * correct + [0.0] * (n - correct), [1.0] * n)


def test_accuracy_fires_when_even_the_upper_bound_misses_the_target() -> None:
    rule = Accuracy("accuracy", cfg("accuracy", scope="model", window="1d", threshold=0.9, min_samples=30))
    fetched = {"current": {"model=m1": labelled(160, 200),   # 80 %, interval about 74-85 %: surely below 90 %
                           "model=m2": labelled(172, 200),   # 86 %, interval up to about 90.5 %: not sure yet
                           "model=m3": labelled(10, 20)},    # 50 % but only 20 labels
               "previous": {}}
    firing = rule.decide(fetched, NOW)
    assert list(firing) == ["model=m1"]
    ev = firing["model=m1"]
    assert (ev.value, ev.threshold, ev.sample_size) == (0.8, 0.9, 200) and ev.after["high"] < 0.9
    assert ev.summary.startswith("accuracy 80.0% (95% CI 73.9%–85.0%, 200 labelled) over the last 1d")
    assert "below the target 90.0%" in ev.summary and "too few labels to compare" in ev.summary
    assert "review_accuracy_daily" in ev.look and "model = 'm1'" in ev.look


def test_accuracy_fires_on_a_significant_drop_from_the_previous_window_but_not_on_noise() -> None:
    rule = Accuracy("accuracy", cfg("accuracy", scope="model", window="1d", min_samples=30))  # no target
    fetched = {"current": {"model=m1": labelled(240, 300), "model=m2": labelled(44, 50),
                           "model=m3": labelled(200, 300)},
               "previous": {"model=m1": labelled(270, 300), "model=m2": labelled(45, 50),
                            "model=m3": labelled(15, 20)}}  # m3 dropped, but its last day had too few labels
    firing = rule.decide(fetched, NOW)
    assert list(firing) == ["model=m1"]  # 90 % -> 80 % on 300 labels; m2's 90 % -> 88 % on 50 is noise
    ev = firing["model=m1"]
    assert ev.before is not None and ev.before["accuracy"] == 0.9 and ev.threshold == 0.9
    assert "significantly lower than the previous 1d; previous 1d: 90.0%" in ev.summary


def test_accuracy_alert_from_reviewers_labels_in_the_database(engine) -> None:  # type: ignore[no-untyped-def]
    # Two days of traffic for two models, sampled by the real sampler and stored by the real store; one
    # reviewer labels every uniform sample with the truth. On the second day m1 goes from 10 % to 30 % wrong.
    create_schema(engine)
    day1, truth1 = generate([Stream("m1", "chat", 600, 0.1), Stream("m2", "chat", 600, 0.1)], seed=1)
    day2, truth2 = generate([Stream("m1", "chat", 600, 0.3), Stream("m2", "chat", 600, 0.1)], seed=2,
                            start=DAY0 + timedelta(days=1))
    truth = {**truth1, **truth2}
    sampler = SamplingStep(SamplingConfig(uniform_rate=0.3, uniform_cap=None, risk_rates={},
                                          double_review_share=0.0))
    store(engine, sampler, day1 + day2)
    registry = ReviewerRegistry(engine)
    registry.add("ana")
    (ana,) = registry.list()
    queue = ReviewQueue(engine, ReviewConfig(queue_size=500))
    done = 0
    while queue.fill(ana.id):
        for item in queue.pending(ana.id):
            done += queue.label(ana.id, item.sample_id, "correct" if truth[item.record_id] else "incorrect")
    assert done > 500

    rule = Accuracy("accuracy", cfg("accuracy", scope="model", window="1d", threshold=0.85, min_samples=50))
    now = DAY0 + timedelta(days=2)
    with engine.connect() as conn:
        firing = rule.evaluate(conn, now)
        assert list(firing) == ["model=m1"]
        ev = firing["model=m1"]
        true_accuracy = sum(v for k, v in truth2.items() if "-m1-" in k) / sum("-m1-" in k for k in truth2)
        assert ev.after["low"] <= true_accuracy <= ev.after["high"] < 0.85
        assert ev.before is not None and ev.before["accuracy"] > 0.85
        assert "below the target 85.0% and significantly lower than the previous 1d" in ev.summary
        assert len(ev.examples) == 3 and not any(truth[i] for i in ev.examples)  # records judged wrong
        # The hint runs as written and shows both days of m1 in the analysts' view.
        days = conn.execute(text(ev.look.split(";")[0])).all()
    assert len(days) == 2 and {row.model for row in days} == {"m1"}


# --- agreement with the shadow reference -----------------------------------------------------------------

def test_shadow_agreement_fires_below_the_floor_or_on_a_significant_drop_but_not_on_noise() -> None:
    rule = ShadowAgreement("shadow_agreement", cfg("shadow_agreement", scope="model", window="1h",
                                                   baseline="1d", threshold=0.5, min_samples=50))
    fetched = {
        "current": {("model=m1", "ref"): (200, 150),   # 75 % now ...
                    ("model=m2", "ref"): (200, 176),   # 88 % vs 90 %: noise
                    ("model=m3", "ref"): (200, 80),    # 40 %: under the floor, no baseline yet
                    ("model=m4", "ref"): (30, 3)},     # 10 % on 30 comparisons: too few to say
        "baseline": {("model=m1", "ref"): (2000, 1800),  # ... after 90 % all day
                     ("model=m2", "ref"): (2000, 1800)},
        "disagreed": {("model=m1", "ref"): ["r9", "r8", "r7"]},
    }
    firing = rule.decide(fetched, NOW)
    assert sorted(firing) == ["model=m1", "model=m3"]
    m1 = firing["model=m1"]
    assert m1.summary == ("agreement with reference ref 75.0% over the last 1h (150 of 200 comparisons): "
                          "significantly lower than the previous 1d; previous 1d: 90.0% (1800 of 2000)")
    assert (m1.value, m1.threshold, m1.sample_size) == (0.75, 0.9, 200)
    assert m1.before["agreement"] == 0.9 and m1.after["agreed"] == 150 and m1.examples == ("r9", "r8", "r7")
    assert "s.reference_model = 'ref' AND NOT s.agree" in m1.look and "r.model = 'm1'" in m1.look
    assert "watchkeeper shadow status --since 1h" in m1.look
    m3 = firing["model=m3"]
    assert m3.summary.endswith("below 50.0%; previous 1d: too few comparisons to compare")
    assert (m3.threshold, m3.before) == (0.5, None)


def test_shadow_agreement_reports_the_reference_a_model_agrees_with_least() -> None:
    rule = ShadowAgreement("shadow_agreement", cfg("shadow_agreement", scope="model", threshold=0.7,
                                                   min_samples=50))
    fetched = {"current": {("model=m1", "big-ref"): (100, 65), ("model=m1", "small-ref"): (100, 40)},
               "baseline": {}, "disagreed": {}}
    ev = rule.decide(fetched, NOW)["model=m1"]
    assert ev.value == 0.4 and "reference small-ref 40.0%" in ev.summary


def add_comparisons(engine, model: str, agreement: list[bool], *, at, spread: timedelta,  # type: ignore[no-untyped-def]
                    reference: str = "ref-model") -> list[str]:
    """Records of ``model`` and their comparisons with ``reference``, made over ``spread`` ending at ``at``
    (the first the newest); returns the ids of the records whose answers disagreed, newest first."""
    n = len(agreement)
    times = [at - spread * (i / n) for i in range(n)]
    ids = [f"{model}-{reference}-{at:%H%M}-{i}" for i in range(n)]
    insert_records(engine, [record_row(rid, ts, model=model) for rid, ts in zip(ids, times, strict=True)])
    with engine.begin() as conn:
        conn.execute(insert(shadow_comparisons), [
            {"record_id": rid, "reference_model": reference, "reference_answer": "…", "agree": agree,
             "similarity": 0.9 if agree else 0.2, "created_at": ts}
            for rid, ts, agree in zip(ids, times, agreement, strict=True)])
    return [rid for rid, agree in zip(ids, agreement, strict=True) if not agree]


def test_shadow_agreement_dropping_for_one_model_in_the_database(engine) -> None:  # type: ignore[no-untyped-def]
    # A day of 90 % agreement for both models; in the last hour m1 falls to 60 % while m2 holds.
    day = [i % 10 != 0 for i in range(500)]
    add_comparisons(engine, "m1", day, at=NOW - timedelta(hours=1, minutes=1), spread=timedelta(hours=20))
    add_comparisons(engine, "m2", day, at=NOW - timedelta(hours=1, minutes=1), spread=timedelta(hours=20))
    m1_wrong = add_comparisons(engine, "m1", [i % 5 >= 2 for i in range(100)], at=NOW - timedelta(seconds=1),
                               spread=timedelta(minutes=50))
    add_comparisons(engine, "m2", [i % 10 != 0 for i in range(100)], at=NOW - timedelta(seconds=1),
                    spread=timedelta(minutes=50))
    config = make_config()
    (rule,) = [r for r in build_rules(config.alerts) if r.kind == "shadow_agreement"]  # on by default
    with engine.connect() as conn:
        firing = rule.evaluate(conn, NOW)
        assert list(firing) == ["model=m1"]
        ev = firing["model=m1"]
        assert (ev.value, ev.before["agreement"], ev.sample_size) == (0.6, 0.9, 100)
        assert "reference ref-model 60.0% over the last 1h (60 of 100 comparisons)" in ev.summary
        assert "significantly lower than the previous 1d; previous 1d: 90.0% (450 of 500)" in ev.summary
        assert ev.examples == tuple(m1_wrong[:3])  # the newest disagreements
        # The hint runs as written and lists this hour's disagreements of m1, newest first.
        listed = conn.execute(text(ev.look.split(";")[0])).all()
    assert [row.record_id for row in listed] == m1_wrong


def test_shadow_agreement_is_silent_without_shadow_replay(engine) -> None:  # type: ignore[no-untyped-def]
    add_records(engine, 500, model="m1", spread=timedelta(minutes=30))
    (rule,) = [r for r in build_rules(make_config().alerts) if r.kind == "shadow_agreement"]
    with engine.connect() as conn:
        assert rule.evaluate(conn, NOW) == {}


def test_every_kind_a_file_may_name_has_exactly_one_rule_class() -> None:
    """The configuration accepts the kinds in RULE_KINDS; the registry must implement each of them."""
    from monitor.config import RULE_KINDS

    assert sorted(RULES) == sorted(RULE_KINDS)
    assert all(cls.kind == kind for kind, cls in RULES.items())
