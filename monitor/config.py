"""Typed configuration: the one place where `monitor.toml` and the environment are read and validated.

Every section is a pydantic model that forbids unknown keys, so a typo stops start-up with the key and the
file named. Environment variables (docs/cli.md) override the file for secrets and deployment.
Secrets are `SecretStr`: they never appear in a repr, a log line or an error message.
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from detectors.config import DetectorsConfig

if TYPE_CHECKING:
    from monitor.storage.crypto import Cipher
from monitor.durations import parse_duration

Severity = Literal["critical", "warning", "info"]
Scope = Literal["global", "model", "app"]


class Section(BaseModel):
    """A configuration table. A table-valued key whose default is not empty (``[sampling.risk_rates]``…)
    merges into that default key by key, so a file that sets one entry keeps the others, as ``monitor.toml``
    promises; set an entry to its "off" value (a rate of 0) to turn it off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _merge_table_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name, info in cls.model_fields.items():
            given = data.get(name)
            if isinstance(given, dict) and isinstance(info.default, dict) and info.default:
                merged[name] = {**info.default, **given}
        return merged


class DatabaseConfig(Section):
    url: str = "sqlite:///watchkeeper.db"
    """SQLAlchemy URL. ``postgresql+psycopg://user@host/db`` in production; SQLite is the embedded default."""
    retry_initial_s: Annotated[float, Field(gt=0)] = 0.5
    retry_max_s: Annotated[float, Field(gt=0)] = 5.0
    """Longest wait between two attempts to store a batch while the database is down: once it answers again,
    the backlog moves within this."""
    connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    statement_timeout_s: Annotated[float, Field(gt=0)] = 300.0
    """Server-side limit on one statement (Postgres): a statement stuck this long fails and is retried."""

    @field_validator("url")
    @classmethod
    def _driver(cls, value: str) -> str:
        """``postgres://`` (Heroku's form, and many tools') and a bare ``postgresql://`` mean psycopg 3, the
        driver Watchkeeper installs."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value.removeprefix(prefix)
        return value


def broker_problem(entry: str) -> str | None:
    """What is wrong with one bootstrap server, in words that never quote it when it may hold a password."""
    if "@" in entry or "/" in entry:
        return ("is not host:port (a URL or user:password@ does not belong here: Kafka credentials go in "
                "sasl_username and WATCHKEEPER_KAFKA_SASL_PASSWORD)")
    host, port = entry, None
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        if rest:
            port = rest.removeprefix(":") if rest.startswith(":") else "?"
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    if not host or any(c.isspace() for c in host):
        return f"{entry!r} is not host:port"
    if port is not None and not (port.isdigit() and 0 < int(port) < 65536):
        return f"{entry!r}: the port must be a number from 1 to 65535"
    return None


def _no_such_file(key: str, path: str | None) -> None:
    """A file the configuration names (a certificate, a key, a CA bundle) must exist when it is loaded, not
    when the first TLS handshake needs it minutes later."""
    if path is not None and not Path(path).is_file():
        raise ValueError(f"{key}: no such file {path!r}")


class KafkaConfig(Section):
    bootstrap_servers: list[str] = ["127.0.0.1:9092"]
    topics: Annotated[list[str], Field(min_length=1)] = ["llm-logs"]
    group_id: str = "watchkeeper"
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    session_timeout_ms: Annotated[int, Field(ge=1000)] = 10_000
    max_poll_interval_ms: Annotated[int, Field(ge=1000)] = 300_000
    metadata_max_age_ms: Annotated[int, Field(ge=1000)] = 10_000
    """How often the consumer refreshes the cluster metadata. Partitions added to a topic — or a topic
    auto-created again with another partition count after a broker restart — are only noticed (and the
    group rebalanced onto them) at a refresh; kafka-python's default, 5 minutes, left new partitions
    unread that long. One small metadata request per interval."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    """``SSL``/``SASL_SSL`` encrypt the connection (and check the broker's certificate); ``SASL_*`` log in."""
    ssl_cafile: str | None = None
    """PEM file of the CA(s) that signed the brokers' certificates; unset: the system's trusted CAs."""
    ssl_certfile: str | None = None
    """PEM client certificate, for brokers that want mutual TLS (with ``ssl_keyfile``)."""
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    """Refuse a broker whose certificate does not name the host connected to. Turn off only for testing."""
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    """``WATCHKEEPER_KAFKA_SASL_USERNAME`` overrides it."""
    sasl_password: SecretStr | None = None
    """Set it through ``WATCHKEEPER_KAFKA_SASL_PASSWORD`` rather than in the file."""
    client_id: str = "watchkeeper"
    format: Literal["watchkeeper", "otlp", "otlp_logs", "litellm"] = "watchkeeper"
    """What the messages on the topics are (docs/record-format.md): our JSON record, OpenTelemetry traces as the
    Collector's kafka exporter writes them (``otlp_proto`` or ``otlp_json``, recognised from the bytes), or
    LiteLLM's ``StandardLoggingPayload``; ``otlp_logs`` reads OpenTelemetry log batches (the ``otlp_logs`` topic)
    for the GenAI content events that instrumentations emit beside their spans, joined to the span's record
    whichever arrives first. ``WATCHKEEPER_KAFKA_FORMAT`` overrides it."""
    formats: dict[str, Literal["watchkeeper", "otlp", "otlp_logs", "litellm"]] = {}
    """Per-topic overrides of ``format`` (``[kafka.formats] otlp_spans = "otlp"``), for a daemon that reads
    several topics."""
    otlp_app: str | None = None
    """The ``app`` of every OTLP record; when unset, each span's resource ``service.name``."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_ports(cls, value: list[str]) -> list[str]:
        """Each entry is ``host``, ``host:port`` or ``[v6]:port``. kafka-python raised a bare ValueError (a
        traceback) on a port that is no number, and logged an entry holding ``user:password@`` verbatim."""
        for i, entry in enumerate(value, 1):
            problem = broker_problem(entry.strip())
            if problem:
                raise ValueError(f"entry {i} {problem}")
        return value

    def format_of(self, topic: str) -> str:
        """The format of ``topic``'s messages: its override, else ``format``."""
        return self.formats.get(topic, self.format)

    @model_validator(mode="after")
    def _security(self) -> KafkaConfig:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile go together: set both, or neither")
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            _no_such_file(key, getattr(self, key))
        if self.security_protocol.startswith("SASL") and not (
                self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism, sasl_username "
                             "and sasl_password (WATCHKEEPER_KAFKA_SASL_PASSWORD)")
        return self

    def client_options(self) -> dict[str, Any]:
        """The kafka-python arguments for TLS and SASL, the same for the consumer, the producer and the admin
        client. Holds the SASL password in clear: pass it on, never log it."""
        options: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            options.update(ssl_check_hostname=self.ssl_check_hostname, ssl_cafile=self.ssl_cafile,
                           ssl_certfile=self.ssl_certfile, ssl_keyfile=self.ssl_keyfile)
        if self.security_protocol.startswith("SASL") and self.sasl_password is not None:
            options.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        return options


class StorageConfig(Section):
    """Encryption at rest (monitor/storage/crypto.py)."""

    encryption_key: SecretStr | None = None
    """Comma-separated Fernet keys (``watchkeeper db new-key``); the first encrypts, all decrypt. Set: the
    text ``store_text`` keeps and dead letters' raw bytes are stored encrypted, the clear text columns hold
    redacted text only. ``WATCHKEEPER_ENCRYPTION_KEY`` overrides it (prefer it to the file)."""

    @field_validator("encryption_key")
    @classmethod
    def _fernet_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            from monitor.storage.crypto import parse_keys

            parse_keys(value.get_secret_value())  # a ValueError names the key's position, never the key
            return value
        return None

    def cipher(self) -> Cipher | None:
        """The cipher of the configured key list; None when storage stays clear."""
        from monitor.storage.crypto import Cipher

        return Cipher.from_text(self.encryption_key.get_secret_value() if self.encryption_key else None)


class PipelineConfig(Section):
    workers: Annotated[int, Field(ge=0, le=64)] = 0
    """Consumer processes on this host (each a group member; the parent runs the scheduled jobs).
    0 (the default) means one per CPU core this process may use (its CPU quota in a container), at most 8.
    Give the topic at least this many partitions."""
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 2000
    """Most records per batch; one database transaction and one offset commit per batch."""
    batch_timeout_ms: Annotated[int, Field(ge=1)] = 500
    """Longest a poll waits for a batch to fill."""
    store_detections: Literal["flagged", "all"] = "flagged"
    """Which `detections` rows are written: only detectors that flagged the record (default; every record's
    scores are in `records` columns such as response_toxicity, pii_count), or one row per record and detector."""
    store_text: Literal["none", "redacted", "full"] = "redacted"
    """What prompt/response text reaches the database: nothing, text with findings replaced, or raw text."""


class OpsConfig(Section):
    """The ops endpoint (monitor.ops): ``/metrics`` for Prometheus, ``/livez`` and ``/readyz`` for probes."""

    enabled: bool = True
    host: str = "0.0.0.0"
    """All interfaces by default, so that Prometheus and the kubelet's probes reach it; it serves no secret."""
    port: Annotated[int, Field(ge=0, le=65535)] = 9464
    """``WATCHKEEPER_METRICS_PORT`` overrides it; 0 picks a free port (logged)."""


class RecordConfig(Section):
    fields: dict[str, str] = {}
    """Our field name -> the deployment's field name, e.g. ``response = "completion"``."""


class SamplingConfig(Section):
    """What the sampler keeps for human review (monitor.ingest.steps.sampling). Rates are probabilities per record;
    caps bound the samples per stratum (model, app) and reason in each window."""

    enabled: bool = True
    seed: str = "watchkeeper"
    """Salt of the hash that decides; changing it changes which records are sampled."""
    window_s: Annotated[int, Field(ge=60)] = 86_400
    uniform_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    stratum_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = {}
    """Uniform rate overrides by ``"model=m1,app=chat"``, ``"app=chat"`` or ``"model=m1"``; most specific
    wins. Raise the rate of a small app so that it gets enough samples."""
    uniform_cap: Annotated[int, Field(ge=1)] | None = 500
    risk_rates: dict[str, Annotated[float, Field(ge=0, le=1)]] = {
        "toxicity": 0.5, "prompt_toxicity": 0.1, "pii": 0.2, "secrets": 1.0, "refusal": 0.2,
        "prompt_injection": 0.5, "drift": 0.05, "low_feedback": 1.0,
    }
    """Reason -> rate for flagged records: a detector name (flagged detection), ``drift`` (the stream has a
    drift event in the last ``drift_boost_s``) or ``low_feedback``. A reason not listed is not sampled."""
    risk_cap: Annotated[int, Field(ge=1)] | None = 100
    low_feedback_below: float = 0.5
    drift_boost_s: Annotated[int, Field(ge=0)] = 3600
    double_review_share: Annotated[float, Field(ge=0, le=1)] = 0.1
    """Share of samples assigned to two reviewers, to measure agreement."""


class ReviewConfig(Section):
    """The review page (monitor.review): label vocabulary, queue size, where it listens."""

    verdicts: Annotated[list[str], Field(min_length=2, max_length=9)] = ["correct", "incorrect", "unsure"]
    """Keys 1..9 pick them. Estimates count ``correct`` against ``incorrect``; any other verdict abstains."""
    tags: list[str] = ["hallucination", "toxic", "pii-leak", "refusal", "off-topic"]
    note: bool = True
    queue_size: Annotated[int, Field(ge=1, le=500)] = 25
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 8765
    serve_in_daemon: bool = False
    session_hours: Annotated[float, Field(gt=0)] = 12.0
    session_secret: SecretStr | None = None
    """Signs session cookies (with the reviewer's token hash). Unset: a random key made on first use and kept
    in the database (``service_secrets``), shared by every server on that database."""
    certfile: str | None = None
    """PEM certificate (chain) to serve the page over HTTPS; needs ``keyfile``. Or put a TLS proxy in front."""
    keyfile: str | None = None
    trusted_proxies: list[str] = ["127.0.0.1"]
    """Addresses whose ``X-Forwarded-For``/``-Proto`` are believed (a TLS proxy on another host goes here, so
    cookies keep ``Secure`` and HSTS is sent). ``*`` trusts every peer: only behind a proxy you control."""
    estimate_days: Annotated[int, Field(ge=1)] = 7
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95

    @model_validator(mode="after")
    def _tls_pair(self) -> ReviewConfig:
        if (self.certfile is None) != (self.keyfile is None):
            raise ValueError("certfile and keyfile go together: set both, or neither")
        for key in ("certfile", "keyfile"):
            _no_such_file(key, getattr(self, key))
        return self

    @field_validator("verdicts")
    @classmethod
    def _needs_correct_and_incorrect(cls, value: list[str]) -> list[str]:
        if "correct" not in value or "incorrect" not in value or len(set(value)) != len(value):
            raise ValueError("verdicts must be distinct and include 'correct' and 'incorrect'")
        return value


def _parse_duration(value: Any) -> Any:
    """Accept "90s", "15m", "1h30m", "7d", "2w" (`monitor.durations`) as well as seconds and ISO 8601 ("PT1H").

    Anything else is refused here with our own words: pydantic's ISO 8601 parser answered "5 minutes" with
    "invalid character in hour" and "-1s" with "day identifier … not correctly formatted"."""
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            text = value.strip()
            if _is_number(text):
                return float(text)
            if not text.lstrip("+-").upper().startswith("P"):  # not ISO 8601 either
                hint = "; a number of seconds and ISO 8601 (PT1H) work too" if "too long" not in str(exc) else ""
                raise ValueError(f"{exc}{hint}") from None
    return value  # a number, or ISO 8601: pydantic parses it


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


Duration = Annotated[timedelta, BeforeValidator(_parse_duration), Field(gt=timedelta(0))]
"""A positive duration: "30s", "15m", "1h", "7d", "2w", a number of seconds, or ISO 8601."""


class SchedulerConfig(Section):
    enabled: bool = True
    """Run periodic jobs (reports, rollups, retention, …) in this daemon. Each job runs on one instance."""
    tick: Duration = timedelta(seconds=60)
    """How often this instance checks for a due job: the most a missed run is late by."""
    owner: str | None = None
    """Name this instance takes in ``scheduler_locks``; default host:pid."""


ReportSignal = Literal[
    "prompt_chars",
    "response_chars",
    "latency_ms",
    "tokens_in",
    "tokens_out",
    "prompt_toxicity",
    "response_toxicity",
    "refusal",
    "feedback_score",
    "status",
    "pii_count",
    "secret_count",
    "cost_usd",
]


class ReportsConfig(Section):
    """Scheduled Evidently drift reports: the current window against the reference window just before it."""

    enabled: bool = True
    interval: Duration = timedelta(days=1)
    """How often a report is made; slots are aligned to UTC midnight for a day."""
    current_window: Duration = timedelta(days=1)
    reference_window: Duration = timedelta(days=7)
    """Ends where the current window starts; set it equal to current_window for "the previous window"."""
    min_rows: Annotated[int, Field(ge=10)] = 100
    """Fewest records (and non-empty values per column) in each window for a model (column) to be tested."""
    max_rows: Annotated[int, Field(ge=10, le=1_000_000)] = 5000
    """Most records read per window and model (a random sample beyond that) so a run stays bounded."""
    signals: list[ReportSignal] = [
        "prompt_chars",
        "response_chars",
        "latency_ms",
        "tokens_in",
        "tokens_out",
        "response_toxicity",
        "refusal",
        "feedback_score",
        "status",
    ]
    text_descriptors: bool = True
    """Also compare offline text descriptors of prompt/response (length, words, links, JSON …) if stored."""
    method: str | None = None
    """Evidently stat test for every column (e.g. "ks", "psi", "wasserstein"); None lets Evidently choose."""
    threshold: float | None = None
    """Threshold for ``method``; None takes the test's default."""
    keep_html: bool = True
    """Store the rendered HTML (about 4 MB per report) besides the JSON."""


class RetentionConfig(Section):
    """Deletes old rows in bounded chunks. A max age of None keeps that table forever."""

    enabled: bool = True
    interval: Duration = timedelta(hours=1)
    records_max_age: Duration | None = timedelta(days=30)
    """Records, with their detections."""
    dead_letters_max_age: Duration | None = timedelta(days=30)
    drift_events_max_age: Duration | None = timedelta(days=180)
    reports_max_age: Duration | None = timedelta(days=90)
    rollups_max_age: Duration | None = None
    stream_minutes_max_age: Duration | None = timedelta(days=7)
    """Per-minute counters the alert rules read; rollups_hourly keeps the long history."""
    genai_events_max_age: Duration | None = timedelta(days=1)
    """GenAI content events from the OTLP logs topic: kept this long for a span that arrives after them."""
    chunk_size: Annotated[int, Field(ge=1, le=100_000)] = 5000
    """Rows deleted per transaction."""
    max_chunks: Annotated[int, Field(ge=1)] = 200
    """Most chunks per table per run; the rest waits for the next run."""


class RollupsConfig(Section):
    """Hourly per model × app aggregates in ``rollups_hourly``, recomputed for the last ``lookback``."""

    enabled: bool = True
    interval: Duration = timedelta(minutes=5)
    lookback: Duration = timedelta(hours=3)
    """Hours (by record time) recomputed on each run, the current one included; later-arriving records
    older than this are not counted."""
    toxic_threshold: Annotated[float, Field(ge=0, le=1)] | None = None
    """Kept for old files: if given it must equal ``[detectors.toxicity] threshold``, the one toxic cut-off
    (flagged records, counters, drift, the alert rule and these rollups all use it)."""


def _http_url_problem(url: str) -> str | None:
    """Why ``url`` is not an ``http(s)://host[:port]/…`` URL, in words that never quote it (it may hold a
    password or a token): left to the HTTP clients, such a URL failed on first use with the URL in the error
    (urllib: "unknown url type: '…'"), logged, or a bare ValueError for a port that is no number."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError:
        return "is not a URL (its port must be a number from 1 to 65535)"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http:// or https:// URL with a host"
    return None


class ReferenceConfig(Section):
    """One reference model that sampled prompts are replayed against (monitor.shadow.replay)."""

    model: str
    """Model name the server serves (``vllm serve MODEL``); stored as ``shadow_comparisons.reference_model``."""
    url: str = ""
    """Base URL of an OpenAI-compatible server, e.g. ``http://gpu-1:8000``. Required for the http backend."""
    backend: Literal["http", "inprocess"] = "http"
    """``inprocess`` loads ``vllm.LLM`` in the daemon (GPU host, ``vllm`` extra)."""
    name: str | None = None
    """Label stored with each comparison; defaults to the URL (http) or ``in-process``."""
    api_key: SecretStr | None = None
    ca_file: str | None = None
    """PEM file of the CA that signed an ``https`` reference's certificate, for the replays and the ``/health``
    and ``/metrics`` scrapes (default: the system's trusted roots). Certificates are always verified."""
    max_tokens: Annotated[int, Field(ge=1)] = 256
    temperature: Annotated[float, Field(ge=0)] = 0.0
    seed: int | None = 0
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=10)] = 3
    llm_kwargs: dict[str, Any] = {}
    """Extra ``vllm.LLM`` arguments for the in-process backend."""

    @model_validator(mode="after")
    def _reachable(self) -> ReferenceConfig:
        if self.backend == "http":
            if not self.url.strip():
                raise ValueError("url is required for the http backend (e.g. http://gpu-1:8000)")
            if problem := _http_url_problem(self.url):
                raise ValueError(f"url {problem}")
        _no_such_file("ca_file", self.ca_file)
        return self


