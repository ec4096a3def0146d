"""`watchkeeper compare` on stored traffic, on both databases: the command, its JSON/HTML, the daily view."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, insert, text

from monitor.cli import main
from monitor.storage.db import make_engine
from monitor.storage.schema import detections, labels, records, reviewers, samples, shadow_comparisons
from monitor.synthetic.ab import Arm, arm_rows

DAY0 = datetime(2026, 3, 2, tzinfo=UTC)
WORSE = {"refusal_rate", "latency_ms.median", "latency_ms.p95"}
REQUIRED = {"name", "a", "b", "diff", "ci_low", "ci_high", "p_value", "significant"}


def _store(engine: Engine, arm: Arm, n: int, rng: np.random.Generator, start: datetime, span: timedelta,
           prefix: str, reviewed: int = 0, replayed: int = 0) -> list[dict]:
    """Records, leak detections, ``reviewed`` labelled uniform samples (accuracy ``arm.accuracy``) and
    ``replayed`` shadow comparisons (80 % agreement) of one arm."""
    rows, found = arm_rows(arm, n, rng, start, span, prefix)
    with engine.begin() as conn:
        conn.execute(insert(records), rows)
        if found:
            conn.execute(insert(detections), found)
        reviewer = conn.execute(text("SELECT id FROM reviewers WHERE name = 'ana'")).scalar()
        if reviewer is None:
            conn.execute(insert(reviewers), [{"name": "ana", "token_hash": "x", "created_at": start, "active": True}])
            reviewer = conn.execute(text("SELECT id FROM reviewers WHERE name = 'ana'")).scalar_one()
        for row in rows[:reviewed]:
            sample_id = conn.execute(insert(samples).returning(samples.c.id), [{
                "record_id": row["id"], "reason": "uniform", "stratum": f"model={arm.model}", "model": arm.model,
                "app": row["app"], "ts": row["ts"], "window_start": start, "inclusion_probability": 0.1,
                "reviews_wanted": 1, "sampled_at": row["ts"]}]).scalar_one()
            verdict = "correct" if rng.random() < arm.accuracy else "incorrect"
            conn.execute(insert(labels), [{"sample_id": sample_id, "record_id": row["id"], "reviewer_id": reviewer,
                                           "verdict": verdict, "labelled_at": row["ts"]}])
        conn.execute(insert(shadow_comparisons), [
            {"record_id": row["id"], "reference_model": "smollm2", "agree": bool(rng.random() < 0.8),
             "created_at": row["ts"]} for row in rows[:replayed]] or [])
    return rows


def _config(tmp_path: Path, db_url: str) -> str:
    path = tmp_path / "monitor.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n')
    return str(path)


@pytest.fixture
def ab_db(migrated_db_url: str) -> str:
    """Two days of m-v1 and m-v2 side by side; m-v2 refuses 7 % instead of 3 % and is 25 % slower."""
    engine = make_engine(migrated_db_url)
    rng = np.random.default_rng(2026)
    try:
        _store(engine, Arm("m-v1"), 3000, rng, DAY0, timedelta(days=2), "a", reviewed=300, replayed=300)
        _store(engine, Arm("m-v2", refusal_rate=0.07, latency_median_ms=560.0), 3000, rng, DAY0,
               timedelta(days=2), "b", reviewed=300, replayed=300)
    finally:
        engine.dispose()
    return migrated_db_url


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["compare", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_compare_json_names_exactly_the_two_worse_metrics(ab_db: str, tmp_path: Path) -> None:
    """The analyst's question "is m-v2 worse than m-v1?" on stored traffic, as JSON a CI job can gate on:
    every metric carries A, B, the difference with its interval, p and the corrected verdict; refusals and
    latency are significant, nothing else is; review accuracy and shadow agreement are compared too."""
    code, out = _run("--config", _config(tmp_path, ab_db), "--model", "m-v1", "--model", "m-v2",
                     "--from", "2026-03-02", "--to", "2026-03-04", "--format", "json")
    assert code == 0, out
    report = json.loads(out)
    assert all(set(m) >= REQUIRED for m in report["metrics"])
    assert {m["name"] for m in report["metrics"] if m["significant"]} == WORSE
    by_name = {m["name"]: m for m in report["metrics"]}
    assert by_name["refusal_rate"]["a"] == pytest.approx(0.03, abs=0.01)
    assert by_name["refusal_rate"]["b"] == pytest.approx(0.07, abs=0.015)
    for name in ("review_accuracy", "shadow_agreement.smollm2", "pii_leak_rate"):
        assert by_name[name]["p_value"] is not None and not by_name[name]["significant"], name
    assert by_name["review_accuracy"]["a"] == pytest.approx(0.9, abs=0.06)
    assert report["correction"] == "holm" and report["mix"]["p_value"] > 0.01


def test_the_gate_fails_when_the_candidate_is_worse_and_not_when_compared_with_itself(ab_db: str,
                                                                                    tmp_path: Path) -> None:
    """--fail-if-worse exits 1 for m-v2 against m-v1; m-v1's first day against its second is no worse."""
    config = _config(tmp_path, ab_db)
    window = ("--from", "2026-03-02", "--to", "2026-03-04")
    code, _ = _run("--config", config, "--model", "m-v1", "--model", "m-v2", *window, "--fail-if-worse")
    assert code == 1
    code, out = _run("--config", config, "--model", "m-v1", "--split", "2026-03-03", *window, "--fail-if-worse")
    assert code == 0, out
    assert "m-v1 before" in out and "m-v1 after" in out


