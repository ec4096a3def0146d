"""Drift per stream: the sufficient statistics of short buckets that every pipeline adds to.

Drift detection moves from per-partition banks inside each daemon to one fold job (under the scheduler's
lease) that reads these rows in bucket order, so a stream's detectors see all of its records whichever
daemon consumed them. Old per-partition state rows in `detector_state` (``drift/<topic>/<p>``) are no longer
read; they are deleted here.

Revision ID: 0008_drift_buckets
Revises: 0007_dead_letter_digest
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_drift_buckets"
down_revision: str | None = "0007_dead_letter_digest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drift_buckets",
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False,
                  comment="start of the bucket: epoch milliseconds of the records' event time (ts)"),
        sa.Column("stream", sa.String(400), nullable=False, comment="*, model=M, app=A or model=M,app=A"),
        sa.Column("signal", sa.String(64), nullable=False, comment="e.g. response_chars, latency_ms, toxic"),
        sa.Column("n", sa.BigInteger(), nullable=False, comment="records with a value of this signal"),
        sa.Column("total", sa.Float(), nullable=False,
                  comment="sum of the values (log1p of lengths, latency and tokens); events for rates"),
        sa.Column("total_sq", sa.Float(), nullable=False, comment="sum of the squared values"),
        sa.Column("folded_n", sa.BigInteger(), nullable=False, server_default="0",
                  comment="how much of n the fold job has fed to the detectors (n - folded_n arrived late)"),
        sa.Column("folded_total", sa.Float(), nullable=False, server_default="0"),
        sa.Column("folded_sq", sa.Float(), nullable=False, server_default="0"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("bucket_ms", "stream", "signal"),
        comment=("Sufficient statistics of every drift signal per short bucket and stream, added by each batch "
                 "(each record counted once); the drift fold job reads them in bucket order."),
    )
    op.execute("DELETE FROM detector_state WHERE key LIKE 'drift/%'")


def downgrade() -> None:
    op.execute("DELETE FROM detector_state WHERE key LIKE 'drift-fold%'")
    op.drop_table("drift_buckets")