class ShadowConfig(Section):
    """Shadow replay: sampled prompts re-asked of reference models and compared. On when a reference is
    configured; ``WATCHKEEPER_REFERENCE_URL`` + ``WATCHKEEPER_REFERENCE_MODEL`` set one from the environment.
    Limits (rate, concurrency, daily cap) apply to each reference separately."""

    references: list[ReferenceConfig] = []
    interval: Duration = timedelta(seconds=60)
    """How often the replay job runs (on one daemon at a time); each run stops before the next is due."""
    prompts_per_minute: Annotated[float, Field(gt=0)] = 30.0
    max_concurrent: Annotated[int, Field(ge=1, le=256)] = 4
    daily_cap: Annotated[int, Field(ge=0)] = 5000
    queue_size: Annotated[int, Field(ge=1, le=100_000)] = 200
    """Most prompts one run takes from the database per reference; the rest wait in the database."""
    lookback: Duration = timedelta(days=1)
    """Only samples of records newer than this are replayed by the daemon (``shadow replay`` has --since)."""
    replay_as: Literal["chat", "completions"] = "chat"
    """Records keep only the prompt text (redacted as stored), not chat turns: send it as one user turn of
    ``/v1/chat/completions`` (chat) or as a raw ``/v1/completions`` prompt."""
    outage_backoff_initial_s: Annotated[float, Field(gt=0)] = 2.0
    outage_backoff_max_s: Annotated[float, Field(gt=0)] = 120.0
    min_similarity: Annotated[float, Field(ge=-1, le=1)] = 0.5
    min_rouge_l: Annotated[float, Field(ge=0, le=1)] = 0.0
    min_length_ratio: Annotated[float, Field(ge=0)] = 0.25
    max_length_ratio: Annotated[float, Field(gt=0)] = 4.0
    refusal_mismatch_disagrees: bool = True
    boost_disagreements: bool = True
    """Put each disagreement in the review queue (``samples`` reason ``shadow_disagreement``)."""
    guest: bool = True
    """Be a good guest (`inference.guest.GuestLimit`): fewer replays in flight while the reference queues
    requests or slows down, back up to ``max_concurrent`` when it is calm. (What looked like a stall inside
    the daemon was the first run's model loading eating its replay window; it no longer counts.)"""
    guest_max_waiting: Annotated[float, Field(ge=0)] = 0.0
    """Back off when the reference reports more queued requests than this (``vllm:num_requests_waiting``)."""
    guest_latency_factor: Annotated[float, Field(gt=1)] = 2.0
    """Back off when replay answers take this many times longer than the fastest typical latency seen."""
    health_interval: Duration = timedelta(seconds=15)
    """How often each reference's ``/health`` and ``/metrics`` are scraped into ``reference_health``."""


