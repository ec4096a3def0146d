"""The reference servers' own health: one row per scrape of a reference's /health and /metrics.

Nothing watched the reference model before: `monitor.jobs.reference_health` now stores up/down, queue, KV
cache, latency quantiles and tokens per scrape, and the reference_* alert rules read them.

Revision ID: 0006_reference_health
Revises: 0005_model_comparison_daily
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from alembic import op

revision: str = "0006_reference_health"
down_revision: str | None = "0005_model_comparison_daily"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "reference_health",
        sa.Column("reference", sa.String(500), nullable=False, comment="the reference's label (its name, else its URL)"),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="when it was scraped"),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("up", sa.Boolean(), nullable=False, comment="/health answered 200 (or /v1/models, on servers without it)"),
        sa.Column("error", sa.Text(), comment="why it was counted down, or why /metrics could not be read"),
        sa.Column("running", sa.Float(), comment="requests in the running batch (vllm:num_requests_running)"),
        sa.Column("waiting", sa.Float(), comment="requests queued, not yet scheduled (vllm:num_requests_waiting)"),
        sa.Column("kv_cache_usage", sa.Float(), comment="KV-cache blocks in use, 0-1 (vllm:kv_cache_usage_perc)"),
        sa.Column("requests", sa.Float(), comment="requests finished since the previous scrape (e2e histogram count)"),
        sa.Column("e2e_sum_s", sa.Float(), comment="their summed end-to-end latency; mean = e2e_sum_s / requests"),
        sa.Column("e2e_p50_s", sa.Float(), comment="median end-to-end latency since the previous scrape"),
        sa.Column("e2e_p95_s", sa.Float(), comment="95th percentile end-to-end latency since the previous scrape"),
        sa.Column("ttft_p50_s", sa.Float(), comment="median time to first token since the previous scrape"),
        sa.Column("ttft_p95_s", sa.Float(), comment="95th percentile time to first token since the previous scrape"),
        sa.Column("generation_tokens", sa.Float(), comment="tokens generated since the previous scrape"),
        sa.Column("finished", Json, comment="successful requests by finish reason since the previous scrape"),
        sa.Column("gpu", Json, comment="NVML per GPU: memory used/total bytes, utilisation 0-1 (GPU hosts only)"),
        sa.PrimaryKeyConstraint("reference", "ts", name="pk_reference_health"),
        comment=("The reference servers' own health, one row per scrape (`[shadow] health_interval`): up/down, "
                 "load, KV cache, latency and tokens since the previous scrape. Read by the reference_* rules."),
    )


def downgrade() -> None:
    op.drop_table("reference_health")
