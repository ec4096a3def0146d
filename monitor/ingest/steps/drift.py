"""The drift step: every record's signals added to per-stream buckets, for the fold job to watch.

Drift is watched per **stream** — the global stream ``*``, each model (``model=M``), each app (``app=A``)
and each pair (``model=M,app=A``; ``app=-`` for records without an app) — not per Kafka partition: a
stream's detectors must see all of its records whichever partition carried them and whichever daemon
consumed them. So this step does not detect. It adds each record's signals to the sufficient statistics of a
short bucket of its event time (``ts``; ``[drift] bucket_s`` long), one `drift_buckets` row per (bucket,
stream, signal):
the count, the sum and the sum of squares of the value (``log1p`` of lengths, latency and tokens; feedback
as is; 0/1 for the error, refusal and toxic rates). The rows are increments stored with the batch, in its
transaction; `monitor.jobs.drift` folds closed buckets into the detectors, in bucket order, on one daemon.
Event time, not arrival time, so that what is detected does not depend on how partitions were spread over
daemons or in which order a backlog was read.

Topic drift follows the same model: a deterministic sample of prompts (``[drift] topic_sample_rate``, by a
hash of the record id) is embedded and each assigned the nearest of the fixed subject anchors
(`detectors.drift.subjects`, the same cells in every daemon); the count of each subject is a row of signal
``topic:<subject>`` (``n`` = ``total`` = ``total_sq`` = the count) in the same buckets and transaction.

Each record is added once although Kafka delivers at least once, as the per-minute counters are
(`monitor.ingest.steps.aggregate`): the pipeline stores ``consumer_progress.committed`` in the same
transaction as each batch, so a record below it was added with its batch and is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Engine

from detectors.annotation import Annotation
from detectors.config import TOXIC_AT
from detectors.drift.embedding import sampled
from detectors.drift.signals import SCALAR_SIGNALS, TOPIC_PREFIX
from detectors.drift.subjects import SubjectCells
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.storage.db import as_utc
from monitor.storage.schema import drift_buckets
from monitor.storage.store import committed_positions

log = logging.getLogger(__name__)

Partition = tuple[str, int]
GLOBAL = "*"


def streams_of(model: str, app: str | None) -> tuple[str, str, str, str]:
    """The four streams a record of ``model`` and ``app`` belongs to, broadest first.

    >>> streams_of("m1", "chat")
    ('*', 'model=m1', 'app=chat', 'model=m1,app=chat')
    >>> streams_of("m1", None)[2:]
    ('app=-', 'model=m1,app=-')
    """
    a = app if app else "-"
    return GLOBAL, f"model={model}", f"app={a}", f"model={model},app={a}"


def bucket_of(seconds: float, bucket_s: float) -> int:
    """Start of the bucket holding ``seconds`` (epoch), in epoch milliseconds.

    >>> bucket_of(1000.7, 2.0), bucket_of(1001.99, 2.0), bucket_of(1002.0, 0.5)
    (1000000, 1000000, 1002000)
    """
    width = max(round(bucket_s * 1000), 1)
    return int(seconds * 1000) // width * width


def _rates(annotation: Annotation | None) -> tuple[float | None, bool | None]:
    """(response toxicity, refused) of one record: from the detect step's signals, else its detections."""
    if annotation is None:
        return None, None
    signals = annotation.signals
    toxicity, refusal = signals.get("response_toxicity"), signals.get("refusal")
    if toxicity is None or refusal is None:
        for d in annotation.detections:
            if toxicity is None and d.detector == "toxicity":
                toxicity = d.score
            elif refusal is None and d.detector == "refusal":
                refusal = d.flagged
    return toxicity, refusal