RULE_KINDS: tuple[str, ...] = (
    "toxicity_rate", "refusal_rate", "error_rate", "injection_rate", "latency_p95", "secret_in_response",
    "pii_in_response",
    "drift", "accuracy", "shadow_agreement", "dead_letter_rate", "consumer_lag", "no_traffic",
    "compare_guardrail", "spend",
    "reference_down", "reference_saturated", "reference_latency",
)
"""What ``kind = "…"`` may say in ``[alerts.rules.NAME]``: the configuration's side of the rule registry."""


GUARDED_METRICS = ["error_rate", "refusal_rate", "truncation_rate", "toxic_rate", "pii_leak_rate",
                   "secret_leak_rate", "low_feedback_rate", "latency_ms.median", "latency_ms.p95",
                   "review_accuracy", "shadow_agreement"]


class CompareConfig(Section):
    """A guardrail for a model rollout (monitor/jobs/compare.py): every ``interval`` the ``candidate`` is compared
    with the ``baseline`` over the last ``window`` (as `watchkeeper compare` does, within each app too), the
    result is kept in `reports` (kind ``compare``), and the ``compare_guardrail`` alert rule fires while the
    candidate is significantly worse on a guarded metric. Off unless both models are named."""

    candidate: str | None = None
    baseline: str | None = None
    interval: Duration = timedelta(hours=1)
    window: Duration = timedelta(days=1)
    by_app: bool = True
    """Also compare within each app both models served (one Holm family over everything)."""
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = 0.05
    min_records: Annotated[int, Field(ge=1)] = 200
    """Records each model needs in the window before a comparison is made."""
    guarded: Annotated[list[str], Field(min_length=1)] = GUARDED_METRICS
    """Metric names (as in `watchkeeper compare --format json`; ``shadow_agreement`` covers every reference)
    whose significant worsening alerts."""

    @model_validator(mode="after")
    def _pair(self) -> CompareConfig:
        if (self.candidate is None) != (self.baseline is None):
            raise ValueError("set both candidate and baseline, or neither")
        if self.candidate is not None and self.candidate == self.baseline:
            raise ValueError("candidate and baseline must be different models")
        return self

    @property
    def enabled(self) -> bool:
        return self.candidate is not None


