"""Scheduled Evidently drift reports: per model, the current window of traffic against a reference window.

Each run reads, per model, a bounded random sample of the records in the reference window (the
``reference_window`` just before the current one) and in the current window (``current_window`` ending at
the run's slot), compares the configured numeric/categorical signals plus offline text descriptors of the
stored prompt/response text with Evidently's data-drift preset, and stores one ``reports`` row per model
(Evidently's JSON, our summary and the rendered HTML). Every column Evidently finds drifted becomes a
``drift_events`` row with ``detector = 'evidently'`` and ``detected_at`` = the end of the current window,
so alerting treats it like any other drift.

A run is idempotent per (model, windows): a model that already has a report for the same windows is
skipped. Windows or columns with too little data are reported as such instead of failing the run.

``watchkeeper report`` prints the latest report per model and can write its HTML or make one right now.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Engine, and_, func, insert, select

from monitor.config import Config, ReportsConfig
from monitor.jobs.scheduler import Job
from monitor.storage.db import as_utc
from monitor.storage.schema import drift_events, records, reports

if TYPE_CHECKING:  # pandas (~0.3 s to import) loads when a report runs, not when the daemon starts
    import pandas as pd

log = logging.getLogger(__name__)

KIND = "evidently_drift"
DETECTOR = "evidently"
CATEGORICAL = ("refusal", "status")
TEXT_COLUMNS = ("prompt", "response")


@dataclass(frozen=True)
class Windows:
    """The reference window ``[reference_start, current_start)`` and the current ``[current_start, end)``."""

    reference_start: datetime
    current_start: datetime
    end: datetime

    @classmethod
    def ending_at(cls, end: datetime, current: timedelta, reference: timedelta) -> Windows:
        end = as_utc(end)
        return cls(end - current - reference, end - current, end)

    def as_dict(self) -> dict[str, str]:
        return {
            "reference_start": self.reference_start.isoformat(),
            "reference_end": self.current_start.isoformat(),
            "current_start": self.current_start.isoformat(),
            "current_end": self.end.isoformat(),
        }


def build_jobs(config: Config) -> list[Job]:
    """The scheduled report job, when enabled; one slot per ``reports.interval``."""
    cfg = config.reports
    if not cfg.enabled:
        return []

    def run(engine: Engine, slot: datetime) -> None:
        run_drift_reports(engine, cfg, end=slot)

    return [Job("evidently_drift_report", cfg.interval, run, lease=timedelta(hours=1))]


def run_drift_reports(
    engine: Engine, config: ReportsConfig, end: datetime, models: Sequence[str] | None = None
) -> list[int]:
    """Make a report for every model with traffic in the current window ending at ``end`` (or ``models``).

    Returns the ids of the ``reports`` rows written (models already reported for these windows are skipped).
    """
    windows = Windows.ending_at(end, config.current_window, config.reference_window)
    if models is None:
        models = _models_in(engine, windows)
    ids = []
    for model in models:
        if _already_reported(engine, model, windows):
            log.info("drift report for %s over %s exists; skipped", model, windows.as_dict())
            continue
        ids.append(_report_model(engine, config, model, windows))
    return ids


def _models_in(engine: Engine, windows: Windows) -> list[str]:
    stmt = (
        select(records.c.model)
        .where(records.c.ts >= windows.current_start, records.c.ts < windows.end)
        .distinct()
        .order_by(records.c.model)
    )
    with engine.connect() as conn:
        return list(conn.scalars(stmt))


def _already_reported(engine: Engine, model: str, windows: Windows) -> bool:
    stmt = select(reports.c.id).where(
        reports.c.kind == KIND,
        reports.c.model == model,
        reports.c.current_start == windows.current_start,
        reports.c.current_end == windows.end,
    )
    with engine.connect() as conn:
        return conn.scalar(stmt.limit(1)) is not None


def _window_frame(
    engine: Engine, config: ReportsConfig, model: str, start: datetime, end: datetime
) -> tuple[pd.DataFrame, int]:
    """A random sample of at most ``max_rows`` records of ``model`` in ``[start, end)`` and the window's size."""
    import pandas as pd

    where = and_(records.c.model == model, records.c.ts >= start, records.c.ts < end)
    columns = [records.c[name] for name in config.signals]
    if config.text_descriptors:
        columns += [records.c[name] for name in TEXT_COLUMNS]
    with engine.connect() as conn:
        total = conn.scalar(select(func.count()).select_from(records).where(where)) or 0
        stmt = select(*columns).where(where)
        if total > config.max_rows:
            stmt = stmt.order_by(func.random()).limit(config.max_rows)
        rows = conn.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=[c.name for c in columns])
    for name in config.signals:
        if name == "refusal":
            frame[name] = frame[name].map(lambda v: None if v is None else str(bool(v)).lower()).astype(object)
        elif name not in CATEGORICAL:
            frame[name] = pd.to_numeric(frame[name], errors="coerce").astype(float)
    return frame, total


