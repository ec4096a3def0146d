"""Cost as a signal, GenAI events from the OTLP logs topic, and dead letters per part of a message.

* ``records.cost_usd`` (what a call cost, when the source says: LiteLLM's ``response_cost``, an OTLP cost
  attribute, the record's ``cost_usd``) and ``stream_minutes.cost_n`` / ``cost_sum`` (per-minute spend that
  the ``spend`` alert rule sums);
* ``genai_events``: per-message content events (``gen_ai.user.message``, ``gen_ai.choice``…) read from the
  logs topic before their span, held until the span's record is stored;
* ``dead_letters.part``: one dead letter per unusable item of a many-record message (an OTLP span), so the
  natural key becomes (topic, partition, offset, digest, part); existing rows are part 0 (whole messages).

Revision ID: 0011_cost_genai_events
Revises: 0010_injection_counters
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0011_cost_genai_events"
down_revision: str | None = "0010_injection_counters"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # Plain ALTER TABLE (SQLite >= 3.35 adds and drops columns in place): a batch copy of `records` would break
    # the views that read it.
    op.add_column("records", sa.Column(
        "cost_usd", sa.Float(),
        comment="what the call cost in US dollars, as the source reported it (LiteLLM response_cost, an OTLP "
                "cost attribute, or the record's cost_usd)"))
    op.add_column("stream_minutes", sa.Column("cost_n", sa.BigInteger(), nullable=False, server_default="0",
                                              comment="records with a cost_usd"))
    op.add_column("stream_minutes", sa.Column("cost_sum", sa.Float(), nullable=False, server_default="0",
                                              comment="sum of cost_usd (US dollars)"))
    with op.batch_alter_table("dead_letters") as batch:
        batch.add_column(sa.Column(
            "part", sa.Integer(), nullable=False, server_default="0",
            comment="0: the whole message; i + 1: item i of a many-record message (an OTLP span), raw = that item"))
        batch.drop_constraint("uq_dead_letters_topic_partition_offset_digest", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_topic_partition_offset_digest_part",
                                       ["topic", "partition", "offset", "digest", "part"])
    op.create_table(
        "genai_events",
        sa.Column("trace_id", sa.String(32), nullable=False, comment="hex trace id of the span the event belongs to"),
        sa.Column("span_id", sa.String(16), nullable=False, comment="hex span id of that span"),
        sa.Column("name", sa.String(64), nullable=False, comment="gen_ai.user.message, gen_ai.choice, ..."),
        sa.Column("body", _JSON, comment="the event's body and attributes (message content)"),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="the log record's time"),
        sa.Column("topic", sa.String(255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("part", sa.Integer(), nullable=False, comment="the log record's position in its message"),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("topic", "partition", "offset", "part", name="pk_genai_events"),
        comment=("GenAI content events from the OTLP logs topic whose span has not been stored yet; the join step "
                 "(monitor.ingest.steps.genai_join) moves them into the span's record when it arrives."),
    )
    op.create_index("ix_genai_events_trace_id_span_id", "genai_events", ["trace_id", "span_id"])
    op.create_index("ix_genai_events_received_at", "genai_events", ["received_at"])


def downgrade() -> None:
    op.drop_table("genai_events")
    conn = op.get_bind()
    conn.execute(sa.text("DELETE FROM dead_letters WHERE part <> 0"))
    with op.batch_alter_table("dead_letters") as batch:
        batch.drop_constraint("uq_dead_letters_topic_partition_offset_digest_part", type_="unique")
        batch.create_unique_constraint("uq_dead_letters_topic_partition_offset_digest",
                                       ["topic", "partition", "offset", "digest"])
        batch.drop_column("part")
    op.drop_column("stream_minutes", "cost_sum")
    op.drop_column("stream_minutes", "cost_n")
    op.drop_column("records", "cost_usd")
