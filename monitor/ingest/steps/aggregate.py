"""Per-minute stream counters (`stream_minutes`), kept up to date by the pipeline with every batch.

Alert rules evaluate every few seconds over windows of minutes to hours; re-reading raw `records` for that
costs time proportional to traffic (18 M rows per 15 minutes at 20 k records/s). Instead each batch adds
its records to one counter row per (minute, model, app) — records, errors, toxic and refused answers,
responses leaking personal data or secrets, prompts flagged as injection attempts, spend (``cost_usd``),
latency sum and a log-spaced latency histogram — and the rules sum the few rows of their window.

The counters must count each stored record once although Kafka delivers at least once, a producer may reuse
an id, and offsets may go backwards (a broker restarted empty, a topic recreated). `AggregateStep` hands its
counts to the store as a `monitor.ingest.batch.Tally`: the store inserts the batch's records first and adds
the counts of only the records that insert really stored, in the same transaction. Stored means counted, by
construction, whatever the offsets did.

>>> from datetime import UTC, datetime
>>> counts = MinuteCounts()
>>> t = datetime(2026, 3, 2, 3, 0, 41, tzinfo=UTC)
>>> for latency in (120.0, 180.0, 950.0):
...     counts.add(t, "m1", None, "ok", latency, toxicity=0.9, refusal=False)
>>> (row,) = counts.rows(now=t)
>>> row["minute"].isoformat(), row["app"], row["n"], row["toxic"], row["latency_max"]
('2026-03-02T03:00:00+00:00', '', 3, 3, 950.0)
>>> histogram = [row[c] for c in STREAM_LATENCY_COLUMNS]
>>> round(quantile(histogram, 0.5, row["latency_min"], row["latency_max"]))  # exact: 180, in [158, 200)
178
"""

from __future__ import annotations

import logging
import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table

from detectors.annotation import Annotation
from detectors.config import TOXIC_AT
from monitor.ingest.batch import Batch, Tally
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.storage.db import as_utc
from monitor.storage.schema import (
    STREAM_LATENCY_BOUNDS_MS,
    STREAM_LATENCY_COLUMNS,
    stream_minutes,
)

log = logging.getLogger(__name__)

__all__ = ["AggregateStep", "MinuteCounts", "in_response", "latency_bucket", "minute_of", "quantile"]

_BUCKETS = len(STREAM_LATENCY_COLUMNS)


def minute_of(ts: datetime) -> datetime:
    """The UTC minute ``ts`` falls in (naive times are taken as UTC)."""
    return as_utc(ts).replace(second=0, microsecond=0)


def latency_bucket(latency_ms: float) -> int:
    """Index of the `stream_minutes` histogram column (``lat_NN``) that counts ``latency_ms``.

    >>> latency_bucket(0.2), latency_bucket(1.0), latency_bucket(100.0), latency_bucket(3_600_000.0)
    (0, 1, 21, 59)
    """
    return bisect_right(STREAM_LATENCY_BOUNDS_MS, latency_ms)


