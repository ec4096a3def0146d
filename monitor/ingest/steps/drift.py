"""The drift step: every record's signals added to per-stream buckets, for the fold job to watch.

Drift is watched per **stream** — the global stream ``*``, each model (``model=M``), each app (``app=A``)
and each pair (``model=M,app=A``; ``app=-`` for records without an app) — not per Kafka partition: a
stream's detectors must see all of its records whichever partition carried them and whichever daemon
consumed them. So this step does not detect. It adds each record's signals to the sufficient statistics of a
short bucket of its event time (``ts``; ``[drift] bucket_s`` long), one `drift_buckets` row per (bucket,
stream, signal):
the count, the sum and the sum of squares of the value (``log1p`` of lengths, latency and tokens; feedback
and cost as is; 0/1 for the error, refusal, toxic and injection rates). The rows are increments stored with the
batch, in its transaction; `monitor.jobs.drift` folds closed buckets into the detectors, in bucket order, on one daemon.
Event time, not arrival time, so that what is detected does not depend on how partitions were spread over
daemons or in which order a backlog was read.

Topic drift follows the same model: a deterministic sample of prompts (``[drift] topic_sample_rate``, by a
hash of the record id) is embedded and each assigned the nearest of the fixed subject anchors
(`detectors.drift.subjects`, the same cells in every daemon); the count of each subject is a row of signal
``topic:<subject>`` (``n`` = ``total`` = ``total_sq`` = the count) in the same buckets and transaction.

Each stored record is added once although Kafka delivers at least once and a producer may reuse an id, as
the per-minute counters are (`monitor.ingest.steps.aggregate`): the rows go into the batch as a
`monitor.ingest.batch.Tally`, and the store adds those of only the records it really inserted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import Table

from detectors.annotation import Annotation
from detectors.config import TOXIC_AT
from detectors.drift.embedding import sampled
from detectors.drift.signals import SCALAR_SIGNALS, TOPIC_PREFIX
from detectors.drift.subjects import SubjectCells
from monitor.ingest.batch import Batch, Tally
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.storage.db import as_utc
from monitor.storage.schema import drift_buckets

log = logging.getLogger(__name__)

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


def _injected(annotation: Annotation | None) -> float:
    """1.0 when the prompt_injection detector flagged the record's prompt, 0.0 when it judged it clean, NaN
    when it did not run (then the ``injection`` signal is absent, not zero)."""
    flagged = annotation.flagged("prompt_injection") if annotation is not None else None
    return np.nan if flagged is None else float(flagged)


def signal_columns(records: Sequence[Record], annotations: Sequence[Annotation | None],
                   toxic_at: float = TOXIC_AT) -> dict[str, np.ndarray]:
    """The scalar drift signals of a batch, one float column per signal (NaN = absent). Answer-side
    signals are absent for failed requests; ``toxic`` is a response score at or above ``toxic_at``
    (``[detectors.toxicity] threshold``); ``injection`` is a prompt the prompt_injection detector flagged
    (kept for failed requests too: the prompt was sent).

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
        "cost": np.array([r.cost_usd for r in records], dtype=float),
        "error": failed.astype(float),
    }
    if any(a is not None for a in annotations):
        toxicity, refusal = zip(*map(_rates, annotations), strict=True)
        toxic = np.array(toxicity, dtype=float)
        present = ~np.isnan(toxic)
        toxic[present] = toxic[present] >= toxic_at
        columns["toxic"] = toxic
        columns["refusal"] = np.array(refusal, dtype=float)
        columns["injection"] = np.array([_injected(a) for a in annotations], dtype=float)
    else:
        columns["toxic"] = columns["refusal"] = columns["injection"] = np.full(len(records), np.nan)
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
    """`Step` that adds every stored record's drift signals to the bucket of its event time, in its four
    streams, once: the rows are a `Tally`, added by the store for the records it really inserted.

    >>> from monitor.ingest.record import decode
    >>> step = DriftStep()
    >>> record = decode(b'{"id": "r1", "ts": 0, "model": "m", "app": "a", "prompt": "p", "response": "hello"}')
    >>> batch = Batch(records=[record])
    >>> step.process(batch)
    >>> (tally,) = batch.tallies
    >>> sorted(r["stream"] for r in tally.rows({"r1"})[drift_buckets] if r["signal"] == "response_chars")
    ['*', 'app=a', 'model=m', 'model=m,app=a']
    >>> tally.rows(set())
    {}
    """

    def __init__(self, *, bucket_s: float = 2.0, toxic_at: float = TOXIC_AT, subjects: SubjectCells | None = None,
                 topic_sample_rate: float = 0.0) -> None:
        self.subjects = subjects if topic_sample_rate > 0 else None
        self.topic_sample_rate = topic_sample_rate
        self.bucket_s = bucket_s
        self.toxic_at = toxic_at

    def buckets(self, records: Sequence[Record], annotations: Sequence[Annotation | None],
                only: AbstractSet[str] | None = None, *,
                subjects_of: Mapping[str, int] | None = None) -> dict[Table, list[dict[str, Any]]]:
        """The `drift_buckets` increments of ``records``, each id once (only ids in ``only`` when given);
        ``subjects_of``: the subject cell of each sampled prompt, by record id (topic rows)."""
        seen: set[str] = set()
        keep = []
        for i, r in enumerate(records):
            if r.id not in seen and (only is None or r.id in only):
                seen.add(r.id)
                keep.append(i)
        if len(keep) < len(records):
            records = [records[i] for i in keep]
            annotations = [annotations[i] for i in keep]
        now = datetime.now(UTC)
        rows = bucket_rows(records, annotations, self.bucket_s, now, self.toxic_at)
        if self.subjects is not None and subjects_of:
            chosen = [r for r in records if r.id in subjects_of]
            cells = np.fromiter((subjects_of[r.id] for r in chosen), dtype=np.intp, count=len(chosen))
            rows += topic_rows(chosen, cells, self.subjects.names, self.bucket_s, now)
        return {drift_buckets: rows} if rows else {}

    def process(self, batch: Batch) -> None:
        if not batch.records:
            return
        records = list(batch.records)
        annotations: Sequence[Annotation | None] = list(batch.annotations) or [None] * len(records)
        subjects_of: dict[str, int] = {}  # embedded once, whether the store later recounts or not
        if self.subjects is not None:
            chosen = [r for r in records if sampled(r.id, self.topic_sample_rate)]
            cells = self.subjects.assign([r.prompt for r in chosen])
            subjects_of = {r.id: int(c) for r, c in zip(chosen, cells, strict=True)}
        batch.tallies.append(Tally(
            ids={r.id for r in records}, increments=self.buckets(records, annotations, subjects_of=subjects_of),
            recount=lambda inserted: self.buckets(records, annotations, inserted, subjects_of=subjects_of)))

    def close(self) -> None:
        """Nothing to release: the buckets live in the database."""


__all__ = ["GLOBAL", "DriftStep", "bucket_of", "bucket_rows", "signal_columns", "streams_of", "topic_rows"]