def _report_model(engine: Engine, config: ReportsConfig, model: str, windows: Windows) -> int:
    reference, n_reference = _window_frame(engine, config, model, windows.reference_start, windows.current_start)
    current, n_current = _window_frame(engine, config, model, windows.current_start, windows.end)
    summary: dict[str, Any] = {
        "model": model,
        "windows": windows.as_dict(),
        "reference": {"records": n_reference, "sampled": len(reference)},
        "current": {"records": n_current, "sampled": len(current)},
        "columns": {},
        "skipped": {},
        "drifted": [],
    }
    if len(reference) < config.min_rows or len(current) < config.min_rows:
        summary["status"] = "insufficient_data"
        summary["reason"] = (
            f"needs {config.min_rows} records in each window; "
            f"reference has {len(reference)}, current has {len(current)}"
        )
        return _store(engine, model, windows, summary, None, [])

    tested = _evidently(config, reference, current, summary["skipped"])
    if tested is None:
        summary["status"] = "insufficient_data"
        summary["reason"] = "no column has enough values in both windows"
        return _store(engine, model, windows, summary, None, [])
    snapshot, columns, frames = tested
    results = _column_results(json.loads(snapshot.json()))
    events = []
    for column in columns:
        result = results.get(column)
        if result is None:
            summary["skipped"][column] = "no result from Evidently"
            continue
        result["reference"] = _stats(frames[0][column])
        result["current"] = _stats(frames[1][column])
        summary["columns"][column] = result
        if result["drifted"]:
            summary["drifted"].append(column)
            events.append(_drift_event(model, column, result, windows))
    summary["status"] = "ok"
    summary["evidently"] = _finite(json.loads(snapshot.json()))
    html = snapshot.get_html_str(as_iframe=False) if config.keep_html else None
    report_id = _store(engine, model, windows, summary, html, events)
    log.info("drift report %d for %s: drifted %s", report_id, model, summary["drifted"] or "nothing")
    return report_id