def quantile(counts: Sequence[int], q: float, low: float | None = None, high: float | None = None
             ) -> float | None:
    """The ``q`` quantile of latencies counted in the histogram ``counts`` (``lat_00``…), or None if empty.

    The bucket holding the quantile's rank is found exactly; inside it the value is interpolated on a log
    scale, and clamped to ``low``/``high`` (the smallest and largest latency counted), so that constant
    latencies come out exact. Resolution: the answer lies in the bucket of the true quantile, so it is never
    off by more than one bucket width (a factor 10^0.1 ≈ 1.26); on lognormal latencies — from very tight
    (σ = 0.05) to very spread (σ = 1.5) — the p95 came out within ±10 %, mostly within ±3 %
    (tests/monitor/test_aggregate.py; bench/alert_eval.py prints the difference on its data).

    >>> quantile([0] * 21 + [100] + [0] * 38, 0.95, 100.0, 100.0)
    100.0
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = q * total
    i, seen = 0, 0
    while not counts[i] or seen + counts[i] < rank:  # the bucket holding the rank; stops by the last count
        seen += counts[i]
        i += 1
    lo = STREAM_LATENCY_BOUNDS_MS[i - 1] if i > 0 else 0.0
    hi = STREAM_LATENCY_BOUNDS_MS[i] if i < len(STREAM_LATENCY_BOUNDS_MS) else math.inf
    if low is not None:
        lo = max(lo, low)
    if high is not None:
        hi = min(hi, high)
    if math.isinf(hi):
        return lo
    if hi <= lo:
        return hi
    fraction = min(1.0, max(0.0, (rank - seen) / counts[i]))
    if lo <= 0:
        return hi * fraction
    return lo * (hi / lo) ** fraction


class MinuteCounts:
    """Counters of some records, per (minute, model, app): the `stream_minutes` increments of one batch."""

    def __init__(self, toxic_at: float = TOXIC_AT) -> None:
        """``toxic_at``: ``[detectors.toxicity] threshold``, the score from which a response counts as toxic."""
        self._rows: dict[tuple[datetime, str, str], list[Any]] = {}
        self.toxic_at = toxic_at

    def add(self, ts: datetime, model: str, app: str | None, status: str, latency_ms: float | None, *,
            toxicity: float | None, refusal: bool | None, pii_leak: bool = False, secret_leak: bool = False,
            cost_usd: float | None = None, injection: bool | None = None) -> None:
        """Count one record. ``injection``: whether the prompt_injection detector flagged its prompt (None: not
        judged)."""
        key = (minute_of(ts), model, app or "")
        row = self._rows.get(key)
        if row is None:
            # n, errors, toxicity_scored, toxic, refusal_scored, refusals, latency_n, latency_sum,
            # latency_min, latency_max, histogram, last_ts, pii_in_response, secret_in_response, cost_n, cost_sum,
            # injection_scored, injections
            row = self._rows[key] = [0, 0, 0, 0, 0, 0, 0, 0.0, None, None, [0] * _BUCKETS, ts, 0, 0, 0, 0.0, 0, 0]
        row[0] += 1
        if status == "error":
            row[1] += 1
        if toxicity is not None:
            row[2] += 1
            row[3] += toxicity >= self.toxic_at
        if refusal is not None:
            row[4] += 1
            row[5] += bool(refusal)
        if latency_ms is not None:
            row[6] += 1
            row[7] += latency_ms
            row[8] = latency_ms if row[8] is None else min(row[8], latency_ms)
            row[9] = latency_ms if row[9] is None else max(row[9], latency_ms)
            row[10][latency_bucket(latency_ms)] += 1
        if ts > row[11]:
            row[11] = ts
        if pii_leak:
            row[12] += 1
        if secret_leak:
            row[13] += 1
        if cost_usd is not None:
            row[14] += 1
            row[15] += cost_usd
        if injection is not None:
            row[16] += 1
            row[17] += bool(injection)

    def __len__(self) -> int:
        return len(self._rows)

    def rows(self, now: datetime) -> list[dict[str, Any]]:
        """One `stream_minutes` row per key, as increments; ``now`` is their ``updated_at``."""
        out = []
        for (minute, model, app), r in self._rows.items():
            row = {"minute": minute, "model": model, "app": app, "n": r[0], "errors": r[1],
                   "toxicity_scored": r[2], "toxic": r[3], "refusal_scored": r[4], "refusals": r[5],
                   "latency_n": r[6], "latency_sum": r[7], "latency_min": r[8], "latency_max": r[9],
                   "last_ts": r[11], "pii_in_response": r[12], "secret_in_response": r[13],
                   "cost_n": r[14], "cost_sum": r[15], "injection_scored": r[16], "injections": r[17],
                   "updated_at": now}
            row.update(zip(STREAM_LATENCY_COLUMNS, r[10], strict=True))
            out.append(row)
        return out


def in_response(details: Mapping[str, Any] | None) -> bool:
    """Whether a detection's details place a finding in the response (not only in the prompt): what the leak
    counters count here, and what the leak rules check in stored `detections` rows."""
    if not details:
        return False
    if details.get("field") == "response":
        return True
    return any(f.get("field") == "response" for f in details.get("findings", ()) if isinstance(f, Mapping))


def _in_response(annotation: Annotation, detector: str) -> bool:
    """Whether ``detector``'s detection of this record places a finding in the response."""
    return any(d.detector == detector and in_response(d.details) for d in annotation.detections)


class AggregateStep(Step):
    """`monitor.ingest.steps.Step` that adds each batch's records to `stream_minutes`, each stored record once.

    The counts go into the batch as a `Tally`; the store adds those of the records it really inserted (a
    replayed record, or a second message reusing a stored id, is not inserted, so not counted), in the
    transaction that stores them. An id twice in one batch counts once. Costs nothing extra in the common
    case (every record new); a batch with records already stored is counted again without them. Requires the
    detect step before it for the toxicity, refusal and leak counters.

    >>> from monitor.ingest.record import decode
    >>> step = AggregateStep()
    >>> record = decode(b'{"id": "r1", "ts": 0, "model": "m", "prompt": "p", "response": "r"}')
    >>> batch = Batch(records=[record, record])
    >>> step.process(batch)
    >>> (tally,) = batch.tallies
    >>> [row["n"] for row in tally.rows({"r1"})[stream_minutes]], tally.rows(set())
    ([1], {})
    """

    def __init__(self, toxic_at: float = TOXIC_AT) -> None:
        """``toxic_at``: ``[detectors.toxicity] threshold`` (the ``toxic`` counter's cut-off)."""
        self.toxic_at = toxic_at

    def counts(self, records: Sequence[Record], annotations: Sequence[Annotation] | None,
               only: AbstractSet[str] | None = None) -> dict[Table, list[dict[str, Any]]]:
        """The `stream_minutes` increments of ``records`` (each id once; only ids in ``only`` when given)."""
        seen: set[str] = set()
        counts = MinuteCounts(self.toxic_at)
        for i, record in enumerate(records):
            if record.id in seen or (only is not None and record.id not in only):
                continue
            seen.add(record.id)
            if annotations:
                annotation = annotations[i]
                signals = annotation.signals
                pii_leak = bool(signals.get("pii_count")) and _in_response(annotation, "pii")
                secret_leak = bool(signals.get("secret_count")) and _in_response(annotation, "secrets")
                injection = annotation.flagged("prompt_injection")
            else:
                signals, pii_leak, secret_leak, injection = {}, False, False, None
            counts.add(record.ts, record.model, record.app, record.status, record.latency_ms,
                       toxicity=signals.get("response_toxicity"), refusal=signals.get("refusal"),
                       pii_leak=pii_leak, secret_leak=secret_leak, cost_usd=record.cost_usd, injection=injection)
        return {stream_minutes: counts.rows(datetime.now(UTC))} if counts else {}

    def process(self, batch: Batch) -> None:
        if not batch.records:
            return
        records, annotations = list(batch.records), list(batch.annotations)
        batch.tallies.append(Tally(
            ids={r.id for r in records}, increments=self.counts(records, annotations),
            recount=lambda inserted: self.counts(records, annotations, inserted)))

    def close(self) -> None:
        """Nothing to release: the counters live in the database."""
