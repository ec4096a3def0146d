"""The rollout guardrail: with ``[compare] candidate/baseline`` set, a scheduled comparison is kept in `reports`
and the ``candidate_worse`` alert tells the on-call where the new model is worse, without anyone asking."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import insert, select

from monitor.alerts.rules import build_rules
from monitor.app.services import build_jobs
from monitor.config import Config, ConfigError, load_config
from monitor.jobs.compare import run_guardrail
from monitor.storage.db import make_engine
from monitor.storage.schema import detections, records, reports
from monitor.synthetic.ab import Arm, arm_rows
from tests.monitor.compare.test_compare_db import DAY0

NOW = DAY0 + timedelta(days=1)


def _config(tmp_path: Path, db_url: str, extra: str = "") -> Config:
    path = tmp_path / "monitor.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[compare]\ncandidate = "m-v2"\nbaseline = "m-v1"\n{extra}')
    return load_config(path, env={})


def _rollout(db_url: str) -> None:
    """A day of both models; m-v2 refuses 4× as often in support-bot only and is equal everywhere else."""
    engine = make_engine(db_url)
    rng = np.random.default_rng(77)
    try:
        with engine.begin() as conn:
            for arm, n, prefix in ((Arm("m-v1"), 4000, "a"), (Arm("m-v2"), 2400, "b"),
                                   (Arm("m-v2", refusal_rate=0.12, apps=(("support-bot", 1.0),)), 1600, "c")):
                arm = arm if prefix != "b" else arm.but(apps=(("code-assistant", 0.6), ("search", 0.4)))
                rows, found = arm_rows(arm, n, rng, DAY0, timedelta(hours=23), prefix)
                conn.execute(insert(records), rows)
                if found:
                    conn.execute(insert(detections), found)
    finally:
        engine.dispose()


def test_a_candidate_worse_in_one_app_pages_with_the_app_and_the_factor(migrated_db_url: str, tmp_path: Path) -> None:
    """The scheduled comparison finds m-v2's support-bot refusals (about 4× m-v1's) and the default rule
    fires on model=m-v2 with a summary the on-call can act on; the full comparison and its HTML page are
    kept in `reports`."""
    _rollout(migrated_db_url)
    config = _config(tmp_path, migrated_db_url)
    engine = make_engine(migrated_db_url)
    try:
        assert "compare-guardrail" in [job.name for job in build_jobs(config, engine)[0]]
        summary = run_guardrail(engine, config, NOW)
        worse = {(m["name"], m["app"]) for m in summary["worse"]}
        assert ("refusal_rate", "support-bot") in worse
        assert {name for name, _ in worse} == {"refusal_rate"}
        rule = next(r for r in build_rules(config.alerts) if r.name == "candidate_worse")
        with engine.connect() as conn:
            firing = rule.evaluate(conn, NOW + timedelta(minutes=5))
            stored = conn.execute(select(reports.c.kind, reports.c.model, reports.c.html)).all()
        assert list(firing) == ["model=m-v2"]
        text = firing["model=m-v2"].summary
        assert text.startswith("m-v2 is significantly worse than m-v1 on ")
        assert "refusal rate" in text and "in support-bot" in text and "×" in text
        assert "watchkeeper compare --model m-v1 --model m-v2" in firing["model=m-v2"].look
        assert [(k, m) for k, m, _ in stored] == [("compare", "m-v2")] and "Where m-v2 is worse" in stored[0][2]
        # Hours later with no newer comparison (the guardrail switched off), the alert resolves.
        with engine.connect() as conn:
            assert rule.evaluate(conn, NOW + timedelta(hours=3)) == {}
    finally:
        engine.dispose()


def test_too_few_records_is_not_a_verdict(migrated_db_url: str, tmp_path: Path) -> None:
    """Below min_records the comparison is stored as "not enough data" and nothing fires."""
    _rollout(migrated_db_url)
    config = _config(tmp_path, migrated_db_url, "min_records = 100000\n")
    engine = make_engine(migrated_db_url)
    try:
        summary = run_guardrail(engine, config, NOW)
        assert summary["status"] == "not enough data" and summary["worse"] == []
        rule = next(r for r in build_rules(config.alerts) if r.name == "candidate_worse")
        with engine.connect() as conn:
            assert rule.evaluate(conn, NOW) == {}
    finally:
        engine.dispose()


def test_half_a_pair_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    """A candidate without a baseline is refused with one line naming [compare]."""
    path = tmp_path / "monitor.toml"
    path.write_text('[compare]\ncandidate = "m-v2"\n')
    with pytest.raises(ConfigError, match="compare"):
        load_config(path, env={})
