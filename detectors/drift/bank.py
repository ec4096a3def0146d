"""The drift bank: one calibrated detector per (stream, signal), fed in batches, checkpointable.

Streams are the global stream ``*`` and one per (model, app), named ``model=M,app=A``. Every record
feeds both. The false-alarm budget is per stream: on stationary traffic a stream raises at most one false
alarm per ``arl0`` of its records, all its signals together, so each of its detectors is calibrated to
``arl0 × len(signals)`` (the topic detector, which sees only the sampled prompts, to that times the
sample rate). Since a record belongs to two streams, the whole bank raises at most about two false alarms
per ``arl0`` records.

The number of (model, app) streams is capped: the stream idle longest is dropped when a new one arrives.
A detector that fires re-arms by warming up again on the new level (see `detectors.drift.chart`).

>>> from datetime import UTC, datetime
>>> bank = DriftBank(arl0=1e6, warmup=500)
>>> obs = [Observation(f"r{i}", datetime(2026, 1, 1, tzinfo=UTC), "model=m,app=a",
...                    {"latency_ms": 200.0 + (i % 7) * (10 if i < 3000 else 30)}) for i in range(4000)]
>>> events = bank.update(obs)
>>> sorted({(e.stream, e.signal, e.detector) for e in events})
[('*', 'latency_ms', 'cusum'), ('model=m,app=a', 'latency_ms', 'cusum')]
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from detectors.drift.bernoulli import BernoulliCUSUM
from detectors.drift.chart import Chart, update_together
from detectors.drift.cusum import GaussianCUSUM
from detectors.drift.signals import SIGNALS, Signal
from detectors.drift.topic import TopicMix, update_topics

GLOBAL = "*"
STATE_VERSION = 1


def stream_name(model: str, app: str | None) -> str:
    """The stream of a (model, app) pair; records without an app go to ``app=-``."""
    return f"model={model},app={app if app else '-'}"


@dataclass(frozen=True, slots=True)
class Observation:
    """One record as the bank sees it: its scalar signals (None = absent) and, maybe, a prompt embedding."""

    record_id: str
    ts: datetime
    stream: str
    values: Mapping[str, float | None]
    embedding: np.ndarray | None = None


@dataclass(slots=True)
class Columns:
    """A batch as the bank reads it, one entry per record in arrival order: ``values`` maps a scalar
    signal to its column (NaN = absent), ``embeddings`` holds the prompt embeddings of the records at
    positions ``embedded``."""

    record_ids: Sequence[str]
    ts: Sequence[datetime]
    streams: Sequence[str]
    values: Mapping[str, np.ndarray]
    embeddings: np.ndarray | None = None
    embedded: np.ndarray | None = None


@dataclass(slots=True)
class DriftEvent:
    """A detected change, with what a human needs to judge it: the statistics before and after."""

    stream: str
    signal: str
    detector: str
    detected_at: datetime
    record_id: str
    direction: str
    before: dict[str, Any]
    after: dict[str, Any]
    details: dict[str, Any] = field(default_factory=dict)


class DriftBank:
    """Calibrated detectors for every stream × signal. ``update`` returns the changes a batch revealed.

    Parameters: ``arl0`` records per false alarm per stream; ``warmup`` records a detector learns from
    before it may fire (also after each detection); ``k`` and ``odds_ratio`` the shift sizes the
    continuous and rate charts are tuned to; ``margin`` warm-up uncertainty the calibration absorbs;
    ``topics``/``topic_warmup``/``topic_sample_rate`` configure the topic detector (``topic_sample_rate``
    is the fraction of records whose prompts are embedded); ``max_streams`` caps (model, app) streams.
    """

    def __init__(self, arl0: float = 1e6, warmup: int = 5000, k: float = 0.125, odds_ratio: float = 3.0,
                 margin: float = 1.0, topics: int = 8, topic_warmup: int = 4000, topic_sample_rate: float = 0.25,
                 max_streams: int = 200, signals: Sequence[Signal] = SIGNALS) -> None:
        self.arl0, self.warmup, self.k, self.odds_ratio, self.margin = arl0, warmup, k, odds_ratio, margin
        self.topics, self.topic_warmup, self.topic_sample_rate = topics, topic_warmup, topic_sample_rate
        self.max_streams = max_streams
        self.signals = tuple(signals)
        self.detectors: OrderedDict[str, dict[str, Chart | TopicMix]] = OrderedDict()
        self.evicted = 0

    def detector_for(self, signal: Signal) -> Chart | TopicMix:
        """A fresh detector for ``signal``, calibrated to this bank's per-detector share of the budget."""
        share = self.arl0 * len(self.signals)
        if signal.kind == "continuous":
            return GaussianCUSUM(share, self.warmup, self.k, signal.transform, margin=self.margin)
        if signal.kind == "rate":
            return BernoulliCUSUM(share, self.warmup, self.odds_ratio, self.margin)
        return TopicMix(max(share * self.topic_sample_rate, 10.0), self.topic_warmup, self.topics,
                        margin=self.margin)

    def update(self, observations: Sequence[Observation]) -> list[DriftEvent]:
        """Feed a batch (arrival order); return the drift events it revealed, in no particular order."""
        if not observations:
            return []
        names = [s.name for s in self.signals if s.kind != "topic"]
        values = {name: np.array([obs.values.get(name) for obs in observations], dtype=float) for name in names}
        embedded = [i for i, obs in enumerate(observations) if obs.embedding is not None]
        return self.update_columns(Columns(
            [obs.record_id for obs in observations], [obs.ts for obs in observations],
            [obs.stream for obs in observations], values,
            np.stack([observations[i].embedding for i in embedded]) if embedded else None,  # type: ignore[misc]
            np.asarray(embedded, dtype=np.intp),
        ))

    def update_columns(self, batch: Columns) -> list[DriftEvent]:
        """`update` for a batch already in columns (what the drift step builds, without per-record objects)."""
        n = len(batch.streams)
        if not n:
            return []
        codes: dict[str, int] = {}
        code = np.fromiter((codes.setdefault(s, len(codes)) for s in batch.streams), dtype=np.intp, count=n)
        if len(codes) == 1:
            groups = [(next(iter(codes)), np.arange(n))]
        else:
            order = np.argsort(code, kind="stable")
            bounds = np.cumsum(np.bincount(code, minlength=len(codes)))[:-1]
            groups = list(zip(codes, np.split(order, bounds), strict=True))
        everything = np.arange(n)
        present = {name: ~np.isnan(column) for name, column in batch.values.items()}
        embedded = batch.embedded if batch.embedded is not None else np.zeros(0, dtype=np.intp)
        is_embedded = np.zeros(n, dtype=bool)
        is_embedded[embedded] = True
        embedding_row = np.full(n, -1, dtype=np.intp)
        embedding_row[embedded] = np.arange(embedded.size)
        fed: list[tuple[str, dict[str, Chart | TopicMix], np.ndarray]] = []
        for stream, rows in [(GLOBAL, everything), *groups]:
            if stream == GLOBAL and rows is not everything:
                continue  # a record of a stream literally named "*" already feeds the global stream
            fed.append((stream, self._stream(stream), rows))
        events = []
        for signal in self.signals:
            # Every stream's detector of this signal, with its values and where they came from.
            todo: list[tuple[str, Chart | TopicMix, np.ndarray, np.ndarray]] = []
            for stream, detectors, rows in fed:
                whole = rows is everything
                if signal.kind == "topic":
                    at = embedded if whole else rows[is_embedded[rows]]
                    if not at.size:
                        continue
                    values = batch.embeddings[embedding_row[at]]  # type: ignore[index]
                else:
                    column, mask = batch.values.get(signal.name), present.get(signal.name)
                    if column is None:
                        break
                    at = np.flatnonzero(mask) if whole else rows[mask[rows]]  # type: ignore[index]
                    if not at.size:
                        continue
                    values = column[at]
                detector = detectors.get(signal.name)
                if detector is None:
                    detector = detectors[signal.name] = self.detector_for(signal)
                todo.append((stream, detector, at, values))
            if signal.kind == "topic":
                found = update_topics([d for _, d, _, _ in todo], [v for _, _, _, v in todo])  # type: ignore[misc]
            else:
                found = update_together([d for _, d, _, _ in todo], [v for _, _, _, v in todo])  # type: ignore[misc]
            for (stream, detector, at, _), changes in zip(todo, found, strict=True):
                for change in changes:
                    i = int(at[change.index])
                    events.append(DriftEvent(stream, signal.name, detector.kind, batch.ts[i], batch.record_ids[i],
                                             change.direction, change.before, change.after, change.details))
        return events

    def _stream(self, stream: str) -> dict[str, Chart | TopicMix]:
        detectors = self.detectors.get(stream)
        if detectors is None:
            detectors = self.detectors[stream] = {}
            streams = len(self.detectors) - (GLOBAL in self.detectors)
            if streams > self.max_streams:
                oldest = next(s for s in self.detectors if s != GLOBAL)
                del self.detectors[oldest]
                self.evicted += 1
        self.detectors.move_to_end(stream)
        return detectors

    def state(self) -> dict[str, Any]:
        """Everything needed to continue after a restart, as plain JSON-able data (versioned)."""
        return {
            "version": STATE_VERSION,
            "streams": [[stream, {name: d.state() for name, d in detectors.items()}]
                        for stream, detectors in self.detectors.items()],
        }

    def restore(self, state: Mapping[str, Any]) -> None:
        """Replace this bank's detectors with those in ``state``. Restored detectors keep the parameters they
        were created with (also when they re-arm); only new streams pick up changed settings."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported drift state version {state.get('version')!r}")
        self.detectors = OrderedDict(
            (stream, {name: (TopicMix.from_state(d) if d["kind"] == TopicMix.kind else Chart.from_state(d))
                      for name, d in detectors.items()})
            for stream, detectors in state["streams"]
        )
