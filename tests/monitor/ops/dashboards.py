"""The shipped Grafana dashboards (deploy/grafana/dashboards) as the tests read them: every panel's PromQL
expressions and SQL queries, and Grafana's SQL macros expanded the way Grafana would for a time range."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
PROMETHEUS_UID = "watchkeeper-prometheus"
POSTGRES_UID = "watchkeeper-postgres"


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))}


def targets(kind: str) -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, query) for every target whose data source is ``kind``
    (``prometheus``: its ``expr``; ``postgres``: its ``rawSql``)."""
    uid = PROMETHEUS_UID if kind == "prometheus" else POSTGRES_UID
    key = "expr" if kind == "prometheus" else "rawSql"
    found = []
    for name, dashboard in dashboards().items():
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                if (target.get("datasource") or panel["datasource"])["uid"] == uid:
                    found.append((name, panel["title"], target[key]))
    return found


def expand_sql_macros(sql: str, start: datetime, end: datetime) -> str:
    """Grafana's Postgres macros used by the dashboards, for the range [start, end]."""
    a, b = f"'{start.isoformat()}'::timestamptz", f"'{end.isoformat()}'::timestamptz"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN {a} AND {b}", sql)
    sql = sql.replace("$__timeFrom()", a).replace("$__timeTo()", b)
    if "$" in sql:
        raise AssertionError(f"a Grafana macro or variable the tests do not expand: {sql}")
    return sql
