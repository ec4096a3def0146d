"""Review sessions that really end: a per-reviewer "void before" time, and a stored session key.

Sign-out and `watchkeeper reviewer revoke` set `reviewers.sessions_not_before`, so every cookie issued before
is refused at once, on every server. When no `[review] session_secret` is configured, a random key is made on
first use and kept in `service_secrets`, so a cookie can no longer be forged from a read of `reviewers`.

Revision ID: 0004_review_sessions
Revises: 0003_leak_counters
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004_review_sessions"
down_revision: str | None = "0003_leak_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("reviewers", sa.Column(
        "sessions_not_before", sa.DateTime(timezone=True),
        comment="sessions issued at or before this time are void (sign-out, `watchkeeper reviewer revoke`)"))
    op.create_table(
        "service_secrets",
        sa.Column("name", sa.String(64), primary_key=True, comment="what the secret keys, e.g. review_session"),
        sa.Column("value", sa.String(200), nullable=False,
                  comment="random, made on first use when none is configured"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        comment="Keys Watchkeeper made for itself (not for analysts; the read-only role cannot see this table).",
    )


def downgrade() -> None:
    op.drop_table("service_secrets")
    with op.batch_alter_table("reviewers") as batch:
        batch.drop_column("sessions_not_before")
