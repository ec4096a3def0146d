"""Review views for analysts: accuracy per model/app/window and reviewer agreement.

Plain SQL that runs unchanged on Postgres and SQLite.

- ``review_record_verdicts``: per labelled record, how many labels, how many say correct / incorrect.
- ``review_accuracy_daily``: per model, app and sampling window (a day by default), from labelled uniform
  samples: ``n_labelled``, ``accuracy`` (Hájek: sum(w·y)/sum(w), w = 1/inclusion_probability, y = share of
  correct among the record's decisive labels), ``unweighted_accuracy``, ``sum_w``, ``sum_w2`` and
  ``n_effective`` = sum_w²/sum_w2, from which a Wilson interval follows (the review page shows it).
  Windows add up by summing ``accuracy*sum_w`` and ``sum_w``.
- ``review_label_pairs``: each pair of labels two reviewers gave the same record (lower reviewer id first).
- ``review_agreement``: per model, ``n_pairs``, ``observed`` and ``expected`` agreement, Cohen's ``kappa``.

Revision ID: 0002_review_views
Revises: 0001_initial
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002_review_views"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS: list[tuple[str, str]] = [
    ("review_record_verdicts", """
SELECT l.record_id AS record_id,
       COUNT(*) AS n_labels,
       SUM(CASE WHEN l.verdict = 'correct' THEN 1 ELSE 0 END) AS n_correct,
       SUM(CASE WHEN l.verdict = 'incorrect' THEN 1 ELSE 0 END) AS n_incorrect
FROM labels l
GROUP BY l.record_id
"""),
    ("review_accuracy_daily", """
SELECT s.model AS model,
       s.app AS app,
       s.window_start AS window_start,
       COUNT(*) AS n_labelled,
       SUM((1.0 / s.inclusion_probability) * v.n_correct / (v.n_correct + v.n_incorrect))
           / SUM(1.0 / s.inclusion_probability) AS accuracy,
       AVG(1.0 * v.n_correct / (v.n_correct + v.n_incorrect)) AS unweighted_accuracy,
       SUM(1.0 / s.inclusion_probability) AS sum_w,
       SUM(1.0 / (s.inclusion_probability * s.inclusion_probability)) AS sum_w2,
       SUM(1.0 / s.inclusion_probability) * SUM(1.0 / s.inclusion_probability)
           / SUM(1.0 / (s.inclusion_probability * s.inclusion_probability)) AS n_effective
FROM samples s
JOIN review_record_verdicts v ON v.record_id = s.record_id
WHERE s.reason = 'uniform' AND s.inclusion_probability > 0 AND v.n_correct + v.n_incorrect > 0
GROUP BY s.model, s.app, s.window_start
"""),
    ("review_label_pairs", """
SELECT a.record_id AS record_id,
       s.model AS model,
       s.app AS app,
       s.window_start AS window_start,
       a.reviewer_id AS reviewer_a,
       b.reviewer_id AS reviewer_b,
       a.verdict AS verdict_a,
       b.verdict AS verdict_b,
       CASE WHEN a.verdict = b.verdict THEN 1 ELSE 0 END AS agree
FROM labels a
JOIN labels b ON b.record_id = a.record_id AND a.reviewer_id < b.reviewer_id
JOIN samples s ON s.id = a.sample_id
"""),
    ("review_agreement", """
WITH totals AS (
    SELECT model, COUNT(*) AS n_pairs, AVG(1.0 * agree) AS observed
    FROM review_label_pairs GROUP BY model
),
categories AS (
    SELECT model, verdict_a AS verdict FROM review_label_pairs
    UNION
    SELECT model, verdict_b AS verdict FROM review_label_pairs
),
margins AS (
    SELECT c.model AS model,
           (SELECT COUNT(*) FROM review_label_pairs p WHERE p.model = c.model AND p.verdict_a = c.verdict) AS n_a,
           (SELECT COUNT(*) FROM review_label_pairs p WHERE p.model = c.model AND p.verdict_b = c.verdict) AS n_b
    FROM categories c
),
expected AS (
    SELECT m.model AS model, SUM(1.0 * m.n_a * m.n_b) / (1.0 * t.n_pairs * t.n_pairs) AS expected
    FROM margins m JOIN totals t ON t.model = m.model
    GROUP BY m.model, t.n_pairs
)
SELECT t.model AS model,
       t.n_pairs AS n_pairs,
       t.observed AS observed,
       e.expected AS expected,
       CASE WHEN e.expected < 1 THEN (t.observed - e.expected) / (1 - e.expected) END AS kappa
FROM totals t JOIN expected e ON e.model = t.model
"""),
]


def upgrade() -> None:
    for name, body in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {body}")


def downgrade() -> None:
    for name, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")