def _evidently(
    config: ReportsConfig, reference: pd.DataFrame, current: pd.DataFrame, skipped: dict[str, str]
) -> tuple[Any, list[str], tuple[pd.DataFrame, pd.DataFrame]] | None:
    """Run the data-drift preset on the columns with enough values in both windows (None: no such column)."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    def enough(column: str) -> bool:
        n_ref, n_cur = int(reference[column].notna().sum()), int(current[column].notna().sum())
        if n_ref < config.min_rows or n_cur < config.min_rows:
            skipped[column] = f"too few values (reference {n_ref}, current {n_cur}, need {config.min_rows})"
            return False
        return True

    numeric = [c for c in config.signals if c not in CATEGORICAL and enough(c)]
    categorical = [c for c in config.signals if c in CATEGORICAL and enough(c)]
    texts = [c for c in TEXT_COLUMNS if config.text_descriptors and enough(c)]
    if not numeric + categorical + texts:
        return None
    descriptors, described = _descriptors(texts)
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical, text_columns=texts)
    keep = numeric + categorical + texts
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        datasets = [
            Dataset.from_pandas(
                # Missing or empty text (an error's empty response) as one space: Evidently's
                # NonLetterCharacterPercentage divides by the length and fails the whole report on "".
                frame[keep].assign(**{t: frame[t].fillna("").where(lambda s: s != "", " ") for t in texts}),
                data_definition=definition,
                descriptors=descriptors,
            )
            for frame in (reference, current)
        ]
        columns = numeric + categorical + described
        preset = DataDriftPreset(columns=columns, method=config.method, threshold=config.threshold)
        snapshot = Report([preset], include_tests=True).run(datasets[1], datasets[0])
    frames = (datasets[0].as_dataframe(), datasets[1].as_dataframe())
    return snapshot, columns, frames


def _descriptors(texts: Sequence[str]) -> tuple[list[Any], list[str]]:
    """Offline Evidently descriptors of each stored text column (none of these downloads anything)."""
    from evidently.descriptors import (
        ContainsLink,
        IsValidJSON,
        NonLetterCharacterPercentage,
        SentenceCount,
        WordCount,
    )

    kinds = {
        "words": WordCount,
        "sentences": SentenceCount,
        "non_letter_pct": NonLetterCharacterPercentage,
        "has_link": ContainsLink,
        "is_json": IsValidJSON,
    }
    made, names = [], []
    for text in texts:
        for suffix, descriptor in kinds.items():
            names.append(f"{text}_{suffix}")
            made.append(descriptor(text, alias=names[-1]))
    return made, names


def _column_results(evidently_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per column: Evidently's method, score (a p-value or a distance, per method), threshold, drifted."""
    by_metric: dict[str, dict[str, Any]] = {}
    for metric in evidently_json.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type", "").endswith(":ValueDrift"):
            by_metric[metric["id"]] = {
                "column": config["column"],
                "method": config.get("method"),
                "score": _number(metric.get("value")),
                "threshold": config.get("threshold"),
                "drifted": False,
            }
    for test in evidently_json.get("tests", []):
        metric_id = test.get("metric_config", {}).get("metric_id")
        if test.get("id") == "drift" and metric_id in by_metric:
            by_metric[metric_id]["drifted"] = str(test.get("status")).upper().endswith("FAIL")
    return {result.pop("column"): result for result in by_metric.values()}


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: JSON (and Postgres JSONB) has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _stats(values: pd.Series) -> dict[str, Any]:
    """Summary of one column in one window: n, and mean/std/quantiles or the share of each value."""
    import pandas as pd

    present = values.dropna()
    stats: dict[str, Any] = {"n": len(present)}
    if present.empty:
        return stats
    if pd.api.types.is_bool_dtype(present) or not pd.api.types.is_numeric_dtype(present):
        shares = present.astype(str).value_counts(normalize=True).head(10)
        stats["shares"] = {str(k): round(float(v), 6) for k, v in shares.items()}
        return stats
    numbers = present.astype(float)
    stats.update(
        mean=_number(numbers.mean()),
        std=_number(numbers.std(ddof=0)),
        p50=_number(numbers.quantile(0.5)),
        p95=_number(numbers.quantile(0.95)),
        min=_number(numbers.min()),
        max=_number(numbers.max()),
    )
    return stats


def _drift_event(model: str, column: str, result: dict[str, Any], windows: Windows) -> dict[str, Any]:
    test = {key: result[key] for key in ("method", "score", "threshold")}
    return {
        "stream": f"model={model},app=*",
        "signal": column,
        "detector": DETECTOR,
        "detected_at": windows.end,
        "record_id": None,
        "before": result["reference"],
        "after": result["current"],
        "details": {**test, "windows": windows.as_dict()},
    }


