"""The metrics the data path updates, by Prometheus conventions (``_total`` counters, ``_seconds``
histograms, base units) and with low-cardinality labels only (an outcome, a detector, a component: never a
record, a model or a reason text).

With ``[pipeline] workers > 1`` every worker is its own process: `prometheus_client`'s multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by `monitor.ops.multiproc.enable` before anything imports this module)
makes each write its values to files that the supervisor sums at scrape time; the workers are spawned, so
they import this module afresh with the directory already set.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

# Batches take milliseconds to seconds; a stuck database shows in the top buckets.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

RECORDS = Counter(
    "watchkeeper_records", "Messages consumed from Kafka, by what became of them.", ["outcome"],
)
"""outcome: ``stored`` (a record row), ``dead_lettered`` (kept with its reason in dead_letters), ``skipped``
(an item of a foreign format that is not an LLM call)."""
RECORD_OUTCOMES = ("stored", "dead_lettered", "skipped")

BATCHES = Counter("watchkeeper_batches", "Batches taken through the chain and committed.")
BATCH_SECONDS = Histogram(
    "watchkeeper_batch_duration_seconds", "One batch from poll to offset commit (decode, steps, store, commit).",
    buckets=_LATENCY_BUCKETS,
)
STORE_SECONDS = Histogram(
    "watchkeeper_store_duration_seconds", "Writing one batch to the database (one transaction), retries included.",
    buckets=_LATENCY_BUCKETS,
)
COMMIT_SECONDS = Histogram(
    "watchkeeper_commit_duration_seconds", "Committing one batch's offsets to Kafka.", buckets=_LATENCY_BUCKETS,
)
FINDINGS = Counter(
    "watchkeeper_findings", "Records a detector flagged, by detector.", ["detector"],
)
DATABASE_ERRORS = Counter(
    "watchkeeper_database_errors",
    "Database calls that failed because the database did not answer (each retry counts), by component.",
    ["component"],
)
COMPONENTS = ("pipeline", "scheduler")
CONSUMERS = Gauge(
    "watchkeeper_consumers", "Consumer-group members of this deployment that hold a group membership.",
    multiprocess_mode="livesum",
)
ASSIGNED = Gauge(
    "watchkeeper_assigned_partitions", "Partitions assigned to this deployment's consumers.",
    multiprocess_mode="livesum",
)
def initialise(detectors: Iterable[str] = ()) -> None:
    """Create every label combination known in advance at zero, so that a rate over it exists before the
    first event (a dashboard shows 0, not "no data")."""
    for outcome in RECORD_OUTCOMES:
        RECORDS.labels(outcome)
    for component in COMPONENTS:
        DATABASE_ERRORS.labels(component)
    for detector in detectors:
        FINDINGS.labels(detector)
