"""Scheduled Evidently drift reports: a model whose latency and answers change overnight gets a report that
says so, drift events for the changed columns, and `watchkeeper report` shows it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from monitor.cli.report import report as report_command
from monitor.config import Config, ReportsConfig
from monitor.jobs.reports import build_jobs, format_summary, latest_reports, run_drift_reports
from monitor.jobs.scheduler import Scheduler
from monitor.storage.db import make_engine, upgrade
from monitor.storage.schema import drift_events, metadata, reports
from tests.monitor._rows import insert_records, record_row

MIDNIGHT = datetime(2026, 5, 2, tzinfo=UTC)
DAY = timedelta(days=1)
SMALL = {"min_rows": 50, "max_rows": 1000}
CALM = "Sure. Here is the answer you asked for, with the details."
LINKY = "See https://example.com/answer for everything."


def traffic(
    model: str,
    n: int,
    start: datetime,
    span: timedelta,
    *,
    slow: bool = False,
    links: bool = False,
    seed: int = 0,
    **extra: object,
) -> list[dict]:
    """``n`` records spread over ``[start, start + span)``; ``slow``/``links`` are the incident."""
    rng = random.Random(f"{model}{seed}{start}")
    rows = []
    for i in range(n):
        response = LINKY if links and i % 2 else CALM
        rows.append(
            record_row(
                f"{model}-{start:%m%d}-{seed}-{i}",
                start + span * rng.random(),
                model,
                latency_ms=rng.gauss(1400 if slow else 500, 60),
                tokens_in=rng.randint(10, 60),
                tokens_out=rng.randint(20, 90),
                response_toxicity=rng.random() * 0.05,
                refusal=rng.random() < 0.05,
                prompt="How do I reset my password?",
                response=response,
                response_chars=len(response),
                **extra,
            )
        )
    return rows


def week_then_day(
    model: str, *, slow: bool = False, links: bool = False, n_ref: int = 400, n_cur: int = 200
) -> list[dict]:
    """A normal week before MIDNIGHT - 1 day, then the day ending at MIDNIGHT."""
    return traffic(model, n_ref, MIDNIGHT - 8 * DAY, 7 * DAY) + traffic(
        model, n_cur, MIDNIGHT - DAY, DAY, slow=slow, links=links, seed=1
    )


def test_the_nightly_report_finds_the_model_that_changed_and_records_drift_events(engine: Engine) -> None:
    insert_records(engine, week_then_day("m1", slow=True, links=True) + week_then_day("m2"))
    config = Config.model_validate({"reports": SMALL})
    scheduler = Scheduler(engine, build_jobs(config), owner="daemon")

    assert scheduler.run_due(MIDNIGHT + timedelta(minutes=3)) == {"evidently_drift_report": "ran"}

    by_model = {r.model: r for r in latest_reports(engine)}
    assert set(by_model) == {"m1", "m2"}
    m1, m2 = by_model["m1"].summary, by_model["m2"].summary
    assert m1["status"] == "ok" and m1["windows"]["current_end"] == MIDNIGHT.isoformat()
    assert m1["windows"]["reference_start"] == (MIDNIGHT - 8 * DAY).isoformat()
    assert m1["reference"] == {"records": 400, "sampled": 400} and m1["current"]["records"] == 200
    assert {"latency_ms", "response_has_link"} <= set(m1["drifted"])
    assert "prompt_words" not in m1["drifted"] and "tokens_in" not in m1["drifted"]
    assert "latency_ms" not in m2["drifted"] and "response_has_link" not in m2["drifted"]
    assert m1["columns"]["latency_ms"]["current"]["mean"] > 2 * m1["columns"]["latency_ms"]["reference"]["mean"]
    assert "feedback_score" in m1["skipped"]  # nobody gave feedback: not tested, and said so
    assert "<html" in by_model["m1"].html.lower()

    with engine.connect() as conn:
        events = conn.execute(select(drift_events).where(drift_events.c.stream == "model=m1,app=*")).all()
    latency = next(e for e in events if e.signal == "latency_ms")
    assert latency.detector == "evidently"
    assert latency.detected_at.replace(tzinfo=UTC) == MIDNIGHT
    assert latency.before["n"] == 400 and latency.after["n"] == 200
    assert latency.details["method"] and latency.details["score"] is not None
    assert {e.signal for e in events} == set(m1["drifted"])

    text = format_summary(by_model["m1"])
    assert "DRIFT in" in text and "latency_ms" in text and "2026-05-01 00:00Z" in text


def test_a_second_run_for_the_same_windows_adds_nothing(engine: Engine) -> None:
    insert_records(engine, week_then_day("m1", slow=True))
    config = ReportsConfig(**SMALL, text_descriptors=False)
    first = run_drift_reports(engine, config, end=MIDNIGHT)
    assert len(first) == 1
    assert run_drift_reports(engine, config, end=MIDNIGHT) == []
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(reports)) == 1
        events = conn.scalar(select(func.count()).select_from(drift_events))
    assert events == len(latest_reports(engine)[0].summary["drifted"]) >= 1


def test_a_new_model_without_history_is_reported_as_not_tested(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    metadata.create_all(engine)
    insert_records(engine, traffic("brand-new", 120, MIDNIGHT - DAY, DAY))
    run_drift_reports(engine, ReportsConfig(**SMALL), end=MIDNIGHT)
    (report,) = latest_reports(engine, "brand-new")
    assert report.summary["status"] == "insufficient_data" and report.html is None
    assert "reference has 0" in format_summary(report)
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(drift_events)) == 0


def test_without_stored_text_only_the_numeric_signals_are_compared_and_windows_are_sampled(
    engine: Engine,
) -> None:
    rows = week_then_day("m1", slow=True, n_ref=600, n_cur=300)
    for row in rows:  # store_text = "none"
        row["prompt"] = row["response"] = None
    insert_records(engine, rows)
    config = ReportsConfig(min_rows=50, max_rows=250, current_window=DAY, reference_window=7 * DAY)
    run_drift_reports(engine, config, end=MIDNIGHT)
    (report,) = latest_reports(engine)
    s = report.summary
    assert s["reference"] == {"records": 600, "sampled": 250} and s["current"] == {"records": 300, "sampled": 250}
    assert "too few values" in s["skipped"]["response"]
    assert {"response_words", "response_has_link", "prompt_words"}.isdisjoint(s["columns"])
    assert {"latency_ms", "response_chars", "refusal", "status"} <= set(s["columns"])
    assert "latency_ms" in s["drifted"]
    assert "250 of 600 records (random sample)" in format_summary(report)


def test_watchkeeper_report_runs_prints_and_writes_html(tmp_path: Path) -> None:
    db = tmp_path / "wk.db"
    config = tmp_path / "monitor.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{db}"\n[reports]\nmin_rows = 50\n')
    runner = CliRunner()
    not_ready = runner.invoke(report_command, ["--config", str(config)])
    assert not_ready.exit_code == 2 and "watchkeeper db upgrade" in not_ready.output  # 2: fix, then rerun

    upgrade(f"sqlite:///{db}")
    engine = make_engine(f"sqlite:///{db}")
    now = datetime.now(UTC)
    insert_records(
        engine, traffic("m1", 300, now - 8 * DAY, 7 * DAY) + traffic("m1", 150, now - DAY, DAY, slow=True, seed=1)
    )
    engine.dispose()

    empty = runner.invoke(report_command, ["--config", str(config)])
    assert empty.exit_code == 1 and "no drift report yet" in empty.output

    html = tmp_path / "report.html"
    made = runner.invoke(report_command, ["--config", str(config), "--run", "--html", str(html)])
    assert made.exit_code == 0, made.output
    assert "made 1 report(s)" in made.output and "model m1" in made.output and "latency_ms" in made.output
    page = html.read_text(encoding="utf-8").strip()
    assert page.lower().startswith("<!doctype html>") and page.endswith("</html>") and "latency_ms" in page

    other = runner.invoke(report_command, ["--config", str(config), "--model", "m9"])
    assert other.exit_code == 1 and "for model m9" in other.output