class AlertRuleConfig(Section):
    """One alert rule (``[alerts.rules.NAME]``). ``kind`` picks the logic in monitor/alerts/rules/ (a family each);
    ``threshold`` is in the unit that kind states (a rate, milliseconds, messages)."""

    kind: str
    """One of `RULE_KINDS`; each has exactly one rule class in monitor/alerts/rules/ (the registry refuses a
    class of any other kind, and a test checks that every kind has its class)."""
    severity: Severity = "warning"
    scope: Scope = "global"
    enabled: bool = True
    window: Duration = timedelta(minutes=10)
    """The sliding window ending now that the rule looks at."""
    min_samples: Annotated[int, Field(ge=1)] = 1
    """Fewer records than this in the window (or in the baseline, for the comparison): no firing."""
    threshold: float = 0.0
    baseline: Duration | None = None
    """Spike rules: also compare with the window of this length just before ``window``."""
    factor: Annotated[float, Field(ge=1)] = 1.0
    """Spike rules: fire only when the value exceeds the baseline's times this factor."""
    score: Annotated[float, Field(ge=0, le=1)] | None = None
    """``toxicity_rate`` only, kept for old files: if given it must equal ``[detectors.toxicity] threshold``,
    the one toxic cut-off (flagged records, counters, drift and this rule all use it)."""
    kv_cache: Annotated[float, Field(ge=0, le=1)] | None = None
    """``reference_saturated`` only: KV-cache usage (0-1) at or above this counts as saturated."""
    min_change: Annotated[float, Field(ge=0)] = 0.0
    """``drift`` only: a change of a continuous signal's typical value by less than this fraction (0.05 = 5%)
    does not count towards firing; its `drift_events` row stays for analysts. A signal that barely varies (a
    fixed template's length) makes a one-character change many standard deviations: real, but not news."""

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in RULE_KINDS:
            raise ValueError(f"unknown kind {value!r}; known: {sorted(RULE_KINDS)}")
        return value


