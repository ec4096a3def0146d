"""Prompt-injection counters: the score per record, and flagged/judged prompts per minute × model × app.

`records.prompt_injection` holds the prompt_injection detector's score (NULL where it did not run);
`stream_minutes.injection_scored` and `injections` count the prompts it judged and flagged, which the
`injection_rate` alert rule sums. Minutes stored before this migration count 0 judged prompts, so the rule
waits for ``min_samples`` new ones rather than reading 0 % from old minutes.

Revision ID: 0010_injection_counters
Revises: 0009_encryption
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_injection_counters"
down_revision: str | None = "0009_encryption"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTERS = (
    ("injection_scored", "records whose prompt the prompt_injection detector judged"),
    ("injections", "records whose prompt it flagged as an injection or jailbreak attempt"),
)
SCORE_COMMENT = "prompt-injection/jailbreak score of the prompt (flagged at [detectors.injection] threshold)"


def upgrade() -> None:
    op.add_column("records", sa.Column("prompt_injection", sa.Float(), comment=SCORE_COMMENT))
    for name, comment in COUNTERS:
        op.add_column("stream_minutes", sa.Column(name, sa.BigInteger(), nullable=False, server_default="0",
                                                  comment=comment))


def downgrade() -> None:
    with op.batch_alter_table("stream_minutes") as batch:
        for name, _ in reversed(COUNTERS):
            batch.drop_column(name)
    # Not a batch (copy-and-rename) on SQLite: views read `records`, and renaming a copy under them fails.
    # Plain DROP COLUMN works on Postgres and on SQLite >= 3.35.
    op.drop_column("records", "prompt_injection")
