"""Shadow replay as an operator meets it: sampled records are re-asked of a reference model, compared and
stored; disagreements land in the review queue, where the reviewer sees both answers; agreement dropping
is a drift event that survives restarts; an outage or a rejected prompt costs nothing and loses nothing;
`watchkeeper shadow replay` backfills on demand. The reference is a real HTTP server on loopback."""

from __future__ import annotations

import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, select

from detectors.drift.bernoulli import BernoulliCUSUM
from monitor.alerts.rules import Drift
from monitor.cli.shadow import shadow
from monitor.config import AlertRuleConfig, Config, ReviewConfig, load_config
from monitor.ingest.steps.sampling import SamplingStep, stratum_of, window_start
from monitor.review.app import ReviewServer
from monitor.review.auth import ReviewerRegistry
from monitor.shadow.agreement import AgreementDrift, state_key
from monitor.shadow.candidates import BOOST_REASON, agreement_rates
from monitor.shadow.worker import ShadowWorker
from monitor.storage.db import make_engine
from monitor.storage.schema import detector_state, drift_events, metadata, records, samples, shadow_comparisons
from tests.helpers import DaemonThread, count, encode, good_record, produce, wait_for, write_config
from tests.helpers import config_for as helpers_config_for
from tests.inference.llama_server import MODEL_ALIAS, llama_server
from tests.inference.llama_server import missing as llama_missing
from tests.inference.scripted_server import Script, scripted_server
from tests.monitor._rows import insert_records, record_row

NOW = datetime.now(UTC).replace(microsecond=0)
PARIS = "Paris is the capital of France."


def reference_answer(prompt: str) -> str:
    """The reference agrees about France and knows nothing else."""
    if "France" in prompt:
        return "The capital of France is Paris."
    return "Bananas are rich in potassium and grow in tropical climates."


def add_records(engine: Engine, *, sampled: list[str], unsampled: list[str] = ()) -> None:  # type: ignore[assignment]
    prompts = {
        "r-france": ("What is the capital of France?", PARIS),
        "r-bread": ("How do I bake bread?", "Mix flour, water, salt and yeast; knead; let it rise; bake."),
        "r-email": ("Write to [EMAIL] about the invoice", "Dear customer, your invoice is attached."),
        "r-old": ("What is the capital of France?", PARIS),
    }
    rows = []
    for i, rid in enumerate([*sampled, *unsampled]):
        prompt, response = prompts[rid]
        rows.append(record_row(rid, NOW - timedelta(minutes=10 + i), model="prod-m", prompt=prompt,
                               response=response))
    insert_records(engine, rows)
    with engine.begin() as conn:
        for rid, row in zip(sampled, rows, strict=False):
            conn.execute(insert(samples).values(
                record_id=rid, reason="uniform", stratum=stratum_of("prod-m", "chat"), model="prod-m",
                app="chat", ts=row["ts"], window_start=window_start(row["ts"], 0, 86_400),
                inclusion_probability=0.01, reviews_wanted=1, sampled_at=NOW))


def config_for(url: str, db_url: str, drift: dict[str, Any] | None = None, **shadow: Any) -> Config:
    settings = {"interval": "20s", "outage_backoff_initial_s": 0.01, "outage_backoff_max_s": 0.05,
                "prompts_per_minute": 6000} | shadow
    return Config.model_validate({
        "database": {"url": db_url},
        "shadow": {"references": [{"url": url, "model": "ref-model", "max_retries": 0, "timeout_s": 5}],
                   **settings},
        "drift": drift or {},
    })