class AlertRouteConfig(Section):
    """Where alerts of some severities go, e.g. critical to Slack #oncall, warnings to #llm-quality."""

    sink: Literal["console", "slack"]
    severities: Annotated[list[Severity], Field(min_length=1)] = ["critical", "warning", "info"]
    channel: str | None = None
    """Slack channel (bot token only; an incoming webhook posts where it was created)."""


class InhibitConfig(Section):
    """While a critical alert of a ``source`` rule fires, alerts of ``target`` rules in the same or a
    narrower scope are recorded but not sent: they are consequences of the source."""

    source: Annotated[list[str], Field(min_length=1)]
    target: Annotated[list[str], Field(min_length=1)]


_DEFAULT_ALERT_RULES: dict[str, dict[str, Any]] = {
    # Reviewer-labelled accuracy: fires on a significant drop from the previous window (set `threshold` to
    # also fire when the interval's upper bound is below that target). Silent until there are labels.
    "accuracy": {"kind": "accuracy", "severity": "warning", "scope": "model", "window": "1d", "min_samples": 30},
    # Agreement with the shadow reference: under half agreeing, or a significant drop from the day before.
    # Silent without shadow replay.
    "shadow_agreement": {"kind": "shadow_agreement", "severity": "warning", "scope": "model", "window": "1h",
                         "min_samples": 50, "threshold": 0.5, "baseline": "1d"},
    "secret_in_response": {"kind": "secret_in_response", "severity": "critical", "scope": "model",
                           "window": "15m"},
    "pii_in_response": {"kind": "pii_in_response", "severity": "warning", "scope": "model", "window": "15m"},
    "drift": {"kind": "drift", "severity": "warning", "scope": "model", "window": "15m", "min_change": 0.05},
    "toxicity_rate": {"kind": "toxicity_rate", "severity": "warning", "scope": "model", "window": "10m",
                      "min_samples": 50, "threshold": 0.05},
    "refusal_rate": {"kind": "refusal_rate", "severity": "warning", "scope": "model", "window": "10m",
                     "min_samples": 50, "threshold": 0.1, "baseline": "1h", "factor": 2.0},
    "error_rate": {"kind": "error_rate", "severity": "warning", "scope": "model", "window": "10m",
                   "min_samples": 50, "threshold": 0.05, "baseline": "1h", "factor": 2.0},
    # Prompt-injection / jailbreak attempts: more than 2 % of a model's prompts over 10 minutes (one user
    # probing the model with attack prompts, or a poisoned document pasted into many prompts).
    "injection_rate": {"kind": "injection_rate", "severity": "warning", "scope": "model", "window": "10m",
                       "min_samples": 50, "threshold": 0.02},
    "latency_p95": {"kind": "latency_p95", "severity": "warning", "scope": "model", "window": "10m",
                    "min_samples": 50, "threshold": 0.0, "baseline": "1h", "factor": 1.5},
    "dead_letter_rate": {"kind": "dead_letter_rate", "severity": "warning", "window": "10m",
                         "min_samples": 50, "threshold": 0.01},
    "consumer_lag": {"kind": "consumer_lag", "severity": "critical", "window": "2m", "threshold": 100_000},
    "no_traffic": {"kind": "no_traffic", "severity": "critical", "window": "5m", "min_samples": 10,
                   "baseline": "1h"},
    # The [compare] guardrail: the candidate model significantly worse than the baseline in the newest
    # comparison made within `window`. Silent unless [compare] names both models.
    "candidate_worse": {"kind": "compare_guardrail", "severity": "warning", "window": "2h"},
    # The shadow reference server (reference_health, scraped every [shadow] health_interval). Silent without one.
    "reference_down": {"kind": "reference_down", "severity": "critical", "window": "1m", "min_samples": 2},
    "reference_saturated": {"kind": "reference_saturated", "severity": "warning", "window": "5m",
                            "min_samples": 5, "threshold": 0, "kv_cache": 0.9},
    "reference_latency": {"kind": "reference_latency", "severity": "warning", "window": "10m", "baseline": "1h",
                          "factor": 2.0, "min_samples": 20},
}
_DEFAULT_INHIBIT = [{
    "source": ["no_traffic", "consumer_lag"],
    "target": ["no_traffic", "toxicity_rate", "refusal_rate", "error_rate", "injection_rate", "latency_p95", "drift",
               "dead_letter_rate"],
}, {
    "source": ["reference_down"],
    "target": ["reference_saturated", "reference_latency", "shadow_agreement"],
}]