def test_html_report_says_what_is_worse_in_words(ab_db: str, tmp_path: Path) -> None:
    """The page for someone who is not a statistician leads with what got worse, in a sentence."""
    out_path = tmp_path / "ab.html"
    code, _ = _run("--config", _config(tmp_path, ab_db), "--model", "m-v1", "--model", "m-v2", "--from",
                   "2026-03-02", "--to", "2026-03-04", "--format", "html", "--output", str(out_path))
    assert code == 0
    page = out_path.read_text()
    worse = page.split("Where m-v2 is worse")[1].split("<h2>")[0]
    assert "m-v2 has higher refusal rate" in worse and "higher median latency" in worse
    assert "almost certainly real" in worse
    assert "error" not in worse


def test_text_output_marks_significant_rows_and_by_app_compares_within_apps(ab_db: str, tmp_path: Path) -> None:
    """The terminal table stars the significant rows; --by app adds one block per app both models served."""
    code, out = _run("--config", _config(tmp_path, ab_db), "--model", "m-v1", "--model", "m-v2", "--from",
                     "2026-03-02", "--to", "2026-03-04", "--by", "app")
    assert code == 0, out
    starred = {line.split()[0] for line in out.splitlines() if len(line) > 34 and line[33] == "*"}
    assert starred >= WORSE
    for app in ("all apps", "support-bot", "code-assistant", "search"):
        assert f"== {app} ==" in out


def test_unknown_model_and_bad_window_are_one_clear_line(ab_db: str, tmp_path: Path) -> None:
    """A typo in the model name or a window that ends before it starts says so, and nothing else."""
    config = _config(tmp_path, ab_db)
    code, out = _run("--config", config, "--model", "m-v1", "--model", "m-v3", "--since", "3650d")
    assert code == 1 and "no records of m-v3" in out
    code, out = _run("--config", config, "--model", "m-v1", "--model", "m-v2", "--from", "2026-03-04",
                     "--to", "2026-03-02")
    assert code == 2 and "window is empty" in out


def test_daily_view_adds_up_to_what_compare_reports(ab_db: str, tmp_path: Path) -> None:
    """model_comparison_daily (migration 0005) gives the same refusal and error counts per model as the
    comparison, summed over its days and apps, on this database."""
    code, out = _run("--config", _config(tmp_path, ab_db), "--model", "m-v1", "--model", "m-v2", "--from",
                     "2026-03-01", "--to", "2026-03-05", "--format", "json")
    assert code == 0, out
    by_name = {m["name"]: m for m in json.loads(out)["metrics"]}
    engine = make_engine(ab_db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT model, SUM(n), SUM(refusals) * 1.0 / SUM(refusal_scored), SUM(errors) * 1.0 / SUM(n), "
                "COUNT(DISTINCT day), MIN(day) FROM model_comparison_daily GROUP BY model ORDER BY model")).all()
    finally:
        engine.dispose()
    assert [r[0] for r in rows] == ["m-v1", "m-v2"]
    assert [r[1] for r in rows] == [3000, 3000]
    assert [float(r[2]) for r in rows] == pytest.approx([by_name["refusal_rate"][k] for k in "ab"])
    assert [float(r[3]) for r in rows] == pytest.approx([by_name["error_rate"][k] for k in "ab"])
    assert rows[0][4] == 2 and rows[0][5] == "2026-03-02"
