"""The tables analysts query (docs/tables.md). Changed only through Alembic migrations.

SQLAlchemy Core tables, portable between Postgres (production) and SQLite (the embedded default).
JSON columns are JSONB on Postgres. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")
Ts = DateTime(timezone=True)
# SQLite only auto-increments INTEGER PRIMARY KEY columns.
BigId = BigInteger().with_variant(Integer(), "sqlite")

records = Table(
    "records",
    metadata,
    Column("id", String(200), primary_key=True, comment="request id from the log record; idempotency key"),
    Column("ts", Ts, nullable=False, comment="when the response was produced"),
    Column("ingested_at", Ts, nullable=False, comment="when the daemon stored it (arrival, not event time)"),
    Column("model", String(200), nullable=False),
    Column("app", String(200)),
    Column("route", String(200)),
    Column("user", String(200), comment="pseudonymous user id as sent"),
    Column("session", String(200)),
    Column("status", String(16), nullable=False, comment="ok or error"),
    Column("error", Text),
    Column("finish_reason", String(32)),
    Column("prompt_chars", Integer, nullable=False),
    Column("response_chars", Integer, nullable=False),
    Column("latency_ms", Float),
    Column("tokens_in", Integer),
    Column("tokens_out", Integer),
    Column("feedback_score", Float),
    Column("feedback_comment", Text),
    Column("cost_usd", Float, comment="what the call cost in US dollars, as the source reported it "
                                      "(LiteLLM response_cost, an OTLP cost attribute, or the record's cost_usd)"),
    # Per-record signals written by the detector chain (NULL when a detector did not run).
    Column("prompt_toxicity", Float),
    Column("response_toxicity", Float),
    Column("refusal", Boolean),
    Column("pii_count", Integer),
    Column("secret_count", Integer),
    Column("truncated", Boolean, comment="cut off by the token limit (finish reason or tokens_out at the limit)"),
    Column("prompt_words", Integer, comment="whitespace-separated words, for length drift without a tokenizer"),
    Column("response_words", Integer),
    Column("prompt_injection", Float,
           comment="prompt-injection/jailbreak score of the prompt (flagged at [detectors.injection] threshold)"),
    # Text as configured by store_text: redacted (default), full, or absent (NULL). With an encryption key
    # these clear columns hold redacted text only; the text store_text keeps is in text_encrypted.
    Column("prompt", Text),
    Column("response", Text),
    Column("text_encrypted", LargeBinary,
           comment="Fernet token of the texts store_text keeps (JSON), when [storage] encryption_key is set"),
    Column("text_key", String(16), comment="id of the key text_encrypted was made with (never the key)"),
    Column("metadata", Json, comment="unknown top-level fields and the record's metadata object"),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Index(None, "ts"),
    Index(None, "model", "app", "ts"),
    Index(None, "ingested_at"),  # messages stored lately, whatever their event time (dead_letter_rate)
)

detections = Table(
    "detections",
    metadata,
    Column("record_id", String(200), nullable=False),
    Column("detector", String(64), nullable=False, comment="stable detector name, e.g. toxicity, pii, secrets"),
    Column("score", Float, nullable=False),
    Column("flagged", Boolean, nullable=False),
    Column("details", Json, comment="types and positions of findings, never their values"),
    PrimaryKeyConstraint("record_id", "detector"),
    Index(None, "detector", "flagged"),
    comment="Findings: one row per (record, detector) that flagged it (all pairs with store_detections = 'all').",
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("key", LargeBinary),
    Column("raw", LargeBinary, comment="the message value exactly as received (NULL when encrypted)"),
    Column("raw_encrypted", LargeBinary, comment="Fernet token of raw, when [storage] encryption_key is set"),
    Column("raw_key", String(16), comment="id of the key raw_encrypted was made with (never the key)"),
    Column("reason", Text, nullable=False),
    Column("received_at", Ts, nullable=False),
    Column("digest", String(32), nullable=False, server_default="",
           comment="hash of the message key and value: new vs replayed"),
    Column("part", Integer, nullable=False, server_default="0",
           comment="0: the whole message; i + 1: item i of a many-record message (an OTLP span), raw = that item"),
    UniqueConstraint("topic", "partition", "offset", "digest", "part"),
    Index(None, "received_at"),
)

drift_events = Table(
    "drift_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("stream", String(400), nullable=False, comment="e.g. model=m1,app=* or * for all traffic"),
    Column("signal", String(64), nullable=False, comment="e.g. response_chars, latency_ms, toxicity"),
    Column("detector", String(64), nullable=False),
    Column("detected_at", Ts, nullable=False, comment="event time of the record that triggered it"),
    Column("created_at", Ts, nullable=False),
    Column("record_id", String(200), comment="record that triggered the detection"),
    Column("before", Json, comment="statistics before the change (mean, std/rate, n)"),
    Column("after", Json, comment="statistics after the change"),
    Column("details", Json),
    # Natural key: a redelivered batch re-detects the same change at the same record and inserts nothing.
    UniqueConstraint("stream", "signal", "detector", "record_id"),
    Index(None, "detected_at"),
    Index(None, "stream", "signal"),
)

drift_buckets = Table(
    "drift_buckets",
    metadata,
    Column("bucket_ms", BigInteger, nullable=False,
           comment="start of the bucket: epoch milliseconds of the records' event time (ts)"),
    Column("stream", String(400), nullable=False, comment="*, model=M, app=A or model=M,app=A"),
    Column("signal", String(64), nullable=False, comment="e.g. response_chars, latency_ms, toxic"),
    Column("n", BigInteger, nullable=False, comment="records with a value of this signal"),
    Column("total", Float, nullable=False,
           comment="sum of the values (log1p of lengths, latency and tokens); events for rates"),
    Column("total_sq", Float, nullable=False, comment="sum of the squared values"),
    Column("folded_n", BigInteger, nullable=False, server_default="0",
           comment="how much of n the fold job has fed to the detectors (n - folded_n arrived late)"),
    Column("folded_total", Float, nullable=False, server_default="0"),
    Column("folded_sq", Float, nullable=False, server_default="0"),
    Column("updated_at", Ts, nullable=False, info={"merge": "replace"}),
    PrimaryKeyConstraint("bucket_ms", "stream", "signal"),
    comment=("Sufficient statistics of every drift signal per short bucket and stream, added by each batch "
             "(each record counted once); the drift fold job reads them in bucket order."),
)

genai_events = Table(
    "genai_events",
    metadata,
    Column("trace_id", String(32), nullable=False, comment="hex trace id of the span the event belongs to"),
    Column("span_id", String(16), nullable=False, comment="hex span id of that span"),
    Column("name", String(64), nullable=False, comment="gen_ai.user.message, gen_ai.choice, ..."),
    Column("body", Json, comment="the event's body and attributes (message content)"),
    Column("ts", Ts, nullable=False, comment="the log record's time"),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("offset", BigInteger, nullable=False),
    Column("part", Integer, nullable=False, comment="the log record's position in its message"),
    Column("received_at", Ts, nullable=False),
    PrimaryKeyConstraint("topic", "partition", "offset", "part"),
    Index(None, "trace_id", "span_id"),
    Index(None, "received_at"),
    comment=("GenAI content events from the OTLP logs topic whose span has not been stored yet; the join step "
             "(monitor.ingest.steps.genai_join) moves them into the span's record when it arrives."),
)

consumer_progress = Table(
    "consumer_progress",
    metadata,
    Column("group_id", String(255), nullable=False),
    Column("topic", String(255), nullable=False),
    Column("partition", Integer, nullable=False),
    Column("committed", BigInteger, nullable=False, comment="next offset to read, as committed"),
    Column("highwater", BigInteger, comment="log end offset seen by the consumer; lag = highwater - committed"),
    Column("last_record_ts", Ts, comment="event time of the newest record stored from this partition"),
    Column("updated_at", Ts, nullable=False),
    PrimaryKeyConstraint("group_id", "topic", "partition"),
)

detector_state = Table(
    "detector_state",
    metadata,
    Column("key", String(500), primary_key=True, comment="which detector bank, e.g. drift"),
    Column("state", LargeBinary, nullable=False, comment="versioned serialised detector state"),
    Column("updated_at", Ts, nullable=False),
)

scheduler_locks = Table(
    "scheduler_locks",
    metadata,
    Column("job", String(200), primary_key=True),
    Column("owner", String(200)),
    Column("locked_until", Ts),
    Column("last_run_at", Ts, comment="scheduled time of the last completed run"),
)

reports = Table(
    "reports",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(64), nullable=False),
    Column("model", String(200)),
    Column("created_at", Ts, nullable=False),
    Column("reference_start", Ts),
    Column("reference_end", Ts),
    Column("current_start", Ts),
    Column("current_end", Ts),
    Column("summary", Json, nullable=False),
    Column("html", Text),
    Index(None, "created_at"),
)

rollups_hourly = Table(
    "rollups_hourly",
    metadata,
    Column("hour", Ts, nullable=False, comment="start of the hour (UTC) by record time"),
    Column("model", String(200), nullable=False),
    Column("app", String(200), nullable=False, comment="'' for records without an app"),
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("refusals", Integer, nullable=False),
    Column("toxic", Integer, nullable=False, comment="responses with toxicity >= the configured threshold"),
    Column("error_rate", Float, nullable=False),
    Column("refusal_rate", Float, comment="refusals / records the refusal detector scored"),
    Column("toxic_rate", Float, comment="toxic / records the toxicity detector scored"),
    Column("latency_p50_ms", Float),
    Column("latency_p95_ms", Float),
    Column("mean_prompt_chars", Float, nullable=False),
    Column("mean_response_chars", Float, nullable=False),
    Column("tokens_in", BigInteger, comment="sum over the hour"),
    Column("tokens_out", BigInteger, comment="sum over the hour"),
    Column("feedback_count", Integer, nullable=False),
    Column("feedback_mean", Float),
    Column("updated_at", Ts, nullable=False),
    PrimaryKeyConstraint("hour", "model", "app"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("fingerprint", String(500), nullable=False, comment="rule + scope; one row per firing episode"),
    Column("rule", String(200), nullable=False),
    Column("severity", String(16), nullable=False, comment="critical, warning or info"),
    Column("scope", String(400), nullable=False, comment="e.g. global, model=m1, app=chat"),
    Column("status", String(16), nullable=False, comment="firing or resolved"),
    Column("summary", Text, nullable=False),
    Column("details", Json),
    Column("first_seen", Ts, nullable=False),
    Column("last_seen", Ts, nullable=False),
    Column("resolved_at", Ts),
    Column("count", Integer, nullable=False),
    Column("last_notified_at", Ts),
    Column("silenced", Boolean, nullable=False, default=False),
    Column("inhibited", Boolean, nullable=False, default=False),
    Index(None, "status", "severity"),
    # At most one firing alert per fingerprint: repeats update it; a later episode is a new row.
    Index("ix_alerts_firing_fingerprint", "fingerprint", unique=True,
          postgresql_where=text("status = 'firing'"), sqlite_where=text("status = 'firing'")),
)

alert_outbox = Table(
    "alert_outbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("created_at", Ts, nullable=False),
    Column("sink", String(64), nullable=False, comment="console, slack-webhook, slack-api"),
    Column("channel", String(200)),
    Column("kind", String(16), nullable=False, comment="firing, resolved or reminder"),
    Column("group_key", String(500), nullable=False),
    Column("fingerprints", Json, nullable=False),
    Column("payload", Json, nullable=False, comment="the rendered message"),
    Column("status", String(16), nullable=False, comment="pending, sent or dead"),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Ts, nullable=False),
    Column("sent_at", Ts),
    Column("last_error", Text),
    Column("external_ref", String(200), comment="Slack channel:ts of the sent message, for chat.update"),
    Column("updates_id", BigInteger, comment="outbox id of the message this one edits in place (chat.update)"),
    Column("claimed_at", Ts, comment="set while a delivery attempt is in flight: after a crash, maybe sent"),
    Column("maybe_sent", Boolean, nullable=False, default=False, server_default=false(),
           comment="an earlier attempt failed after it may have reached Slack (a timeout): check before resending"),
    Index(None, "status", "next_attempt_at"),
    Index(None, "group_key"),
)

silences = Table(
    "silences",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False, comment="rule name or *"),
    Column("scope", String(400), nullable=False, comment="scope or *"),
    Column("reason", Text, nullable=False),
    Column("created_by", String(200)),
    Column("created_at", Ts, nullable=False),
    Column("ends_at", Ts, nullable=False),
    Column("expired_at", Ts),
)

reviewers = Table(
    "reviewers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("token_hash", String(200), nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    Column("sessions_not_before", Ts,
           comment="sessions issued at or before this time are void (sign-out, `watchkeeper reviewer revoke`)"),
)

service_secrets = Table(
    "service_secrets",
    metadata,
    Column("name", String(64), primary_key=True, comment="what the secret keys, e.g. review_session"),
    Column("value", String(200), nullable=False, comment="random, made on first use when none is configured"),
    Column("created_at", Ts, nullable=False),
    comment="Keys Watchkeeper made for itself (not for analysts; the read-only role cannot see this table).",
)

samples = Table(
    "samples",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("record_id", String(200), nullable=False),
    Column("reason", String(64), nullable=False, comment="uniform, or the risk that boosted it"),
    Column("stratum", String(400), nullable=False, comment="model=...,app=..."),
    Column("model", String(200), nullable=False),
    Column("app", String(200)),
    Column("ts", Ts, nullable=False, comment="event time of the record"),
    Column("window_start", Ts, nullable=False, comment="start of the sampling window holding ts"),
    Column("inclusion_probability", Float, nullable=False,
           comment="P(record sampled for this reason); weight 1/p for Horvitz-Thompson/Hajek estimates"),
    Column("reviews_wanted", Integer, nullable=False, default=1, comment="1, or 2 to measure agreement"),
    Column("sampled_at", Ts, nullable=False),
    UniqueConstraint("record_id", "reason"),
    Index(None, "stratum", "window_start"),
    Index(None, "window_start", "reason"),
)

sample_assignments = Table(
    "sample_assignments",
    metadata,
    Column("sample_id", BigInteger, ForeignKey("samples.id", ondelete="CASCADE"), nullable=False),
    Column("reviewer_id", BigInteger, ForeignKey("reviewers.id", ondelete="CASCADE"), nullable=False),
    Column("assigned_at", Ts, nullable=False),
    PrimaryKeyConstraint("sample_id", "reviewer_id"),
    Index(None, "reviewer_id"),
)

labels = Table(
    "labels",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("sample_id", BigInteger, ForeignKey("samples.id", ondelete="CASCADE"), nullable=False),
    Column("record_id", String(200), nullable=False),
    Column("reviewer_id", BigInteger, ForeignKey("reviewers.id"), nullable=False),
    Column("verdict", String(64), nullable=False),
    Column("tags", Json),
    Column("note", Text),
    Column("labelled_at", Ts, nullable=False),
    UniqueConstraint("record_id", "reviewer_id"),  # one verdict per reviewer and record; relabel replaces
)

shadow_comparisons = Table(
    "shadow_comparisons",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("record_id", String(200), nullable=False),
    Column("reference_model", String(200), nullable=False),
    Column("reference_endpoint", String(500)),
    Column("reference_answer", Text),
    Column("latency_ms", Float),
    Column("tokens_in", Integer),
    Column("tokens_out", Integer),
    Column("similarity", Float, comment="cosine similarity of the two answers' embeddings"),
    Column("rouge_l", Float),
    Column("length_ratio", Float, comment="production chars / reference chars"),
    Column("refusal_mismatch", Boolean),
    Column("reference_toxicity", Float),
    Column("reference_pii", Integer),
    Column("agree", Boolean),
    Column("metrics", Json),
    Column("error", Text, comment="why the replay failed, when it did"),
    Column("created_at", Ts, nullable=False),
    UniqueConstraint("record_id", "reference_model"),
)

reference_health = Table(
    "reference_health",
    metadata,
    Column("reference", String(500), nullable=False, comment="the reference's label (its name, else its URL)"),
    Column("ts", Ts, nullable=False, comment="when it was scraped"),
    Column("model", String(200), nullable=False),
    Column("up", Boolean, nullable=False, comment="/health answered 200 (or /v1/models, on servers without it)"),
    Column("error", Text, comment="why it was counted down, or why /metrics could not be read"),
    Column("running", Float, comment="requests in the running batch (vllm:num_requests_running)"),
    Column("waiting", Float, comment="requests queued, not yet scheduled (vllm:num_requests_waiting)"),
    Column("kv_cache_usage", Float, comment="KV-cache blocks in use, 0-1 (vllm:kv_cache_usage_perc)"),
    Column("requests", Float, comment="requests finished since the previous scrape (e2e histogram count)"),
    Column("e2e_sum_s", Float, comment="their summed end-to-end latency; mean = e2e_sum_s / requests"),
    Column("e2e_p50_s", Float, comment="median end-to-end latency since the previous scrape"),
    Column("e2e_p95_s", Float, comment="95th percentile end-to-end latency since the previous scrape"),
    Column("ttft_p50_s", Float, comment="median time to first token since the previous scrape"),
    Column("ttft_p95_s", Float, comment="95th percentile time to first token since the previous scrape"),
    Column("generation_tokens", Float, comment="tokens generated since the previous scrape"),
    Column("finished", Json, comment="successful requests by finish reason since the previous scrape"),
    Column("gpu", Json, comment="NVML per GPU: memory used/total bytes, utilisation 0-1 (GPU hosts only)"),
    PrimaryKeyConstraint("reference", "ts"),
    comment=("The reference servers' own health, one row per scrape (`[shadow] health_interval`): up/down, "
             "load, KV cache, latency and tokens since the previous scrape. Read by the reference_* rules."),
)

STREAM_LATENCY_BOUNDS_MS: tuple[float, ...] = tuple(10 ** (k / 10) for k in range(59))
"""Upper bounds of `stream_minutes` latency buckets: 1 ms … 631 s, ten per decade (a factor 1.26 apart).
``lat_00`` counts latencies under 1 ms, ``lat_NN`` those in [bound NN-1, bound NN), ``lat_59`` 631 s and
more. A quantile read from them is exact to one bucket (see `monitor.ingest.steps.aggregate.quantile`)."""


def _latency_bucket_comment(i: int) -> str:
    ms = [f"{b:.4g}" if b < 1e4 else f"{b:.0f}" for b in STREAM_LATENCY_BOUNDS_MS]
    if i == 0:
        return f"records with latency_ms < {ms[0]}"
    if i == len(ms):
        return f"records with latency_ms >= {ms[-1]}"
    return f"records with {ms[i - 1]} <= latency_ms < {ms[i]}"


STREAM_LATENCY_COLUMNS: tuple[str, ...] = tuple(f"lat_{i:02d}" for i in range(len(STREAM_LATENCY_BOUNDS_MS) + 1))

stream_minutes = Table(
    "stream_minutes",
    metadata,
    Column("minute", Ts, nullable=False, comment="start of the minute (UTC) by record time"),
    Column("model", String(200), nullable=False),
    Column("app", String(200), nullable=False, comment="'' for records without an app"),
    Column("n", BigInteger, nullable=False, comment="records"),
    Column("errors", BigInteger, nullable=False, comment="records with status = 'error'"),
    Column("toxicity_scored", BigInteger, nullable=False, comment="records with a response_toxicity score"),
    Column("toxic", BigInteger, nullable=False,
           comment="records with response_toxicity >= [detectors.toxicity] threshold (default 0.3)"),
    Column("refusal_scored", BigInteger, nullable=False, comment="records the refusal detector judged"),
    Column("refusals", BigInteger, nullable=False, comment="records judged a refusal"),
    Column("pii_in_response", BigInteger, nullable=False, server_default="0",
           comment="records whose response holds personal data (the pii detector's findings)"),
    Column("secret_in_response", BigInteger, nullable=False, server_default="0",
           comment="records whose response holds a credential (the secrets detector's findings)"),
    Column("injection_scored", BigInteger, nullable=False, server_default="0",
           comment="records whose prompt the prompt_injection detector judged"),
    Column("injections", BigInteger, nullable=False, server_default="0",
           comment="records whose prompt it flagged as an injection or jailbreak attempt"),
    Column("latency_n", BigInteger, nullable=False, comment="records with a latency_ms"),
    Column("latency_sum", Float, nullable=False, comment="sum of latency_ms; mean = latency_sum / latency_n"),
    Column("latency_min", Float, info={"merge": "min"}),
    Column("cost_n", BigInteger, nullable=False, server_default="0", comment="records with a cost_usd"),
    Column("cost_sum", Float, nullable=False, server_default="0", comment="sum of cost_usd (US dollars)"),
    Column("latency_max", Float, info={"merge": "max"}),
    *(Column(name, BigInteger, nullable=False, comment=_latency_bucket_comment(i))
      for i, name in enumerate(STREAM_LATENCY_COLUMNS)),
    Column("last_ts", Ts, nullable=False, info={"merge": "max"}, comment="newest record time in the minute"),
    Column("updated_at", Ts, nullable=False, info={"merge": "replace"}),
    PrimaryKeyConstraint("minute", "model", "app"),
    comment=("Per-minute counters per model × app, maintained by the pipeline with each batch (each record "
             "counted once); the alert rules read these instead of `records`. Sum rows for any window."),
)