def _store(
    engine: Engine,
    model: str,
    windows: Windows,
    summary: dict[str, Any],
    html: str | None,
    events: list[dict[str, Any]],
) -> int:
    """Write the report and its drift events in one transaction."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        result = conn.execute(
            insert(reports).values(
                kind=KIND,
                model=model,
                created_at=now,
                reference_start=windows.reference_start,
                reference_end=windows.current_start,
                current_start=windows.current_start,
                current_end=windows.end,
                summary=summary,
                html=html,
            )
        )
        report_id = int(result.inserted_primary_key[0])
        if events:
            for event in events:
                event["details"]["report_id"] = report_id
            conn.execute(insert(drift_events), [{**event, "created_at": now} for event in events])
    return report_id


@dataclass(frozen=True)
class StoredReport:
    id: int
    model: str
    created_at: datetime
    summary: dict[str, Any]
    html: str | None


def latest_reports(engine: Engine, model: str | None = None) -> list[StoredReport]:
    """The newest drift report of each model (or of ``model``), newest first."""
    newest = select(func.max(reports.c.id)).where(reports.c.kind == KIND).group_by(reports.c.model)
    if model is not None:
        newest = newest.where(reports.c.model == model)
    stmt = (
        select(reports.c.id, reports.c.model, reports.c.created_at, reports.c.summary, reports.c.html)
        .where(reports.c.id.in_(newest.scalar_subquery()))
        .order_by(reports.c.id.desc())
    )
    with engine.connect() as conn:
        return [
            StoredReport(row.id, row.model, as_utc(row.created_at), row.summary, row.html) for row in conn.execute(stmt)
        ]


def format_summary(report: StoredReport) -> str:
    """The report as a few readable lines for a terminal."""
    s = report.summary
    w = s["windows"]
    lines = [
        f"Drift report #{report.id} for model {report.model} (made {_short(report.created_at.isoformat())})",
        f"  reference {_short(w['reference_start'])} → {_short(w['reference_end'])}: {_size(s['reference'])}",
        f"  current   {_short(w['current_start'])} → {_short(w['current_end'])}: {_size(s['current'])}",
    ]
    if s.get("status") != "ok":
        lines.append(f"  not tested: {s.get('reason', s.get('status'))}")
        return "\n".join(lines)
    columns = s["columns"]
    drifted = s["drifted"]
    lines.append(
        f"  DRIFT in {len(drifted)} of {len(columns)} columns: {', '.join(drifted)}"
        if drifted
        else f"  no drift in {len(columns)} columns"
    )
    lines.append(f"  {'column':<26}{'method':<32}{'score':>9}{'threshold':>11}  {'reference':>22}  {'current':>22}")
    for name, col in sorted(columns.items(), key=lambda item: (not item[1]["drifted"], item[0])):
        mark = "*" if col["drifted"] else " "
        lines.append(
            f"{mark} {name:<26}{(col['method'] or '?')[:31]:<32}{_fmt(col['score']):>9}"
            f"{_fmt(col['threshold']):>11}  {_describe(col['reference']):>22}  {_describe(col['current']):>22}"
        )
    for name, reason in s.get("skipped", {}).items():
        lines.append(f"  skipped {name}: {reason}")
    return "\n".join(lines)


def _short(iso: str) -> str:
    return iso.replace("+00:00", "Z").replace("T", " ")[:16] + "Z"


def _size(window: dict[str, int]) -> str:
    if window["sampled"] < window["records"]:
        return f"{window['sampled']} of {window['records']} records (random sample)"
    return f"{window['records']} records"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _describe(stats: dict[str, Any]) -> str:
    if "mean" in stats:
        return f"mean {_fmt(stats['mean'])} n={stats['n']}"
    if "shares" in stats:
        top, share = next(iter(stats["shares"].items()))
        return f"{top} {share:.0%} n={stats['n']}"
    return f"n={stats['n']}"
