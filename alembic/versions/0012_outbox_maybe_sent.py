"""``alert_outbox.maybe_sent``: an attempt failed after it may have reached Slack, so the next one checks first.

A chat.postMessage whose answer times out may still have been posted; the retry looks the message up by its
metadata (the outbox id) instead of posting it twice. Existing rows start false.

Revision ID: 0012_outbox_maybe_sent
Revises: 0011_cost_genai_events
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012_outbox_maybe_sent"
down_revision: str | None = "0011_cost_genai_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("alert_outbox", sa.Column(
        "maybe_sent", sa.Boolean(), nullable=False, server_default=sa.false(),
        comment="an earlier attempt failed after it may have reached Slack (a timeout): check before resending"))


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox") as batch:
        batch.drop_column("maybe_sent")