def signal_columns(records: Sequence[Record], annotations: Sequence[Annotation | None],
                   toxic_at: float = TOXIC_AT) -> dict[str, np.ndarray]:
    """The scalar drift signals of a batch, one float column per signal (NaN = absent). Answer-side
    signals are absent for failed requests; ``toxic`` is a response score at or above ``toxic_at``
    (``[detectors.toxicity] threshold``).

    >>> from monitor.ingest.record import decode
    >>> ok = decode(b'{"id":"a","ts":0,"model":"m","prompt":"hi","response":"hello","latency_ms":120}')
    >>> failed = decode(b'{"id":"b","ts":0,"model":"m","prompt":"hey","response":"","status":"error"}')
    >>> columns = signal_columns([ok, failed], [None, None])
    >>> columns["prompt_chars"].tolist(), columns["latency_ms"].tolist(), columns["error"].tolist()
    ([2.0, 3.0], [120.0, nan], [0.0, 1.0])
    """
    failed = np.fromiter((r.status == "error" for r in records), dtype=bool, count=len(records))
    columns = {
        "prompt_chars": np.fromiter(map(len, (r.prompt for r in records)), dtype=float, count=len(records)),
        "response_chars": np.fromiter(map(len, (r.response for r in records)), dtype=float, count=len(records)),
        "latency_ms": np.array([r.latency_ms for r in records], dtype=float),
        "tokens_in": np.array([r.tokens_in for r in records], dtype=float),
        "tokens_out": np.array([r.tokens_out for r in records], dtype=float),
        "feedback_score": np.array([r.feedback_score for r in records], dtype=float),
        "error": failed.astype(float),
    }
    if any(a is not None for a in annotations):
        toxicity, refusal = zip(*map(_rates, annotations), strict=True)
        toxic = np.array(toxicity, dtype=float)
        present = ~np.isnan(toxic)
        toxic[present] = toxic[present] >= toxic_at
        columns["toxic"] = toxic
        columns["refusal"] = np.array(refusal, dtype=float)
    else:
        columns["toxic"] = columns["refusal"] = np.full(len(records), np.nan)
    if failed.any():
        for name in ("response_chars", "latency_ms", "tokens_out", "toxic", "refusal"):
            columns[name] = np.where(failed, np.nan, columns[name])
    return columns


def bucket_rows(records: Sequence[Record], annotations: Sequence[Annotation | None], bucket_s: float,
                now: datetime, toxic_at: float = TOXIC_AT) -> list[dict[str, Any]]:
    """The `drift_buckets` increments of ``records``, each in the bucket of its event time.

    Sums are computed per (bucket, model, app) with one ``bincount`` per signal, then added up into the
    model, app and global streams, so a batch costs a few numpy calls per signal, not work per record and
    stream.
    """
    if not records:
        return []
    pairs: dict[tuple[int, str, str | None], int] = {}
    code = np.fromiter((pairs.setdefault((bucket_of(as_utc(r.ts).timestamp(), bucket_s), r.model, r.app or None),
                                         len(pairs)) for r in records), dtype=np.intp, count=len(records))
    columns = signal_columns(records, annotations, toxic_at)
    per_pair: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for signal in SCALAR_SIGNALS:
        column = columns[signal.name]
        present = ~np.isnan(column)
        if not present.any():
            continue
        values = column[present]
        if signal.kind == "continuous" and signal.transform == "log":
            values = np.log1p(np.maximum(values, 0.0))
        at = code[present]
        per_pair[signal.name] = (np.bincount(at, minlength=len(pairs)).astype(float),
                                 np.bincount(at, weights=values, minlength=len(pairs)),
                                 np.bincount(at, weights=values * values, minlength=len(pairs)))
    sums: dict[tuple[int, str, str], list[float]] = {}
    for (bucket, model, app), j in pairs.items():
        names = streams_of(model, app)
        for signal, (n, total, total_sq) in per_pair.items():
            if not n[j]:
                continue
            for stream in names:
                row = sums.get((bucket, stream, signal))
                if row is None:
                    sums[(bucket, stream, signal)] = [n[j], total[j], total_sq[j]]
                else:
                    row[0] += n[j]
                    row[1] += total[j]
                    row[2] += total_sq[j]
    return [{"bucket_ms": bucket, "stream": stream, "signal": signal, "n": int(n), "total": float(total),
             "total_sq": float(total_sq), "updated_at": now}
            for (bucket, stream, signal), (n, total, total_sq) in sums.items()]