class AlertsConfig(Section):
    """Alert rules, their lifecycle and where notifications go (monitor/alerts).

    ``[alerts.rules.NAME]`` tables are merged key by key over the defaults of the same name, so
    ``[alerts.rules.toxicity_rate] threshold = 0.1`` tunes one number; ``enabled = false`` turns a rule off;
    a new NAME with a ``kind`` adds a rule. ``SLACK_WEBHOOK_URL`` or ``SLACK_BOT_TOKEN`` (+ ``SLACK_CHANNEL``)
    in the environment send every alert to Slack; ``routes`` split them by severity.
    """

    enabled: bool = True
    evaluate_every: Duration = timedelta(seconds=2)
    deliver_every: Duration = timedelta(seconds=1)
    group_wait: Annotated[timedelta, BeforeValidator(_parse_duration), Field(ge=timedelta(0))] = timedelta(seconds=10)
    """Alerts of one scope that start firing within this time of each other go out as one message."""
    repeat_interval: Duration = timedelta(hours=4)
    """A still-firing alert is announced again after this long."""
    resolve_after: Duration = timedelta(minutes=1)
    """An alert resolves once its condition has been absent this long (no flapping on one quiet scrape)."""
    max_silence: Duration = timedelta(days=7)
    slack_webhook_url: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    """Default channel for the bot token (``SLACK_CHANNEL``)."""
    slack_api_url: str = "https://slack.com/api/"
    slack_ca_file: str | None = None
    """PEM file of the CA(s) Slack (or a TLS-inspecting proxy on the way) is checked against; default: the
    system's trusted roots. Certificates are always verified."""
    slack_timeout: Duration = timedelta(seconds=10)
    routes: list[AlertRouteConfig] = []
    """Empty: every alert to Slack when it is configured, else to the console."""
    rules: dict[str, AlertRuleConfig] = {}
    inhibit: list[InhibitConfig] = []
    max_attempts: Annotated[int, Field(ge=1)] = 1_000_000
    """Failed attempts after which a notification is dead. Large on purpose: with attempts every
    ``backoff_max``, a long Slack outage must not kill alerts; ``max_age`` is the real limit."""
    max_age: Duration = timedelta(days=1)
    """A notification not delivered after this long is marked dead (with the reason) and logged."""
    backoff_initial: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(seconds=5)
    """Longest wait between two attempts of one notification: after a Slack outage of any length delivery
    resumes within this of Slack answering again (only the head of each sink's queue is tried, so a long
    outage costs one request per sink every ``backoff_max``)."""
    review_url: str | None = None
    """Base URL of the review page; messages link example records there when set."""

    @model_validator(mode="before")
    @classmethod
    def _merge_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        user_rules = data.get("rules", {})
        if not isinstance(user_rules, dict):
            return data  # validation reports the bad type
        rules = {name: dict(rule) for name, rule in _DEFAULT_ALERT_RULES.items()}
        for name, rule in user_rules.items():
            rules[name] = {**rules.get(name, {}), **rule} if isinstance(rule, dict) else rule
        return {**data, "rules": rules, "inhibit": data.get("inhibit", _DEFAULT_INHIBIT)}

    @field_validator("slack_webhook_url", "slack_api_url", "review_url")
    @classmethod
    def _http_url(cls, value: SecretStr | str | None) -> SecretStr | str | None:
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        if url and (problem := _http_url_problem(url)):
            raise ValueError(f"this {problem}")
        return value

    @field_validator("slack_ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None and not Path(value).is_file():
            raise ValueError(f"no such file {value!r}")  # the key is in the error's location already
        return value

    @model_validator(mode="after")
    def _check(self) -> AlertsConfig:
        for i, route in enumerate(self.routes):
            if route.sink == "slack" and not (self.slack_webhook_url or self.slack_bot_token):
                raise ValueError(f"routes[{i}] sends to Slack but neither a webhook URL nor a bot token is set")
        if self.slack_bot_token and not self.slack_channel and not (
                self.routes and all(r.channel for r in self.routes if r.sink == "slack")):
            raise ValueError("a Slack bot token needs a channel: set slack_channel (SLACK_CHANNEL)")
        return self


RiverDetector = Literal["ADWIN", "PageHinkley", "KSWIN"]
DRIFT_SIGNALS = ("prompt_chars", "response_chars", "latency_ms", "tokens_in", "tokens_out", "feedback_score",
                 "cost", "error", "refusal", "toxic", "injection", "prompt_topic")
"""The signals watched per stream (`monitor.ingest.steps.drift`), the topic mix (``prompt_topic``) included."""
DEPRECATED_DRIFT_KEYS = {
    "topics": "prompts go to fixed subject cells (detectors.drift.subjects), nothing is clustered",
    "checkpoint_every_s": "topic drift is folded per stream with the other signals and checkpointed by the fold",
}
"""``[drift]`` keys of the old per-partition topic detector: accepted with a WARNING, ignored."""


class RiverChoice(Section):
    """A river detector for one signal instead of the calibrated chart: ``river.drift.<detector>(**options)``,
    fed one value per bucket (the bucket's mean); for ``prompt_topic``, one detector per subject, fed each
    sampled prompt as 1 (that subject) or 0. Its false-alarm rate is river's, not calibrated."""

    detector: RiverDetector
    options: dict[str, float | int | str | bool] = {}


class DriftConfig(Section):
    """Drift detection per stream (global, per model, per app, per model × app) and signal.

    Every pipeline adds each record's signals to short buckets (`drift_buckets`); one fold job, under the
    scheduler's lease, feeds them in bucket order to one detector per (stream, signal). False-alarm budget:
    ``arl0`` records per false alarm **per stream**, shared by its signals (each detector gets
    ``arl0 × signals``), for each of the four kinds of stream.
    """

    enabled: bool = True
    arl0: Annotated[float, Field(ge=1000)] = 1_000_000
    """Records per false alarm per stream on stationary traffic, all its signals together."""
    warmup: Annotated[int, Field(ge=20, le=100_000)] = 500
    """Records a continuous signal's detector learns its reference from before it may fire (again after each
    detection). The bucket that completes it is taken whole."""
    rate_warmup: Annotated[int, Field(ge=20, le=100_000)] = 1000
    """The same for rates (errors, refusals, toxic answers): rare events need more records."""
    k: Annotated[list[Annotated[float, Field(gt=0, le=2)]], Field(min_length=1, max_length=4)] = [0.125, 0.375]
    """Continuous signals: reference values in standard deviations, one chart each (tuned to shifts of 2k;
    the budget is split between them). A single number is accepted too."""
    clip: Annotated[float, Field(gt=0)] = 5.0
    """Continuous signals: a bucket's mean moves the charts by at most this many standard errors."""

    @field_validator("k", mode="before")
    @classmethod
    def _one_k(cls, value: Any) -> Any:
        return [value] if isinstance(value, int | float) else value
    odds_ratio: Annotated[float, Field(gt=1)] = 3.0
    """Shadow agreement's Bernoulli chart: the change in odds it is tuned to (3: 1% -> about 3%). The fold's rate
    charts need none: they mix odds ratios 1.6 to 16 (`detectors.drift.rates`)."""
    margin: Annotated[float, Field(ge=0, le=5)] = 1.0
    """Standard errors of warm-up estimation error the calibration absorbs."""
    bucket_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """Length of a statistics bucket (event time). On live traffic a change is detected about bucket_s +
    grace_s + fold_every_s + settle_s after its records' time."""
    grace_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    """Buckets are event time: how long after a bucket ends (by the clock, and by the newest record stored
    from every partition that is behind) the fold waits for records still on their way into it."""
    idle_s: Annotated[float, Field(ge=0, le=600)] = 2.0
    """A partition that has caught up still holds the fold back until its newest record is this old by the
    clock (no new record for idle_s): while a producer writes a burst, caught up is only a moment. On a
    partition that falls quiet a change is reported up to idle_s later."""
    late_s: Annotated[float, Field(ge=0, le=3600)] = 60.0
    """Records stored up to this long after their bucket was folded are still fed to the detectors (at the
    current position); later ones are kept in `drift_buckets` but not watched."""
    fold_every_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    """How often the fold job runs (on one daemon: the scheduler's lease)."""
    settle_s: Annotated[float, Field(ge=0, le=300)] = 4.0
    """After a detector fires, how long the fold gathers data before attributing the change to a stream."""
    max_settle_s: Annotated[float, Field(ge=0, le=600)] = 30.0
    """... and at most how long it waits when the streams beside the one that fired hold too few records yet
    to tell whether they changed too."""
    keep_buckets_s: Annotated[float, Field(gt=0)] = 3600.0
    """Folded buckets older than this are deleted (attribution reads the recent ones)."""
    max_streams: Annotated[int, Field(ge=1)] = 1000
    """Most streams watched; the one idle longest is dropped first."""
    river: dict[str, RiverChoice] = {}
    """Per signal, a river detector instead of the calibrated chart: ``[drift.river.latency_ms]
    detector = "ADWIN"``."""
    topic_warmup: Annotated[int, Field(ge=100)] = 250
    """Embedded prompts a stream's topic chart learns its reference subject mix from before it may fire (again
    after a change): 250 at the default sampling is a stream's first 1,000 records. The reference keeps
    growing while the stream is in control, and the chart's null is the reference's posterior, so a short
    warm-up costs power, not false alarms."""
    topic_sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.25
    """Fraction of records whose prompt is embedded and assigned a subject (`detectors.drift.subjects`) for
    topic drift, chosen by a hash of the record id (0 turns topic drift off). The topic chart of a stream is
    calibrated to its share of the budget in embedded prompts, so a lower rate costs detection delay, not
    false alarms."""

    @model_validator(mode="before")
    @classmethod
    def _deprecated(cls, data: Any) -> Any:
        """Keys of the per-partition topic detector that topic drift per stream replaced: accepted, ignored,
        one WARNING each."""
        if isinstance(data, dict) and any(key in data for key in DEPRECATED_DRIFT_KEYS):
            data = dict(data)
            for key in DEPRECATED_DRIFT_KEYS:
                if key in data:
                    del data[key]
                    logging.getLogger(__name__).warning(
                        "[drift] %s is deprecated and ignored: %s", key, DEPRECATED_DRIFT_KEYS[key])
        return data

    @field_validator("river")
    @classmethod
    def _river_signals(cls, value: dict[str, RiverChoice]) -> dict[str, RiverChoice]:
        unknown = sorted(set(value) - set(DRIFT_SIGNALS))
        if unknown:
            raise ValueError(f"unknown signal(s) {unknown}; choose among {', '.join(DRIFT_SIGNALS)}")
        return value


class Config(Section):
    """The whole configuration. ``source`` says which file it came from, for error messages."""

    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    kafka: KafkaConfig = KafkaConfig()
    pipeline: PipelineConfig = PipelineConfig()
    record: RecordConfig = RecordConfig()
    detectors: DetectorsConfig = DetectorsConfig()
    sampling: SamplingConfig = SamplingConfig()
    review: ReviewConfig = ReviewConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    reports: ReportsConfig = ReportsConfig()
    retention: RetentionConfig = RetentionConfig()
    rollups: RollupsConfig = RollupsConfig()
    shadow: ShadowConfig = ShadowConfig()
    drift: DriftConfig = DriftConfig()
    compare: CompareConfig = CompareConfig()
    ops: OpsConfig = OpsConfig()
    alerts: AlertsConfig = Field(default_factory=lambda: AlertsConfig())  # validated after import
    source: str = Field(default="<defaults>", exclude=True)

    @model_validator(mode="after")
    def _one_toxic_cut_off(self) -> Config:
        threshold = self.detectors.toxicity.threshold
        if self.rollups.toxic_threshold not in (None, threshold):
            raise ValueError(f"rollups.toxic_threshold must equal [detectors.toxicity] threshold ({threshold:g}), "
                             "the one toxic cut-off; leave it out")
        return self


class ConfigError(Exception):
    """A configuration that cannot be used. The message names the file and the key."""


_ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "WATCHKEEPER_DATABASE_URL": ("database", "url"),
    "WATCHKEEPER_KAFKA_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "WATCHKEEPER_KAFKA_TOPICS": ("kafka", "topics"),
    "WATCHKEEPER_KAFKA_GROUP_ID": ("kafka", "group_id"),
    "WATCHKEEPER_KAFKA_FORMAT": ("kafka", "format"),
    "WATCHKEEPER_KAFKA_SASL_USERNAME": ("kafka", "sasl_username"),
    "WATCHKEEPER_KAFKA_SASL_PASSWORD": ("kafka", "sasl_password"),
    "WATCHKEEPER_ENCRYPTION_KEY": ("storage", "encryption_key"),
    "SLACK_WEBHOOK_URL": ("alerts", "slack_webhook_url"),
    "SLACK_BOT_TOKEN": ("alerts", "slack_bot_token"),
    "SLACK_CHANNEL": ("alerts", "slack_channel"),
    "WATCHKEEPER_METRICS_PORT": ("ops", "port"),
}
_LIST_KEYS = {("kafka", "bootstrap_servers"), ("kafka", "topics")}
ENV_VARS: tuple[str, ...] = (*_ENV_OVERRIDES, "WATCHKEEPER_REFERENCE_URL", "WATCHKEEPER_REFERENCE_MODEL",
                             "WATCHKEEPER_LOG_FORMAT")