def comparisons(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {row.record_id: row for row in conn.execute(select(shadow_comparisons))}


def run_worker(config: Config, engine: Engine) -> dict[str, Any]:
    worker = ShadowWorker(config, engine)
    try:
        return worker.run()
    finally:
        worker.close()


def test_sampled_records_are_replayed_compared_and_disagreements_go_to_review(engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-france", "r-bread"], unsampled=["r-email"])
    script = Script(answer=reference_answer)
    with scripted_server(script) as url:
        stats = run_worker(config_for(url, db_url), engine)
        again = run_worker(config_for(url, db_url), engine)

    rows = comparisons(engine)
    assert set(rows) == {"r-france", "r-bread"}  # only what the sampler picked
    france, bread = rows["r-france"], rows["r-bread"]
    assert france.reference_model == "ref-model" and france.reference_endpoint == url
    assert france.reference_answer == "The capital of France is Paris."
    assert france.agree is True and france.similarity > 0.8 and 0.5 < france.rouge_l < 1.0
    assert france.length_ratio == pytest.approx(len(PARIS) / len("The capital of France is Paris."))
    assert france.latency_ms > 0 and france.tokens_out == 6
    assert bread.agree is False and bread.similarity < 0.5
    assert any(r.startswith("similarity") for r in bread.metrics["reasons"])
    assert stats[url].compared == 2 and stats[url].disagreed == 1
    assert again[url].compared == 0 and len(script.requests) == 2  # nothing replayed twice

    with engine.connect() as conn:
        boosted = conn.execute(select(samples).where(samples.c.reason == BOOST_REASON)).all()
    assert [(b.record_id, b.inclusion_probability) for b in boosted] == [("r-bread", 1.0)]
    assert agreement_rates(engine, NOW - timedelta(hours=1)) == {("prod-m", "ref-model"): (2, 0.5)}


def test_a_reference_outage_stores_nothing_and_the_prompts_are_replayed_once_it_is_back(
        engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-france", "r-bread", "r-email"])
    down = Script(then="500")
    with scripted_server(down) as url:
        stats = run_worker(config_for(url, db_url), engine)
    assert comparisons(engine) == {}
    assert stats[url].stopped == "outage" and stats[url].left == 3 and stats[url].failed_attempts >= 5

    with scripted_server(Script(answer=reference_answer)) as url:
        stats = run_worker(config_for(url, db_url), engine)
    assert set(comparisons(engine)) == {"r-france", "r-bread", "r-email"}
    assert stats[url].stopped is None


def test_a_reference_that_is_unreachable_at_start_is_skipped_without_error(engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-france"])
    with scripted_server(Script(health=503)) as url:
        assert run_worker(config_for(url, db_url), engine) == {}
    assert comparisons(engine) == {}


def test_a_prompt_the_reference_rejects_is_stored_with_its_error_and_not_retried(
        engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-france"])
    script = Script(steps=["400"])
    with scripted_server(script) as url:
        run_worker(config_for(url, db_url), engine)
        run_worker(config_for(url, db_url), engine)
    row = comparisons(engine)["r-france"]
    assert row.error.startswith("HTTP 400") and row.reference_answer is None and row.agree is None
    assert len(script.requests) == 1


def test_the_daily_cap_holds_across_runs(engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-france", "r-bread", "r-email"])
    script = Script(answer=reference_answer)
    with scripted_server(script) as url:
        first = run_worker(config_for(url, db_url, daily_cap=2), engine)
        second = run_worker(config_for(url, db_url, daily_cap=2), engine)
    assert len(comparisons(engine)) == 2 and len(script.requests) == 2
    assert first[url].compared == 2 and second[url].stopped == "daily cap"


def test_a_reviewer_sees_the_reference_answer_beside_the_production_one(engine: Engine, db_url: str) -> None:
    add_records(engine, sampled=["r-bread"])
    with scripted_server(Script(answer=reference_answer)) as url:
        run_worker(config_for(url, db_url), engine)
    token = ReviewerRegistry(engine).add("ana")
    server = ReviewServer(engine, Config(review=ReviewConfig(queue_size=5)), host="127.0.0.1", port=0)
    server.start()
    try:
        page = httpx.get(f"http://127.0.0.1:{server.port}/", headers={"Authorization": f"Bearer {token}"},
                         timeout=10).text
    finally:
        server.stop()
    assert '<code id="record-id">r-bread</code>' in page
    assert f'<span class="reason">{BOOST_REASON}</span>' in page
    production = re.search(r'<pre class="text" id="response">(.*?)</pre>', page, re.S)
    reference = re.search(r'<pre class="text" id="shadow">(.*?)</pre>', page, re.S)
    assert production is not None and reference is not None
    assert production[1] == "Mix flour, water, salt and yeast; knead; let it rise; bake."
    assert reference[1] == reference_answer("How do I bake bread?")
    assert re.search(r"Shadow answer <small>ref-model · similarity 0\.\d\d</small>", page)


def add_traffic(engine: Engine, prefix: str, pairs: list[tuple[str, str]], *, minutes_ago: float) -> None:
    """Sampled records of ``prod-m`` with these (prompt, production answer) pairs, a second apart."""
    rows = [record_row(f"{prefix}-{i}", NOW - timedelta(minutes=minutes_ago, seconds=i), model="prod-m",
                       prompt=prompt, response=response) for i, (prompt, response) in enumerate(pairs)]
    insert_records(engine, rows)
    with engine.begin() as conn:
        conn.execute(insert(samples), [
            {"record_id": row["id"], "reason": "uniform", "stratum": stratum_of("prod-m", "chat"),
             "model": "prod-m", "app": "chat", "ts": row["ts"], "window_start": window_start(row["ts"], 0, 86_400),
             "inclusion_probability": 0.5, "reviews_wanted": 1, "sampled_at": NOW} for row in rows])


def store_comparisons(engine: Engine, agreement: Any, *, model: str = "prod-m", start: int = 0) -> list[str]:
    """Records of ``model`` compared with ``ref-model``, agreeing as ``agreement`` says; returns their ids."""
    ids = [f"{model}-{start + i}" for i in range(len(agreement))]
    insert_records(engine, [record_row(rid, NOW - timedelta(minutes=5), model=model) for rid in ids])
    with engine.begin() as conn:
        for rid, agree in zip(ids, agreement, strict=True):  # one by one: ids in arrival order
            conn.execute(insert(shadow_comparisons).values(
                record_id=rid, reference_model="ref-model", reference_answer="…", agree=bool(agree),
                created_at=NOW))
    return ids


def test_agreement_dropping_from_90_to_60_percent_is_one_drift_event_and_steady_agreement_none(
        engine: Engine) -> None:
    rng = np.random.default_rng(7)
    store_comparisons(engine, rng.random(2000) < 0.9, model="prod-steady")
    store_comparisons(engine, rng.random(600) < 0.9)
    after = store_comparisons(engine, rng.random(400) < 0.6, start=600)

    events = AgreementDrift(engine, "ref-model", warmup=500, page=256).update()
    assert [(e.stream, e.signal, e.detector, e.direction) for e in events] == [
        ("model=prod-m,app=*", "shadow_agreement", "bernoulli", "down")]
    (event,) = events
    assert event.record_id in after[:150]  # caught soon after the drop, not before it
    assert 0.85 < event.before["rate"] < 0.95 and event.after["rate"] < 0.75
    with engine.connect() as conn:
        (row,) = conn.execute(select(drift_events)).all()
    assert (row.stream, row.signal, row.detector, row.record_id) == (
        "model=prod-m,app=*", "shadow_agreement", "bernoulli", event.record_id)
    assert row.before["n"] == 500 and row.after["rate"] == event.after["rate"]
    assert row.details["reference_model"] == "ref-model" and row.details["direction"] == "down"
    assert AgreementDrift(engine, "ref-model", warmup=500).update() == []  # nothing is counted twice


def test_the_agreement_charts_continue_where_they_stopped_after_a_restart(engine: Engine) -> None:
    rng = np.random.default_rng(11)
    agreement = np.concatenate([rng.random(600) < 0.9, rng.random(400) < 0.6])
    found = []
    for start in range(0, 1000, 100):  # ten scheduled runs, each on a freshly started daemon
        store_comparisons(engine, agreement[start:start + 100], start=start)
        found += AgreementDrift(engine, "ref-model", warmup=500).update()

    (change,) = BernoulliCUSUM(arl0=1e6, warmup=500).update_many(agreement)  # a chart that never stopped
    assert [e.record_id for e in found] == [f"prod-m-{change.index}"]
    assert (found[0].before, found[0].after) == (change.before, change.after)
    with engine.connect() as conn:
        assert conn.scalars(select(detector_state.c.key)).all() == ["shadow-agreement/ref-model"]
    assert state_key("ref-model") == "shadow-agreement/ref-model"


def test_the_worker_turns_a_production_regression_into_an_agreement_drift_event(
        engine: Engine, db_url: str) -> None:
    # An hour ago 90 % of the production answers agreed with the reference.
    add_traffic(engine, "before", [("What is the capital of France?", PARIS)] * 90
                + [("How do I bake bread?", "Mix flour, water, salt and yeast.")] * 10, minutes_ago=60)
    drift = {"warmup": 100}
    with scripted_server(Script(answer=reference_answer)) as url:
        first = run_worker(config_for(url, db_url, drift=drift), engine)
        # Then production starts refusing plain questions; the daemon restarted in between.
        add_traffic(engine, "after", [("What is the capital of France?", "I'm sorry, I can't help with that.")]
                    * 40, minutes_ago=5)
        second = run_worker(config_for(url, db_url, drift=drift), engine)

    assert (first[url].compared, first[url].agreement_drops) == (100, 0)
    assert (second[url].compared, second[url].agreement_drops) == (40, 1)
    with engine.connect() as conn:
        (event,) = conn.execute(select(drift_events)).all()
        assert (event.stream, event.signal) == ("model=prod-m,app=*", "shadow_agreement")
        assert event.record_id.startswith("after-") and event.before["n"] == 100
        # The drift alert rule picks it up for the model.
        rule = Drift("drift", AlertRuleConfig(kind="drift", scope="model", window="15m"))
        firing = rule.evaluate(conn, datetime.now(UTC))
    assert list(firing) == ["model=prod-m"] and "on shadow_agreement" in firing["model=prod-m"].summary


def test_replay_command_backfills_past_records_from_the_environment_settings(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    add_records(engine, sampled=[], unsampled=["r-france", "r-bread", "r-email"])
    # A record from last month is outside --since.
    insert_records(engine, [record_row("r-old", NOW - timedelta(days=30), model="prod-m",
                                       prompt="What is the capital of France?", response=PARIS)])
    script = Script(answer=reference_answer)
    with scripted_server(script) as url:
        env = {"WATCHKEEPER_DATABASE_URL": db_url, "WATCHKEEPER_REFERENCE_URL": url,
               "WATCHKEEPER_REFERENCE_MODEL": "ref-model"}
        assert load_config(env=env).shadow.references[0].url == url  # the two variables turn replay on
        runner = CliRunner()
        result = runner.invoke(shadow, ["replay", "--since", "1d", "--limit", "2"], env=env)
        assert result.exit_code == 0, result.output
        # Oldest first, so that a later run with a limit resumes where this one stopped.
        assert "ref-model: 2 compared, 2 disagree, 0 rejected, 0 left" in result.output
        result = runner.invoke(shadow, ["replay", "--since", "1d", "--limit", "10"], env=env)
        assert "ref-model: 1 compared, 0 disagree" in result.output
        status = runner.invoke(shadow, ["status", "--since", "1h"], env=env)
    assert set(comparisons(engine)) == {"r-france", "r-bread", "r-email"}
    assert "prod-m vs ref-model: " in status.output and "over 3 comparisons" in status.output


def test_replay_command_fails_clearly_when_the_reference_is_down(db_url: str, engine: Engine) -> None:
    env = {"WATCHKEEPER_DATABASE_URL": db_url, "WATCHKEEPER_REFERENCE_URL": "http://127.0.0.1:9",
           "WATCHKEEPER_REFERENCE_MODEL": "ref-model"}
    result = CliRunner().invoke(shadow, ["replay"], env=env)
    assert result.exit_code == 1
    assert "is not usable: reference unreachable" in result.output


@pytest.mark.slow
@pytest.mark.skipif(llama_missing() is not None, reason=f"CPU REFERENCE MODEL UNAVAILABLE: {llama_missing()}")
def test_replay_against_a_real_small_model_on_the_cpu(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    add_records(engine, sampled=["r-france", "r-bread"])
    with llama_server() as url:
        config = Config.model_validate({
            "database": {"url": sqlite_url},
            "shadow": {"references": [{"url": url, "model": MODEL_ALIAS, "max_tokens": 48}]},
        })
        stats = run_worker(config, engine)
    rows = comparisons(engine)
    engine.dispose()
    assert stats[url].compared == 2
    france, bread = rows["r-france"], rows["r-bread"]
    assert "Paris" in france.reference_answer
    assert france.agree is True and france.similarity > 0.8
    assert bread.reference_answer.strip() and 0 < bread.tokens_out <= 48 and bread.tokens_in > 5
    assert -1.0 <= bread.similarity <= 1.0 and 0.0 <= bread.rouge_l <= 1.0 and bread.length_ratio > 0


def _daemon_config(db_url: str, bootstrap: str, topic: str, tmp_path: Path, url: str) -> Config:
    path = write_config(tmp_path / "monitor.toml", db_url=db_url, bootstrap=bootstrap, topic=topic, extra=f"""
store_text = "full"

[sampling]
uniform_rate = 1.0
uniform_cap = 100000

[shadow]
interval = "60s"
max_concurrent = 2
prompts_per_minute = 60000
queue_size = 1000

[[shadow.references]]
url = "{url}"
model = "ref-model"
max_retries = 0
""")
    return helpers_config_for(path)


def _now_records(n: int, start: int = 0) -> list[bytes]:
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    return [encode(good_record(i, ts=now_ms - i)) for i in range(start, start + n)]


@pytest.mark.slow
def test_records_on_kafka_are_sampled_replayed_and_compared(
        migrated_db_url: str, kafka_broker: str, topic: str, tmp_path: Path) -> None:
    produce(kafka_broker, topic, _now_records(20))
    with scripted_server(Script(answer=lambda prompt: "Mix flour, water, salt and yeast, then wait.")) as url:
        config = _daemon_config(migrated_db_url, kafka_broker, topic, tmp_path, url)
        # services=False: the daemon's own scheduled replay would race the worker run below on a busy machine
        with DaemonThread(config, steps=[SamplingStep(config.sampling)], services=False):
            wait_for(lambda: count(migrated_db_url, samples) >= 20, 60, "20 records sampled and stored")
        engine = make_engine(migrated_db_url)
        try:
            stats = run_worker(config, engine)
            rows = comparisons(engine)
        finally:
            engine.dispose()
    assert stats[url].compared == 20 and len(rows) == 20
    row = rows["req-000003"]
    assert row.reference_answer == "Mix flour, water, salt and yeast, then wait."
    assert row.agree is True and row.similarity > 0.8 and row.rouge_l > 0.7


@pytest.mark.slow
def test_a_hung_reference_does_not_hold_up_ingest(
        migrated_db_url: str, kafka_broker: str, topic: str, tmp_path: Path) -> None:
    produce(kafka_broker, topic, _now_records(10))
    script = Script(then="hang")
    with scripted_server(script) as url:
        config = _daemon_config(migrated_db_url, kafka_broker, topic, tmp_path, url)
        engine = make_engine(migrated_db_url)
        worker = ShadowWorker(config, engine)
        try:
            with DaemonThread(config, steps=[SamplingStep(config.sampling)]):
                wait_for(lambda: count(migrated_db_url, samples) >= 10, 60, "the first records stored")
                replay = threading.Thread(target=worker.run)
                replay.start()
                wait_for(lambda: len(script.requests) >= 2, 30, "the replayer to be stuck on the reference")
                produce(kafka_broker, topic, _now_records(2000, start=10))
                wait_for(lambda: count(migrated_db_url, records) >= 2010, 60, "ingest to go on meanwhile")
                assert replay.is_alive() and comparisons(engine) == {}  # replay still stuck, ingest done
            script.then = "ok"
            script.release.set()
            replay.join(60)
            assert not replay.is_alive()
            assert len(comparisons(engine)) >= 2  # the stuck prompts were answered once released
        finally:
            script.release.set()
            worker.close()
            engine.dispose()
