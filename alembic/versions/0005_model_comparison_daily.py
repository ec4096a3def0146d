"""A per-model daily view for side-by-side comparisons: ``model_comparison_daily``.

One row per UTC day × model × app ('' when the record has none), from `records`, with the counts that make
every rate (numerator *and* the denominator the detector actually scored, so days and apps add up by
summing) and the sums that make means. For example, two models' refusal rates over a week:

    SELECT model, SUM(refusals) * 1.0 / SUM(refusal_scored) AS refusal_rate
    FROM model_comparison_daily WHERE day >= '2026-11-01' GROUP BY model;

``day`` is text 'YYYY-MM-DD' on both databases. ``toxic`` uses the default cut-off 0.5 and ``low_feedback``
a score below 0.5 (a view cannot read monitor.toml; `watchkeeper compare` uses the configured values).
``pii_flagged``/``secret_flagged`` count records with any finding, prompt or response; `watchkeeper compare`
counts only findings in the response. Medians and intervals are not here: SQLite has no percentile function,
and the statistics belong to `watchkeeper compare`.

Revision ID: 0005_model_comparison_daily
Revises: 0004_review_sessions
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005_model_comparison_daily"
down_revision: str | None = "0004_review_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DAY = {
    "postgresql": "to_char(r.ts AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
    "sqlite": "substr(r.ts, 1, 10)",
}

BODY = """
SELECT {day} AS day,
       r.model AS model,
       COALESCE(r.app, '') AS app,
       COUNT(*) AS n,
       SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) AS errors,
       SUM(CASE WHEN r.refusal IS NULL THEN 0 ELSE 1 END) AS refusal_scored,
       SUM(CASE WHEN r.refusal THEN 1 ELSE 0 END) AS refusals,
       SUM(CASE WHEN r.truncated IS NULL THEN 0 ELSE 1 END) AS truncation_scored,
       SUM(CASE WHEN r.truncated THEN 1 ELSE 0 END) AS truncated,
       SUM(CASE WHEN r.response_toxicity IS NULL THEN 0 ELSE 1 END) AS toxicity_scored,
       SUM(CASE WHEN r.response_toxicity >= 0.5 THEN 1 ELSE 0 END) AS toxic,
       SUM(CASE WHEN r.pii_count IS NULL THEN 0 ELSE 1 END) AS pii_scanned,
       SUM(CASE WHEN r.pii_count > 0 THEN 1 ELSE 0 END) AS pii_flagged,
       SUM(CASE WHEN r.secret_count IS NULL THEN 0 ELSE 1 END) AS secrets_scanned,
       SUM(CASE WHEN r.secret_count > 0 THEN 1 ELSE 0 END) AS secret_flagged,
       COUNT(r.feedback_score) AS feedback_n,
       SUM(CASE WHEN r.feedback_score < 0.5 THEN 1 ELSE 0 END) AS low_feedback,
       SUM(r.feedback_score) AS feedback_sum,
       COUNT(r.latency_ms) AS latency_n,
       SUM(r.latency_ms) AS latency_sum,
       SUM(r.prompt_chars) AS prompt_chars_sum,
       SUM(r.response_chars) AS response_chars_sum,
       SUM(r.tokens_in) AS tokens_in_sum,
       SUM(r.tokens_out) AS tokens_out_sum,
       1.0 * SUM(CASE WHEN r.status = 'error' THEN 1 ELSE 0 END) / COUNT(*) AS error_rate,
       1.0 * SUM(CASE WHEN r.refusal THEN 1 ELSE 0 END)
           / NULLIF(SUM(CASE WHEN r.refusal IS NULL THEN 0 ELSE 1 END), 0) AS refusal_rate,
       AVG(r.latency_ms) AS latency_mean_ms
FROM records r
GROUP BY {day}, r.model, COALESCE(r.app, '')
"""

NAME = "model_comparison_daily"


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    day = DAY.get(dialect, DAY["postgresql"])
    op.execute(f"CREATE VIEW {NAME} AS {BODY.format(day=day)}")


def downgrade() -> None:
    op.execute(f"DROP VIEW IF EXISTS {NAME}")
