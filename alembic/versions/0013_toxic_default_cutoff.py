"""``model_comparison_daily.toxic`` counts at the new default toxicity cut-off, 0.3 (was 0.5).

The default of ``[detectors.toxicity] threshold`` moved to 0.3, chosen from the precision-recall curve
(detectors.config.TOXIC_AT); a view cannot read monitor.toml, so it follows the default. The view's body is
migration 0005's with that one cut-off changed. Postgres replaces the view in place (grants to the analyst
role survive); SQLite drops and creates it.

Revision ID: 0013_toxic_default_cutoff
Revises: 0012_outbox_maybe_sent
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0013_toxic_default_cutoff"
down_revision: str | None = "0012_outbox_maybe_sent"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_CUT = "r.response_toxicity >= 0.5 THEN 1 ELSE 0 END) AS toxic,"
NEW_CUT = "r.response_toxicity >= 0.3 THEN 1 ELSE 0 END) AS toxic,"


def _view_0005() -> ModuleType:
    """Migration 0005 (the view's definition), loaded from its file: version files are not a package."""
    path = Path(__file__).with_name("0005_model_comparison_daily.py")
    spec = importlib.util.spec_from_file_location("_wk_0005_model_comparison_daily", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _define(cut: str) -> None:
    v = _view_0005()
    dialect = op.get_bind().dialect.name
    body = v.BODY.format(day=v.DAY.get(dialect, v.DAY["postgresql"]))
    assert OLD_CUT in body, "migration 0005's view changed: update this migration"
    body = body.replace(OLD_CUT, cut)
    if dialect == "postgresql":
        op.execute(f"CREATE OR REPLACE VIEW {v.NAME} AS {body}")
    else:
        op.execute(f"DROP VIEW IF EXISTS {v.NAME}")
        op.execute(f"CREATE VIEW {v.NAME} AS {body}")


def upgrade() -> None:
    _define(NEW_CUT)


def downgrade() -> None:
    _define(OLD_CUT)