"""Every environment variable Watchkeeper reads (docs/cli.md); the deploy files may set only these."""


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    applied = []
    for var, path in _ENV_OVERRIDES.items():
        value = env.get(var)
        if not value:
            continue
        section = data.setdefault(path[0], {})
        if not isinstance(section, dict):
            continue  # validation reports the bad section
        parsed: Any = value
        if path in _LIST_KEYS:
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        section[path[1]] = parsed
        applied.append(var)
    reference_url, reference_model = env.get("WATCHKEEPER_REFERENCE_URL"), env.get("WATCHKEEPER_REFERENCE_MODEL")
    if reference_url and reference_model and isinstance(shadow := data.setdefault("shadow", {}), dict):
        shadow["references"] = [{"url": reference_url, "model": reference_model}]  # replaces the file's
        applied += ["WATCHKEEPER_REFERENCE_URL", "WATCHKEEPER_REFERENCE_MODEL"]
    return applied


def _format_errors(exc: ValidationError, source: str, env_keys: list[str]) -> str:
    """One line for one bad key (``invalid configuration in FILE: KEY: what``); a heading and a line per key
    when several are wrong, so that one run shows them all."""
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        where = key
        for var, path in {**_ENV_OVERRIDES, "WATCHKEEPER_REFERENCE_URL": ("shadow", "references")}.items():
            if var in env_keys and key.startswith(".".join(path)):
                where = f"{key} (from environment variable {var})"
        message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {where}: {message}")
    return f"{lines[0]} {lines[1].strip()}" if len(lines) == 2 else "\n".join(lines)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (TOML; defaults when None), apply environment overrides, validate.

    Raises ConfigError naming the file and each offending key.
    """
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {source}") from None
        except OSError as exc:  # unreadable, a directory…
            raise ConfigError(f"cannot read configuration file {source}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:  # tomllib decodes the bytes itself and lets this through
            raise ConfigError(f"{source}: not valid TOML: not UTF-8 text (byte {exc.start})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    applied = _apply_env(data, env)
    try:
        return Config.model_validate({**data, "source": source})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source, applied)) from None
