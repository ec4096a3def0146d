"""The sampler: which records go to human review, and with what probability.

Two kinds of sample, each a row in `samples` keyed by (record_id, reason):

- ``uniform``: every record of a stratum (model, app) is kept with the stratum's rate. These rows are what
  accuracy is estimated from, so each carries its true inclusion probability and the estimator weighs it
  by 1/p (Hájek). Strata are sampled independently, each with its own cap, so a busy app cannot starve a
  small one; a small app can be given a higher rate (``stratum_rates``).
- risk: a record flagged by a detector (``toxicity``, ``pii``, ``secrets``, ``refusal``…), seen while its
  stream has a recent drift event (``drift``), or with low end-user feedback (``low_feedback``) is kept
  with that reason's rate. These rows find failures fast; they are not used for accuracy.

Decisions are deterministic: a record is kept for a reason when ``hash(seed, reason, id) < rate``, so a
replayed batch decides the same way (the store inserts with ON CONFLICT DO NOTHING).

Caps, and why the probabilities stay true. A cap bounds the samples of one (stratum, reason, window).
Stopping dead at the cap would give the rest of the window probability 0 and bias the estimate towards the
early hours. Instead the rate halves each time half of the remaining budget is used (the first cap/2
samples at rate p, the next cap/4 at p/2, …) and, once the cap is reached, halves again with every further
sample. Every record keeps a non-zero probability and each row stores the rate in force when it was
decided: the record's inclusion probability conditional on what came before. Because a record's hash is
independent of earlier decisions, the Horvitz–Thompson sum with these probabilities stays unbiased. The
cap is therefore soft: a window can exceed it by about log2(records × rate) samples, and records late in
an overfull window carry large weights (which the effective sample size of the estimate reflects).

Counts live in memory, per daemon. `SamplingStep.from_database` seeds them from `samples` at start-up so a
restart does not grant a fresh budget; with several daemons in one consumer group each holds its own
counts, so a cap is per instance (at most instances × cap per window). Records arriving for windows older
than the newest few are counted afresh. Drift boosts are learnt from the `drift_events` table
(`monitor.ingest.steps.boosts`: every event on start, new ones every few seconds), so a drift the fold job
found on any stream boosts that stream's records on every daemon, and a restart forgets none.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, select

from monitor.config import SamplingConfig
from monitor.ingest.batch import Batch
from monitor.ingest.record import Record
from monitor.ingest.steps import Step
from monitor.ingest.steps.boosts import DriftBoosts
from monitor.storage.db import as_utc
from monitor.storage.schema import samples

UNIFORM = "uniform"
DRIFT = "drift"
LOW_FEEDBACK = "low_feedback"
_KEEP_WINDOWS = 3


def unit_hash(seed: str, stream: str, record_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, stream, record id).

    >>> unit_hash("s", "uniform", "r1") == unit_hash("s", "uniform", "r1")
    True
    >>> 0.0 <= unit_hash("s", "uniform", "r1") < 1.0
    True
    """
    digest = hashlib.blake2b(f"{seed}\x1f{stream}\x1f{record_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 18446744073709551616.0


def stratum_of(model: str, app: str | None) -> str:
    return f"model={model},app={app or ''}"


class Budget:
    """The rate ladder of one (stratum, reason, window): full rate for the first half of the cap, then
    half the rate for the next quarter, and so on; past the cap, half again with every sample.

    >>> b = Budget(cap=4)
    >>> b.rate(0.5)
    0.5
    >>> b.take(); b.take()
    >>> b.rate(0.5)  # half the cap used: half the rate
    0.25
    """

    __slots__ = ("_factor", "_remaining", "_threshold", "cap", "count")

    def __init__(self, cap: int | None, count: int = 0) -> None:
        self.cap = cap
        self.count = 0
        self._factor = 1.0
        self._remaining = cap / 2.0 if cap is not None else 0.0
        self._threshold = cap - self._remaining if cap is not None else float("inf")
        for _ in range(count):
            self.take()

    def rate(self, base: float) -> float:
        return base * self._factor

    def take(self) -> None:
        self.count += 1
        while self.count >= self._threshold:
            self._factor /= 2.0
            if self._remaining >= 2.0:
                self._remaining /= 2.0
                self._threshold = self.cap - self._remaining  # type: ignore[operator]
            else:  # the budget is spent: each further sample halves the rate again
                self._threshold += 1.0


class SamplingStep(Step):
    """Pipeline step: appends `samples` rows for the records of a batch. No database I/O per batch.

    >>> from monitor.ingest.record import decode
    >>> step = SamplingStep(SamplingConfig(uniform_rate=1.0))
    >>> batch = Batch(records=[decode(b'{"id":"r1","ts":0,"model":"m","prompt":"p","response":"r"}')])
    >>> step.process(batch)
    >>> [(row["reason"], row["inclusion_probability"]) for row in batch.rows[samples]]
    [('uniform', 1.0)]
    """

    def __init__(self, config: SamplingConfig, counts: Mapping[tuple[str, str, datetime], int] | None = None,
                 boosts: DriftBoosts | None = None):
        self._config = config
        self._budgets: dict[tuple[str, str, datetime], Budget] = {}
        for (stratum, reason, window), count in (counts or {}).items():
            cap = config.uniform_cap if reason == UNIFORM else config.risk_cap
            self._budgets[(stratum, reason, window)] = Budget(cap, count)
        self._strata: dict[tuple[str, str | None], tuple[str, float]] = {}
        self.boosts = boosts if boosts is not None else DriftBoosts(config.drift_boost_s)
        self._prefixes: dict[str, Any] = {}
        self._newest_window: datetime | None = None

    @classmethod
    def from_database(cls, config: SamplingConfig, engine: Engine, now: datetime | None = None) -> SamplingStep:
        """A step whose caps continue from the samples already stored for the current windows, and whose drift
        boosts are read from (and kept up to date with) the `drift_events` table."""
        now = now or datetime.now(UTC)
        since = window_start(now, config.window_s * _KEEP_WINDOWS, config.window_s)
        query = (
            select(samples.c.stratum, samples.c.reason, samples.c.window_start, func.count())
            .where(samples.c.window_start >= since)
            .group_by(samples.c.stratum, samples.c.reason, samples.c.window_start)
        )
        with engine.connect() as conn:
            rows = conn.execute(query).all()
        counts = {(s, r, as_utc(w)): n for s, r, w, n in rows}
        return cls(config, counts, DriftBoosts(config.drift_boost_s, engine if DRIFT in config.risk_rates else None))

    def process(self, batch: Batch) -> None:
        config = self._config
        if not config.enabled or not batch.records:
            return
        self.boosts.refresh()
        sampled_at = batch.received_at or datetime.now(UTC)
        out = batch.rows[samples]
        annotations = batch.annotations if len(batch.annotations) == len(batch.records) else None
        risk_rates = config.risk_rates
        low_feedback = risk_rates.get(LOW_FEEDBACK, 0.0)
        drift_rate = risk_rates.get(DRIFT, 0.0) if self.boosts else 0.0
        drifting: dict[tuple[str, str | None], list[tuple[float, float]]] = {}
        window_s = config.window_s
        windows: dict[int, datetime] = {}
        consider = self._consider
        for i, record in enumerate(batch.records):
            ts = record.ts.timestamp()
            index = int(ts) // window_s
            window = windows.get(index)
            if window is None:
                window = windows[index] = datetime.fromtimestamp(index * window_s, UTC)
            stratum, uniform_rate = self._stratum(record.model, record.app)
            wanted = 0
            if uniform_rate > 0.0:
                wanted = consider(record, stratum, window, UNIFORM, uniform_rate, wanted, sampled_at, out)
            # Risk reasons, each tested only as far as needed: most records are unflagged, without
            # feedback, and outside any drift.
            if annotations is not None:
                seen: list[str] = []
                for detection in annotations[i].detections:
                    if detection.flagged and detection.detector in risk_rates and detection.detector not in seen:
                        seen.append(detection.detector)
                        wanted = consider(record, stratum, window, detection.detector,
                                          risk_rates[detection.detector], wanted, sampled_at, out)
            score = record.feedback_score
            if score is not None and low_feedback > 0.0 and score < config.low_feedback_below:
                wanted = consider(record, stratum, window, LOW_FEEDBACK, low_feedback, wanted, sampled_at, out)
            if drift_rate > 0.0:
                key = (record.model, record.app)
                intervals = drifting.get(key)
                if intervals is None:
                    intervals = drifting[key] = self.boosts.intervals(record.model, record.app)
                for start, end in intervals:
                    if start <= ts <= end:
                        consider(record, stratum, window, DRIFT, drift_rate, wanted, sampled_at, out)
                        break
        self._forget_old()

    def close(self) -> None:
        """Nothing to release: counts are rebuilt from the database by `from_database`."""

    def _stratum(self, model: str, app: str | None) -> tuple[str, float]:
        """The stratum name and uniform rate of (model, app); overrides resolved once and cached."""
        key = (model, app)
        found = self._strata.get(key)
        if found is None:
            overrides = self._config.stratum_rates
            stratum = stratum_of(model, app)
            for name in (stratum, f"app={app or ''}", f"model={model}"):
                if name in overrides:
                    rate = overrides[name]
                    break
            else:
                rate = self._config.uniform_rate
            found = self._strata[key] = (stratum, rate)
        return found

    def _consider(self, record: Record, stratum: str, window: datetime, reason: str, base: float, wanted: int,
                  sampled_at: datetime, out: list[dict[str, Any]]) -> int:
        """Keep ``record`` for ``reason`` when its hash falls below the rate its budget allows; return the
        reviews its rows ask for (``wanted``, decided with its first kept row)."""
        if base <= 0.0:
            return wanted
        budget = self._budgets.get((stratum, reason, window)) or self._budget(stratum, reason, window)
        rate = budget.rate(base)
        if rate <= 0.0 or self._hash(reason, record.id) >= rate:
            return wanted
        budget.take()
        if not wanted:
            wanted = 2 if self._hash("double-review", record.id) < self._config.double_review_share else 1
        out.append({
            "record_id": record.id, "reason": reason, "stratum": stratum, "model": record.model,
            "app": record.app, "ts": record.ts, "window_start": window, "inclusion_probability": rate,
            "reviews_wanted": wanted, "sampled_at": sampled_at,
        })
        return wanted

    def _hash(self, stream: str, record_id: str) -> float:
        """`unit_hash` (the same value) with the hash state of the (seed, stream) prefix computed once."""
        prefix = self._prefixes.get(stream)
        if prefix is None:
            prefix = self._prefixes[stream] = hashlib.blake2b(f"{self._config.seed}\x1f{stream}\x1f".encode(),
                                                              digest_size=8)
        h = prefix.copy()
        h.update(record_id.encode())
        return int.from_bytes(h.digest(), "big") / 18446744073709551616.0

    def _budget(self, stratum: str, reason: str, window: datetime) -> Budget:
        key = (stratum, reason, window)
        budget = self._budgets.get(key)
        if budget is None:
            cap = self._config.uniform_cap if reason == UNIFORM else self._config.risk_cap
            budget = self._budgets[key] = Budget(cap)
            if self._newest_window is None or window > self._newest_window:
                self._newest_window = window
        return budget

    def _forget_old(self) -> None:
        if self._newest_window is None:
            return
        oldest = self._newest_window.timestamp() - self._config.window_s * (_KEEP_WINDOWS - 1)
        if len(self._budgets) > 10_000:
            self._budgets = {k: b for k, b in self._budgets.items() if k[2].timestamp() >= oldest}
        if self.boosts:
            self.boosts.forget_before(oldest)


def window_start(ts: datetime, back_s: float, window_s: int) -> datetime:
    """Start of the window (of ``window_s`` seconds, aligned to the epoch) holding ``ts - back_s``."""
    t = ts.timestamp() - back_s
    return datetime.fromtimestamp(t - t % window_s, UTC)
