"""initial schema

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23 04:51:30.090898
"""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sink", sa.String(length=64), nullable=False, comment="console, slack-webhook, slack-api"),
        sa.Column("channel", sa.String(length=200), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False, comment="firing, resolved or reminder"),
        sa.Column("group_key", sa.String(length=500), nullable=False),
        sa.Column(
            "fingerprints",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "payload",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
            comment="the rendered message",
        ),
        sa.Column("status", sa.String(length=16), nullable=False, comment="pending, sent or dead"),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "external_ref",
            sa.String(length=200),
            nullable=True,
            comment="Slack channel:ts of the sent message, for chat.update",
        ),
        sa.Column(
            "updates_id",
            sa.BigInteger(),
            nullable=True,
            comment="outbox id of the message this one edits in place (chat.update)",
        ),
        sa.Column(
            "claimed_at",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="set while a delivery attempt is in flight: after a crash, maybe sent",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_outbox")),
    )
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alert_outbox_group_key"), ["group_key"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_alert_outbox_status_next_attempt_at"), ["status", "next_attempt_at"], unique=False
        )

    op.create_table(
        "alerts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column(
            "fingerprint", sa.String(length=500), nullable=False, comment="rule + scope; one row per firing episode"
        ),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False, comment="critical, warning or info"),
        sa.Column("scope", sa.String(length=400), nullable=False, comment="e.g. global, model=m1, app=chat"),
        sa.Column("status", sa.String(length=16), nullable=False, comment="firing or resolved"),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column(
            "details", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("silenced", sa.Boolean(), nullable=False),
        sa.Column("inhibited", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
    )
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_alerts_firing_fingerprint",
            ["fingerprint"],
            unique=True,
            postgresql_where=sa.text("status = 'firing'"),
            sqlite_where=sa.text("status = 'firing'"),
        )
        batch_op.create_index(batch_op.f("ix_alerts_status_severity"), ["status", "severity"], unique=False)

    op.create_table(
        "consumer_progress",
        sa.Column("group_id", sa.String(length=255), nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("committed", sa.BigInteger(), nullable=False, comment="next offset to read, as committed"),
        sa.Column(
            "highwater",
            sa.BigInteger(),
            nullable=True,
            comment="log end offset seen by the consumer; lag = highwater - committed",
        ),
        sa.Column(
            "last_record_ts",
            sa.DateTime(timezone=True),
            nullable=True,
            comment="event time of the newest record stored from this partition",
        ),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "topic", "partition", name=op.f("pk_consumer_progress")),
    )
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=True, comment="the message value exactly as received"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint("topic", "partition", "offset", name=op.f("uq_dead_letters_topic_partition_offset")),
    )
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_dead_letters_received_at"), ["received_at"], unique=False)

    op.create_table(
        "detections",
        sa.Column("record_id", sa.String(length=200), nullable=False),
        sa.Column(
            "detector",
            sa.String(length=64),
            nullable=False,
            comment="stable detector name, e.g. toxicity, pii, secrets",
        ),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column(
            "details",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
            comment="types and positions of findings, never their values",
        ),
        sa.PrimaryKeyConstraint("record_id", "detector", name=op.f("pk_detections")),
        comment="Findings: one row per (record, detector) that flagged it (all pairs with store_detections = 'all').",
    )
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_detections_detector_flagged"), ["detector", "flagged"], unique=False)

    op.create_table(
        "detector_state",
        sa.Column("key", sa.String(length=500), nullable=False, comment="which detector bank, e.g. drift"),
        sa.Column("state", sa.LargeBinary(), nullable=False, comment="versioned serialised detector state"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_detector_state")),
    )
    op.create_table(
        "drift_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=400), nullable=False, comment="e.g. model=m1,app=* or * for all traffic"),
        sa.Column("signal", sa.String(length=64), nullable=False, comment="e.g. response_chars, latency_ms, toxicity"),
        sa.Column("detector", sa.String(length=64), nullable=False),
        sa.Column(
            "detected_at",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="event time of the record that triggered it",
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("record_id", sa.String(length=200), nullable=True, comment="record that triggered the detection"),
        sa.Column(
            "before",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
            comment="statistics before the change (mean, std/rate, n)",
        ),
        sa.Column(
            "after",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
            comment="statistics after the change",
        ),
        sa.Column(
            "details", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drift_events")),
        sa.UniqueConstraint(
            "stream", "signal", "detector", "record_id", name=op.f("uq_drift_events_stream_signal_detector_record_id")
        ),
    )
    with op.batch_alter_table("drift_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drift_events_detected_at"), ["detected_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_drift_events_stream_signal"), ["stream", "signal"], unique=False)

    op.create_table(
        "records",
        sa.Column(
            "id", sa.String(length=200), nullable=False, comment="request id from the log record; idempotency key"
        ),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="when the response was produced"),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("app", sa.String(length=200), nullable=True),
        sa.Column("route", sa.String(length=200), nullable=True),
        sa.Column("user", sa.String(length=200), nullable=True, comment="pseudonymous user id as sent"),
        sa.Column("session", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False, comment="ok or error"),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("prompt_chars", sa.Integer(), nullable=False),
        sa.Column("response_chars", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("feedback_score", sa.Float(), nullable=True),
        sa.Column("feedback_comment", sa.Text(), nullable=True),
        sa.Column("prompt_toxicity", sa.Float(), nullable=True),
        sa.Column("response_toxicity", sa.Float(), nullable=True),
        sa.Column("refusal", sa.Boolean(), nullable=True),
        sa.Column("pii_count", sa.Integer(), nullable=True),
        sa.Column("secret_count", sa.Integer(), nullable=True),
        sa.Column(
            "truncated",
            sa.Boolean(),
            nullable=True,
            comment="cut off by the token limit (finish reason or tokens_out at the limit)",
        ),
        sa.Column(
            "prompt_words",
            sa.Integer(),
            nullable=True,
            comment="whitespace-separated words, for length drift without a tokenizer",
        ),
        sa.Column("response_words", sa.Integer(), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("response", sa.Text(), nullable=True),
        sa.Column(
            "metadata",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
            comment="unknown top-level fields and the record's metadata object",
        ),
        sa.Column("topic", sa.String(length=255), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_records")),
    )
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_records_model_app_ts"), ["model", "app", "ts"], unique=False)
        batch_op.create_index(batch_op.f("ix_records_ts"), ["ts"], unique=False)

    op.create_table(
        "reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reference_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "summary", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=False
        ),
        sa.Column("html", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
    )
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reports_created_at"), ["created_at"], unique=False)

    op.create_table(
        "reviewers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("token_hash", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewers")),
        sa.UniqueConstraint("name", name=op.f("uq_reviewers_name")),
    )
    op.create_table(
        "rollups_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False, comment="start of the hour (UTC) by record time"),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("app", sa.String(length=200), nullable=False, comment="'' for records without an app"),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("toxic", sa.Integer(), nullable=False, comment="responses with toxicity >= the configured threshold"),
        sa.Column("error_rate", sa.Float(), nullable=False),
        sa.Column("refusal_rate", sa.Float(), nullable=True, comment="refusals / records the refusal detector scored"),
        sa.Column("toxic_rate", sa.Float(), nullable=True, comment="toxic / records the toxicity detector scored"),
        sa.Column("latency_p50_ms", sa.Float(), nullable=True),
        sa.Column("latency_p95_ms", sa.Float(), nullable=True),
        sa.Column("mean_prompt_chars", sa.Float(), nullable=False),
        sa.Column("mean_response_chars", sa.Float(), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=True, comment="sum over the hour"),
        sa.Column("tokens_out", sa.BigInteger(), nullable=True, comment="sum over the hour"),
        sa.Column("feedback_count", sa.Integer(), nullable=False),
        sa.Column("feedback_mean", sa.Float(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hour", "model", "app", name=op.f("pk_rollups_hourly")),
    )
    op.create_table(
        "samples",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False, comment="uniform, or the risk that boosted it"),
        sa.Column("stratum", sa.String(length=400), nullable=False, comment="model=...,app=..."),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("app", sa.String(length=200), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False, comment="event time of the record"),
        sa.Column(
            "window_start",
            sa.DateTime(timezone=True),
            nullable=False,
            comment="start of the sampling window holding ts",
        ),
        sa.Column(
            "inclusion_probability",
            sa.Float(),
            nullable=False,
            comment="P(record sampled for this reason); weight 1/p for Horvitz-Thompson/Hajek estimates",
        ),
        sa.Column("reviews_wanted", sa.Integer(), nullable=False, comment="1, or 2 to measure agreement"),
        sa.Column("sampled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_samples")),
        sa.UniqueConstraint("record_id", "reason", name=op.f("uq_samples_record_id_reason")),
    )
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_samples_stratum_window_start"), ["stratum", "window_start"], unique=False)
        batch_op.create_index(batch_op.f("ix_samples_window_start_reason"), ["window_start", "reason"], unique=False)

    op.create_table(
        "scheduler_locks",
        sa.Column("job", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "last_run_at", sa.DateTime(timezone=True), nullable=True, comment="scheduled time of the last completed run"
        ),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_scheduler_locks")),
    )
    op.create_table(
        "shadow_comparisons",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=200), nullable=False),
        sa.Column("reference_model", sa.String(length=200), nullable=False),
        sa.Column("reference_endpoint", sa.String(length=500), nullable=True),
        sa.Column("reference_answer", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=True),
        sa.Column("tokens_out", sa.Integer(), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True, comment="cosine similarity of the two answers' embeddings"),
        sa.Column("rouge_l", sa.Float(), nullable=True),
        sa.Column("length_ratio", sa.Float(), nullable=True, comment="production chars / reference chars"),
        sa.Column("refusal_mismatch", sa.Boolean(), nullable=True),
        sa.Column("reference_toxicity", sa.Float(), nullable=True),
        sa.Column("reference_pii", sa.Integer(), nullable=True),
        sa.Column("agree", sa.Boolean(), nullable=True),
        sa.Column(
            "metrics", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True
        ),
        sa.Column("error", sa.Text(), nullable=True, comment="why the replay failed, when it did"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shadow_comparisons")),
        sa.UniqueConstraint(
            "record_id", "reference_model", name=op.f("uq_shadow_comparisons_record_id_reference_model")
        ),
    )
    op.create_table(
        "silences",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False, comment="rule name or *"),
        sa.Column("scope", sa.String(length=400), nullable=False, comment="scope or *"),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    op.create_table(
        "stream_minutes",
        sa.Column(
            "minute", sa.DateTime(timezone=True), nullable=False, comment="start of the minute (UTC) by record time"
        ),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("app", sa.String(length=200), nullable=False, comment="'' for records without an app"),
        sa.Column("n", sa.BigInteger(), nullable=False, comment="records"),
        sa.Column("errors", sa.BigInteger(), nullable=False, comment="records with status = 'error'"),
        sa.Column("toxicity_scored", sa.BigInteger(), nullable=False, comment="records with a response_toxicity score"),
        sa.Column(
            "toxic",
            sa.BigInteger(),
            nullable=False,
            comment="records with response_toxicity >= 0.5 (detectors.drift.signals.TOXIC_AT)",
        ),
        sa.Column("refusal_scored", sa.BigInteger(), nullable=False, comment="records the refusal detector judged"),
        sa.Column("refusals", sa.BigInteger(), nullable=False, comment="records judged a refusal"),
        sa.Column("latency_n", sa.BigInteger(), nullable=False, comment="records with a latency_ms"),
        sa.Column(
            "latency_sum", sa.Float(), nullable=False, comment="sum of latency_ms; mean = latency_sum / latency_n"
        ),
        sa.Column("latency_min", sa.Float(), nullable=True),
        sa.Column("latency_max", sa.Float(), nullable=True),
        sa.Column("lat_00", sa.BigInteger(), nullable=False, comment="records with latency_ms < 1"),
        sa.Column("lat_01", sa.BigInteger(), nullable=False, comment="records with 1 <= latency_ms < 1.259"),
        sa.Column("lat_02", sa.BigInteger(), nullable=False, comment="records with 1.259 <= latency_ms < 1.585"),
        sa.Column("lat_03", sa.BigInteger(), nullable=False, comment="records with 1.585 <= latency_ms < 1.995"),
        sa.Column("lat_04", sa.BigInteger(), nullable=False, comment="records with 1.995 <= latency_ms < 2.512"),
        sa.Column("lat_05", sa.BigInteger(), nullable=False, comment="records with 2.512 <= latency_ms < 3.162"),
        sa.Column("lat_06", sa.BigInteger(), nullable=False, comment="records with 3.162 <= latency_ms < 3.981"),
        sa.Column("lat_07", sa.BigInteger(), nullable=False, comment="records with 3.981 <= latency_ms < 5.012"),
        sa.Column("lat_08", sa.BigInteger(), nullable=False, comment="records with 5.012 <= latency_ms < 6.31"),
        sa.Column("lat_09", sa.BigInteger(), nullable=False, comment="records with 6.31 <= latency_ms < 7.943"),
        sa.Column("lat_10", sa.BigInteger(), nullable=False, comment="records with 7.943 <= latency_ms < 10"),
        sa.Column("lat_11", sa.BigInteger(), nullable=False, comment="records with 10 <= latency_ms < 12.59"),
        sa.Column("lat_12", sa.BigInteger(), nullable=False, comment="records with 12.59 <= latency_ms < 15.85"),
        sa.Column("lat_13", sa.BigInteger(), nullable=False, comment="records with 15.85 <= latency_ms < 19.95"),
        sa.Column("lat_14", sa.BigInteger(), nullable=False, comment="records with 19.95 <= latency_ms < 25.12"),
        sa.Column("lat_15", sa.BigInteger(), nullable=False, comment="records with 25.12 <= latency_ms < 31.62"),
        sa.Column("lat_16", sa.BigInteger(), nullable=False, comment="records with 31.62 <= latency_ms < 39.81"),
        sa.Column("lat_17", sa.BigInteger(), nullable=False, comment="records with 39.81 <= latency_ms < 50.12"),
        sa.Column("lat_18", sa.BigInteger(), nullable=False, comment="records with 50.12 <= latency_ms < 63.1"),
        sa.Column("lat_19", sa.BigInteger(), nullable=False, comment="records with 63.1 <= latency_ms < 79.43"),
        sa.Column("lat_20", sa.BigInteger(), nullable=False, comment="records with 79.43 <= latency_ms < 100"),
        sa.Column("lat_21", sa.BigInteger(), nullable=False, comment="records with 100 <= latency_ms < 125.9"),
        sa.Column("lat_22", sa.BigInteger(), nullable=False, comment="records with 125.9 <= latency_ms < 158.5"),
        sa.Column("lat_23", sa.BigInteger(), nullable=False, comment="records with 158.5 <= latency_ms < 199.5"),
        sa.Column("lat_24", sa.BigInteger(), nullable=False, comment="records with 199.5 <= latency_ms < 251.2"),
        sa.Column("lat_25", sa.BigInteger(), nullable=False, comment="records with 251.2 <= latency_ms < 316.2"),
        sa.Column("lat_26", sa.BigInteger(), nullable=False, comment="records with 316.2 <= latency_ms < 398.1"),
        sa.Column("lat_27", sa.BigInteger(), nullable=False, comment="records with 398.1 <= latency_ms < 501.2"),
        sa.Column("lat_28", sa.BigInteger(), nullable=False, comment="records with 501.2 <= latency_ms < 631"),
        sa.Column("lat_29", sa.BigInteger(), nullable=False, comment="records with 631 <= latency_ms < 794.3"),
        sa.Column("lat_30", sa.BigInteger(), nullable=False, comment="records with 794.3 <= latency_ms < 1000"),
        sa.Column("lat_31", sa.BigInteger(), nullable=False, comment="records with 1000 <= latency_ms < 1259"),
        sa.Column("lat_32", sa.BigInteger(), nullable=False, comment="records with 1259 <= latency_ms < 1585"),
        sa.Column("lat_33", sa.BigInteger(), nullable=False, comment="records with 1585 <= latency_ms < 1995"),
        sa.Column("lat_34", sa.BigInteger(), nullable=False, comment="records with 1995 <= latency_ms < 2512"),
        sa.Column("lat_35", sa.BigInteger(), nullable=False, comment="records with 2512 <= latency_ms < 3162"),
        sa.Column("lat_36", sa.BigInteger(), nullable=False, comment="records with 3162 <= latency_ms < 3981"),
        sa.Column("lat_37", sa.BigInteger(), nullable=False, comment="records with 3981 <= latency_ms < 5012"),
        sa.Column("lat_38", sa.BigInteger(), nullable=False, comment="records with 5012 <= latency_ms < 6310"),
        sa.Column("lat_39", sa.BigInteger(), nullable=False, comment="records with 6310 <= latency_ms < 7943"),
        sa.Column("lat_40", sa.BigInteger(), nullable=False, comment="records with 7943 <= latency_ms < 10000"),
        sa.Column("lat_41", sa.BigInteger(), nullable=False, comment="records with 10000 <= latency_ms < 12589"),
        sa.Column("lat_42", sa.BigInteger(), nullable=False, comment="records with 12589 <= latency_ms < 15849"),
        sa.Column("lat_43", sa.BigInteger(), nullable=False, comment="records with 15849 <= latency_ms < 19953"),
        sa.Column("lat_44", sa.BigInteger(), nullable=False, comment="records with 19953 <= latency_ms < 25119"),
        sa.Column("lat_45", sa.BigInteger(), nullable=False, comment="records with 25119 <= latency_ms < 31623"),
        sa.Column("lat_46", sa.BigInteger(), nullable=False, comment="records with 31623 <= latency_ms < 39811"),
        sa.Column("lat_47", sa.BigInteger(), nullable=False, comment="records with 39811 <= latency_ms < 50119"),
        sa.Column("lat_48", sa.BigInteger(), nullable=False, comment="records with 50119 <= latency_ms < 63096"),
        sa.Column("lat_49", sa.BigInteger(), nullable=False, comment="records with 63096 <= latency_ms < 79433"),
        sa.Column("lat_50", sa.BigInteger(), nullable=False, comment="records with 79433 <= latency_ms < 100000"),
        sa.Column("lat_51", sa.BigInteger(), nullable=False, comment="records with 100000 <= latency_ms < 125893"),
        sa.Column("lat_52", sa.BigInteger(), nullable=False, comment="records with 125893 <= latency_ms < 158489"),
        sa.Column("lat_53", sa.BigInteger(), nullable=False, comment="records with 158489 <= latency_ms < 199526"),
        sa.Column("lat_54", sa.BigInteger(), nullable=False, comment="records with 199526 <= latency_ms < 251189"),
        sa.Column("lat_55", sa.BigInteger(), nullable=False, comment="records with 251189 <= latency_ms < 316228"),
        sa.Column("lat_56", sa.BigInteger(), nullable=False, comment="records with 316228 <= latency_ms < 398107"),
        sa.Column("lat_57", sa.BigInteger(), nullable=False, comment="records with 398107 <= latency_ms < 501187"),
        sa.Column("lat_58", sa.BigInteger(), nullable=False, comment="records with 501187 <= latency_ms < 630957"),
        sa.Column("lat_59", sa.BigInteger(), nullable=False, comment="records with latency_ms >= 630957"),
        sa.Column("last_ts", sa.DateTime(timezone=True), nullable=False, comment="newest record time in the minute"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("minute", "model", "app", name=op.f("pk_stream_minutes")),
        comment="Per-minute counters per model × app, maintained by the pipeline with each batch (each record counted once); the alert rules read these instead of `records`. Sum rows for any window.",
    )
    op.create_table(
        "labels",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("record_id", sa.String(length=200), nullable=False),
        sa.Column("reviewer_id", sa.BigInteger(), nullable=False),
        sa.Column("verdict", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["reviewer_id"], ["reviewers.id"], name=op.f("fk_labels_reviewer_id_reviewers")),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_labels_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_labels")),
        sa.UniqueConstraint("record_id", "reviewer_id", name=op.f("uq_labels_record_id_reviewer_id")),
    )
    op.create_table(
        "sample_assignments",
        sa.Column("sample_id", sa.BigInteger(), nullable=False),
        sa.Column("reviewer_id", sa.BigInteger(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["reviewers.id"],
            name=op.f("fk_sample_assignments_reviewer_id_reviewers"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sample_id"], ["samples.id"], name=op.f("fk_sample_assignments_sample_id_samples"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sample_id", "reviewer_id", name=op.f("pk_sample_assignments")),
    )
    with op.batch_alter_table("sample_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sample_assignments_reviewer_id"), ["reviewer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sample_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sample_assignments_reviewer_id"))

    op.drop_table("sample_assignments")
    op.drop_table("labels")
    op.drop_table("stream_minutes")
    op.drop_table("silences")
    op.drop_table("shadow_comparisons")
    op.drop_table("scheduler_locks")
    with op.batch_alter_table("samples", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_samples_window_start_reason"))
        batch_op.drop_index(batch_op.f("ix_samples_stratum_window_start"))

    op.drop_table("samples")
    op.drop_table("rollups_hourly")
    op.drop_table("reviewers")
    with op.batch_alter_table("reports", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reports_created_at"))

    op.drop_table("reports")
    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_records_ts"))
        batch_op.drop_index(batch_op.f("ix_records_model_app_ts"))

    op.drop_table("records")
    with op.batch_alter_table("drift_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drift_events_stream_signal"))
        batch_op.drop_index(batch_op.f("ix_drift_events_detected_at"))

    op.drop_table("drift_events")
    op.drop_table("detector_state")
    with op.batch_alter_table("detections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_detections_detector_flagged"))

    op.drop_table("detections")
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dead_letters_received_at"))

    op.drop_table("dead_letters")
    op.drop_table("consumer_progress")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_status_severity"))
        batch_op.drop_index(
            "ix_alerts_firing_fingerprint",
            postgresql_where=sa.text("status = 'firing'"),
            sqlite_where=sa.text("status = 'firing'"),
        )

    op.drop_table("alerts")
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_outbox_status_next_attempt_at"))
        batch_op.drop_index(batch_op.f("ix_alert_outbox_group_key"))

    op.drop_table("alert_outbox")