def topic_rows(records: Sequence[Record], subjects: np.ndarray, names: Sequence[str], bucket_s: float,
               now: datetime) -> list[dict[str, Any]]:
    """The `drift_buckets` increments of the prompt subjects of ``records`` (``subjects[i]``: the cell of
    record i, an index into ``names``): one ``topic:<subject>`` row per (bucket, stream, subject) seen."""
    if not records:
        return []
    pairs: dict[tuple[int, str, str | None], int] = {}
    code = np.fromiter((pairs.setdefault((bucket_of(as_utc(r.ts).timestamp(), bucket_s), r.model, r.app or None),
                                         len(pairs)) for r in records), dtype=np.intp, count=len(records))
    table = np.zeros((len(pairs), len(names)), dtype=np.int64)
    np.add.at(table, (code, np.asarray(subjects, dtype=np.intp)), 1)
    sums: dict[tuple[int, str, int], int] = {}
    for (bucket, model, app), j in pairs.items():
        for subject in np.flatnonzero(table[j]):
            for stream in streams_of(model, app):
                key = (bucket, stream, int(subject))
                sums[key] = sums.get(key, 0) + int(table[j, subject])
    return [{"bucket_ms": bucket, "stream": stream, "signal": f"{TOPIC_PREFIX}{names[subject]}", "n": n,
             "total": float(n), "total_sq": float(n), "updated_at": now}
            for (bucket, stream, subject), n in sums.items()]


class DriftStep(Step):
    """`Step` that adds every record's drift signals to the bucket of its event time, in its four streams,
    once. Positions work as in `monitor.ingest.steps.aggregate.AggregateStep`, with the same assumptions
    (one consumer group per database, a record id at one offset).

    >>> from monitor.ingest.record import decode
    >>> step = DriftStep(engine=None, group_id="watchkeeper")
    >>> record = decode(b'{"id": "r1", "ts": 0, "model": "m", "app": "a", "prompt": "p", "response": "hello"}')
    >>> first, again = Batch(records=[record], next_offsets={("", 0): 1}), Batch(records=[record])
    >>> step.process(first), step.process(again)
    (None, None)
    >>> sorted(r["stream"] for r in first.increments[drift_buckets] if r["signal"] == "response_chars")
    ['*', 'app=a', 'model=m', 'model=m,app=a']
    >>> again.increments[drift_buckets]
    []
    """

    def __init__(self, engine: Engine | None, group_id: str, *, bucket_s: float = 2.0,
                 toxic_at: float = TOXIC_AT, subjects: SubjectCells | None = None,
                 topic_sample_rate: float = 0.0) -> None:
        self.engine = engine
        self.subjects = subjects if topic_sample_rate > 0 else None
        self.topic_sample_rate = topic_sample_rate
        self.group_id = group_id
        self.bucket_s = bucket_s
        self.toxic_at = toxic_at
        self._positions: dict[Partition, int] = {}

    def on_assigned(self, partitions: Iterable[Partition]) -> None:
        """Read where each newly assigned partition's adding stopped (0: never added)."""
        wanted = set(partitions)
        if not wanted:
            return
        found = committed_positions(self.engine, self.group_id) if self.engine is not None else {}
        for key in wanted:
            self._positions[key] = found.get(key, 0)

    def on_revoked(self, partitions: Iterable[Partition]) -> None:
        """Forget revoked partitions: their next owner reads the committed position."""
        for key in partitions:
            self._positions.pop(key, None)

    def process(self, batch: Batch) -> None:
        unknown = set(batch.next_offsets) - self._positions.keys()
        unknown |= {(r.topic, r.partition) for r in batch.records} - self._positions.keys()
        if unknown:
            self.on_assigned(unknown)
        records = batch.records
        keep = [i for i, r in enumerate(records) if r.offset >= self._positions[(r.topic, r.partition)]]
        for key, next_offset in batch.next_offsets.items():
            self._positions[key] = max(self._positions.get(key, 0), next_offset)
        if not keep:
            return
        annotations: Sequence[Annotation | None] = batch.annotations or [None] * len(records)
        if len(keep) < len(records):
            records = [records[i] for i in keep]
            annotations = [annotations[i] for i in keep]
        now = datetime.now(UTC)
        rows = bucket_rows(records, annotations, self.bucket_s, now, self.toxic_at)
        if self.subjects is not None:
            rate = self.topic_sample_rate
            chosen = [r for r in records if sampled(r.id, rate)]
            subjects = self.subjects.assign([r.prompt for r in chosen])
            rows += topic_rows(chosen, subjects, self.subjects.names, self.bucket_s, now)
        batch.increments[drift_buckets].extend(rows)

    def close(self) -> None:
        """Nothing to release: positions live in the database."""


__all__ = ["GLOBAL", "DriftStep", "bucket_of", "bucket_rows", "signal_columns", "streams_of", "topic_rows"]
