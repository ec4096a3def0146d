"""Leak counters on stream_minutes: responses with personal data / a credential, per minute × model × app.

The `pii_in_response` and `secret_in_response` alert rules sum these instead of joining `detections` to
`records` over their window on every evaluation (a cost that grew with traffic). Minutes stored before this
migration count 0 leaks: a leak in the window just before the upgrade is not re-announced after it.

Revision ID: 0003_leak_counters
Revises: 0002_review_views
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003_leak_counters"
down_revision: str | None = "0002_review_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("pii_in_response", "records whose response holds personal data (the pii detector's findings)"),
    ("secret_in_response", "records whose response holds a credential (the secrets detector's findings)"),
)


def upgrade() -> None:
    for name, comment in COLUMNS:
        op.add_column("stream_minutes", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0",
                                                  comment=comment))


def downgrade() -> None:
    with op.batch_alter_table("stream_minutes") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
