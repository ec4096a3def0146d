"""The drift fold: closed buckets of every stream, in bucket order, into one detector per (stream, signal).

Every pipeline adds its records' signals to `drift_buckets` (`monitor.ingest.steps.drift`). This job runs
every ``[drift] fold_every_s`` on one daemon (the scheduler's lease) and, in one transaction:

1. reads the buckets after its cursor that are closed — buckets are event time; one is closed when it
   ended before the *watermark*: ``grace_s`` before now, held back by every partition of the group that is
   behind (`DriftFold.watermark`) — in bucket order; what was added to a folded bucket since (a late
   record, within ``late_s``) is fed at the current position, so no record goes unwatched;
2. feeds each (stream, signal) its bucket (`detectors.drift.buckets`: the calibrated self-starting CUSUM
   by default, or a river detector chosen in ``[drift.river]``);
3. when a detector fires, waits ``settle_s`` and then **attributes** the change to the narrowest stream that
   explains it (`attribute`), writes one `drift_events` row there — naming the streams whose alarms it
   explains in ``details.explains`` — and re-arms every detector of that signal on streams that share
   records with the chosen one (the global stream, its model's, its apps', its pairs), so the streams it
   drags along do not report it again later — after a *global* event only those that show the change
   (`SHIFTED_Z`), since a model added or retired moves the whole traffic and must not blind every model's
   chart for a new warm-up;
4. stores the cursor, every detector's state and the alarms still settling as one `detector_state` row,
   with the events. A crash or a failover to another daemon resumes from exactly that point: nothing is
   detected twice and nothing is skipped. The row is written only if no other run wrote it since this run
   read it (a run that outlived its lease loses, and rolls back).

Detection latency: on live traffic a record is folded about ``bucket_s + grace_s`` (plus up to
``fold_every_s``) after its event time, and reported ``settle_s`` (of event time) after its detector fired:
about 5–7 s with the defaults.

Topic drift: the pipelines count each sampled prompt's subject cell as ``topic:<subject>`` rows; the fold
gathers a stream's rows of one bucket into one count vector and feeds it to the stream's one mix chart
(`detectors.drift.mix.BucketMix`), so a change in what users ask about is one ``prompt_topic`` event, with
the subject shares before → after. Attribution judges each (model, app) pair's counts since the change
against its own reference mix and pools the pairs of wider streams (`mix_judges`), which makes a topic change
as comparable across streams as a scalar one.

False alarms: every detector is calibrated to ``arl0 × signals`` records (11 scalar signals, 12 with topic drift on;
the topic chart sees only the sampled prompts, so ``arl0 × signals × topic_sample_rate`` of them), so a
stream raises at most one false alarm per ``arl0`` of its records, its signals together; a record feeds four
streams (global, its model, its app, its pair), and alarms of related streams that fire together become one
event.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from detectors.drift.buckets import BucketChange, BucketChart, BucketCUSUM, RiverBuckets
from detectors.drift.mix import BucketMix, RiverMix
from detectors.drift.rates import BucketRate
from detectors.drift.signals import SCALAR_SIGNALS, TOPIC_PREFIX, TOPIC_SIGNAL, Signal
from detectors.drift.subjects import SUBJECTS
from monitor.config import Config, DriftConfig
from monitor.ingest.steps.drift import GLOBAL
from monitor.jobs.scheduler import Job, Superseded
from monitor.storage.db import as_utc
from monitor.storage.schema import consumer_progress, detector_state, drift_buckets, drift_events

log = logging.getLogger(__name__)

STATE_KEY = "drift-fold"
STATE_FORMAT = 1
SHIFTED_Z = 3.0
"""A child stream counts as changed when its values since the change lie this many standard errors away from
its reference (in the change's direction); the others, pooled, must lie less than this away."""
REST_Z = 2.0
"""Within a stream that contains a candidate, the candidate's siblings pooled count as changed from this many
standard errors (see `attribute`)."""
BOUND_Z = 2.0
"""... and as unchanged only once their shift's upper bound (this many standard errors above their mean)
lies below half the candidate's: until then the attribution waits for more records (up to `max_settle_s`)."""
MAX_ROWS = 20_000
"""Bucket rows folded per run (about a hundred buckets of a dozen streams and signals). A backlog after a restart is
caught up over several short runs rather than one long one, so a stopping daemon, whose scheduler waits for the
running job, is not held for tens of seconds (seen: 44 s on a busy two-core machine with 200,000)."""
STALE_S = 300.0
"""A partition whose progress row is older than this has no consumer: it does not hold the watermark back."""
UNKNOWN_MARK = -(2**62)
"""The watermark while a partition that is behind has not stored a record yet: no bucket is closed."""


def parse_stream(stream: str) -> tuple[str | None, str | None]:
    """(model, app) of a stream name; None where the stream spans all of them.

    >>> parse_stream("*"), parse_stream("model=m1"), parse_stream("app=chat"), parse_stream("model=m1,app=-")
    ((None, None), ('m1', None), (None, 'chat'), ('m1', '-'))
    """
    if stream == GLOBAL:
        return None, None
    parts = dict(part.split("=", 1) for part in stream.split(",") if "=" in part)
    return parts.get("model"), parts.get("app")


def overlaps(a: str, b: str) -> bool:
    """Whether two streams share records: a change in one shows in the other.

    >>> overlaps("*", "model=m1,app=a"), overlaps("model=m1", "app=a"), overlaps("model=m1", "model=m2,app=a")
    (True, True, False)
    """
    (ma, aa), (mb, ab) = parse_stream(a), parse_stream(b)
    return (ma is None or mb is None or ma == mb) and (aa is None or ab is None or aa == ab)


@dataclass
class Alarm:
    """A detector that fired and waits ``settle_s`` to be attributed."""

    signal: str
    stream: str
    direction: str
    start: int
    fired: int
    before: dict[str, float]
    after: dict[str, float]
    details: dict[str, Any] = field(default_factory=dict)


def attribute(direction: str, fired: set[str], sums: Mapping[str, tuple[float, float]],
              charts: Mapping[str, Any], final: bool = True) -> str | None:
    """The narrowest stream that explains a change seen on the ``fired`` streams.

    ``charts`` maps a stream to what judges it: anything with the bucket charts' ``deviation(n, total)``.
    A stream is *changed* when its detector fired, or when its values since the change (``sums``: count and
    sum per stream) lie `SHIFTED_Z` standard errors from its detector's reference in the change's
    direction. A changed stream *explains* the change when nothing outside it changed: no changed stream is
    disjoint from it, and within each stream that contains it, the rest (its other (model, app) pairs,
    pooled) lie less than `REST_Z` standard errors from their references — a lower bar, because the rest
    of a model-wide change may still hold few records when its first app's detector fires. So a change of
    one model across its apps is explained by ``model=M`` (each of its pairs leaves out siblings that
    changed too), a change confined to one (model, app) by that pair, a change of one app across models by
    ``app=A``. The narrowest that explains it wins (a pair, then a model or an app — the one further from its
    reference —, then the global stream, which explains everything).

    A quick detector fires on few records, and then a sibling that changed as much may not show it yet. So
    the rest counts as unchanged only when it has enough records to tell: the upper bound of its shift
    (`BOUND_Z` standard errors above its mean) lies below half the candidate's shift. Until then the answer
    is None (decide later) unless ``final``, when the rule above decides alone.
    """
    sign = 1.0 if direction == "up" else -1.0
    streams = set(sums) | fired | {GLOBAL}
    parsed = {s: parse_stream(s) for s in streams}

    def deviation(stream: str) -> tuple[float, float]:
        n, total = sums.get(stream, (0.0, 0.0))
        chart = charts.get(stream)
        if chart is None or n <= 0:
            return math.nan, 0.0
        return sign * chart.deviation(n, total), n

    dev = {s: deviation(s) for s in streams}
    scores = {s: d / math.sqrt(n) if n else math.nan for s, (d, n) in dev.items()}
    changed = {s for s in streams if s in fired or scores[s] >= SHIFTED_Z}
    pairs = [s for s, (m, a) in parsed.items() if m is not None and a is not None and not math.isnan(dev[s][0])]

    def width(stream: str) -> int:
        model, app = parsed[stream]
        return (model is None) + (app is None)

    undecided = False

    def rest_changed(stream: str) -> bool:
        nonlocal undecided
        model, app = parsed[stream]
        parents = [GLOBAL] + ([f"model={model}"] if model is not None and app is not None else []) \
            + ([f"app={app}"] if model is not None and app is not None else [])
        own, own_n = dev[stream]
        effect = own / own_n if own_n and not math.isnan(own) else math.nan
        for parent in parents if stream != GLOBAL else []:
            rest = [p for p in pairs if overlaps(p, parent) and not overlaps(p, stream)]
            n = sum(dev[p][1] for p in rest)
            if not n:
                continue
            z = sum(dev[p][0] for p in rest) / math.sqrt(n)
            if z >= REST_Z:
                return True
            if effect > 0 and (z + BOUND_Z) / math.sqrt(n) >= effect / 2:
                undecided = True
        return False

    candidates = [s for s in changed
                  if not any(not overlaps(s, other) for other in changed) and not rest_changed(s)]
    narrow = [s for s in candidates if s != GLOBAL]
    if undecided and not final and narrow:
        return None
    if not candidates:
        return GLOBAL
    return min(candidates, key=lambda s: (width(s), -(scores[s] if not math.isnan(scores[s]) else 0.0), s))


class DriftFold:
    """The fold job's state and its ``run(engine, slot)`` (a `monitor.jobs.scheduler.Job` callable).

    ``group_id`` is the consumer group whose progress (`consumer_progress`) holds the watermark back;
    ``clock`` gives the current epoch seconds. State is cached between runs and re-read when another
    instance wrote it since.
    """

    def __init__(self, config: DriftConfig, group_id: str, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.group_id = group_id
        self.clock = clock
        self.width = max(round(config.bucket_s * 1000), 1)
        self.signals: dict[str, Signal] = {s.name: s for s in SCALAR_SIGNALS}
        if config.topic_sample_rate > 0:
            self.signals[TOPIC_SIGNAL.name] = TOPIC_SIGNAL
        self.subjects = tuple(SUBJECTS)
        self.subject_index = {f"{TOPIC_PREFIX}{name}": i for i, name in enumerate(self.subjects)}
        self._version: datetime | None = None
        # (topic, partition) -> (newest event time seen, ``clock`` seconds when it last changed): whether a
        # caught-up partition is still receiving records (see `watermark`). Memory only: a new fold instance
        # starts by treating every partition as active, which delays folding by idle_s at most.
        self._activity: dict[tuple[str, int], tuple[datetime | None, float]] = {}
        self._reset_state()

    def _reset_state(self) -> None:
        self.cursor: int | None = None  # start of the last folded bucket
        self.charts: dict[str, dict[str, Chart]] = {}
        self.last_seen: dict[str, int] = {}
        self.pending: list[Alarm] = []
        self.late = 0.0  # records folded after their bucket (see `run`)
        self.rearmed: dict[str, int] = {}  # "signal|stream" -> bucket its detector last re-armed at

    # -- detectors -----------------------------------------------------------------------------------------

    def make_chart(self, signal: Signal) -> Chart:
        """A fresh detector for ``signal``: river's if ``[drift.river]`` names one, else the calibrated chart
        with this signal's share (1 / signals) of the stream's false-alarm budget."""
        cfg = self.config
        share = cfg.arl0 * len(self.signals)
        choice = cfg.river.get(signal.name)
        if signal.kind == "topic":
            if choice is not None:
                return RiverMix(share, cfg.topic_warmup, names=self.subjects, detector=choice.detector,
                                options=dict(choice.options))
            return BucketMix(max(share * cfg.topic_sample_rate, 10.0), cfg.topic_warmup, names=self.subjects)
        warmup = cfg.rate_warmup if signal.kind == "rate" else cfg.warmup
        if choice is not None:
            return RiverBuckets(share, warmup, cfg.margin, detector=choice.detector, options=dict(choice.options),
                                transform=signal.transform if signal.kind == "continuous" else "identity")
        if signal.kind == "rate":
            return BucketRate(share, warmup)
        return BucketCUSUM(share, warmup, cfg.margin, k=cfg.k, transform=signal.transform, clip=cfg.clip)

    def chart(self, signal: str, stream: str) -> Chart:
        by_stream = self.charts.setdefault(signal, {})
        chart = by_stream.get(stream)
        if chart is None:
            chart = by_stream[stream] = self.make_chart(self.signals[signal])
        return chart

    # -- the job ------------------------------------------------------------------------------------------

    def run(self, engine: Engine, slot: datetime | None = None) -> int:
        """Fold late additions and every closed bucket not folded yet; return how many events were written."""
        now_ms = int(self.clock() * 1000)
        with engine.begin() as conn:
            version = self._load(conn)
            watermark = self.watermark(conn, now_ms)
            t = drift_buckets.c
            columns = (t.bucket_ms, t.stream, t.signal, t.n, t.total, t.total_sq, t.folded_n, t.folded_total,
                       t.folded_sq)
            late: list[Any] = []
            if self.cursor is not None:
                late = conn.execute(select(*columns).where(
                    t.bucket_ms <= self.cursor, t.bucket_ms > self.cursor - round(self.config.late_s * 1000),
                    t.n > t.folded_n)).all()
            query = select(*columns).where(t.bucket_ms <= watermark - self.width).order_by(t.bucket_ms).limit(MAX_ROWS)
            if self.cursor is not None:
                query = query.where(t.bucket_ms > self.cursor)
            rows = conn.execute(query).all()
            if len(rows) == MAX_ROWS:  # only whole buckets: the last one may be cut
                last = rows[-1][0]
                rows = [r for r in rows if r[0] != last] or rows
            events: list[dict[str, Any]] = []
            if late:
                # Added to buckets already folded (a partition that was behind, a record long in transit):
                # fed now, at the current position, so that no record goes unwatched.
                # A detector re-armed after the late record's bucket learns the new level: the late record
                # belongs to the old one and is left out of it.
                mixes: dict[str, np.ndarray] = {}
                for r in late:
                    signal = TOPIC_SIGNAL.name if r.signal in self.subject_index else r.signal
                    if self.rearmed.get(f"{signal}|{r.stream}", -1) >= r.bucket_ms:
                        continue
                    self.late += r.n - r.folded_n
                    self._feed(r.signal, r.stream, r.n - r.folded_n, r.total - r.folded_total,
                               r.total_sq - r.folded_sq, self.cursor, mixes)  # type: ignore[arg-type]
                self._feed_mixes(mixes, self.cursor)  # type: ignore[arg-type]
            i = 0
            while i < len(rows):
                bucket = rows[i][0]
                mixes = {}
                while i < len(rows) and rows[i][0] == bucket:
                    r = rows[i]
                    i += 1
                    self._feed(r.signal, r.stream, r.n - r.folded_n, r.total - r.folded_total,
                               r.total_sq - r.folded_sq, bucket, mixes)
                self._feed_mixes(mixes, bucket)
                self.cursor = bucket
                events.extend(self._decide(conn, bucket))
            if self.cursor is None:
                return 0
            events.extend(self._decide(conn, max(self.cursor, watermark - self.width)))
            if not rows and not late and not events:
                return 0
            self._evict()
            if events:
                conn.execute(insert(drift_events), events)
            folded = [{"b_bucket": r.bucket_ms, "b_stream": r.stream, "b_signal": r.signal, "b_n": r.n,
                       "b_total": r.total, "b_sq": r.total_sq} for r in [*late, *rows]]
            if folded:
                conn.execute(update(drift_buckets).where(
                    t.bucket_ms == bindparam("b_bucket"), t.stream == bindparam("b_stream"),
                    t.signal == bindparam("b_signal")).values(
                    folded_n=bindparam("b_n"), folded_total=bindparam("b_total"), folded_sq=bindparam("b_sq")),
                    folded)
            self._save(conn, version)
            keep_from = self.cursor - round(self.config.keep_buckets_s * 1000)
            conn.execute(delete(drift_buckets).where(t.bucket_ms < keep_from))
        for event in events:
            log.info("drift on %s: %s %s (%s)", event["stream"], event["signal"],
                     event["details"].get("direction"), ", ".join(event["details"].get("explains", [])) or "alone")
        return len(events)

    def watermark(self, conn: Connection, now_ms: int) -> int:
        """Event time (epoch ms) up to which every record is taken to be stored: ``grace_s`` before now, held
        back by any partition of this consumer group that is behind or still receiving records (its newest
        stored event time, less ``grace_s``); a partition behind that has stored nothing yet holds every
        bucket back (`UNKNOWN_MARK`), since its first records may belong to any of them.

        A partition that has caught up holds nothing once it has been *idle* — its newest event time unchanged
        — for ``idle_s`` (Flink's idleness rule): caught up is a moment, not a state, while a producer writes a
        burst or a replay, and its next records would otherwise land in buckets already folded (fed late, at
        the current position: a delay of a bucket or more). A partition whose progress was not refreshed for
        `STALE_S` (no consumer) holds nothing."""
        grace = round(self.config.grace_s * 1000)
        mark = now_ms - grace
        t = consumer_progress.c
        stale = datetime.fromtimestamp(now_ms / 1000 - STALE_S, UTC)
        now = now_ms / 1000
        active: dict[tuple[str, int], tuple[datetime | None, float]] = {}
        unknown = False
        for topic, partition, committed, highwater, last_ts, updated_at in conn.execute(
                select(t.topic, t.partition, t.committed, t.highwater, t.last_record_ts, t.updated_at)
                .where(t.group_id == self.group_id)):
            if as_utc(updated_at) < stale:
                continue  # no consumer
            seen = self._activity.get((topic, partition))
            changed = now if seen is None or seen[0] != last_ts else seen[1]
            active[(topic, partition)] = (last_ts, changed)
            if highwater is not None and highwater <= committed and now - changed >= self.config.idle_s:
                continue  # caught up and idle
            if last_ts is None:  # assigned, not known to be caught up, nothing read yet: times unknown
                unknown = True
                continue
            mark = min(mark, int(as_utc(last_ts).timestamp() * 1000) - grace)
        self._activity = active
        return UNKNOWN_MARK if unknown else mark

    def _feed(self, signal: str, stream: str, n: float, total: float, total_sq: float, bucket: int,
              mixes: dict[str, np.ndarray]) -> None:
        """One bucket row into its detector; a ``topic:<subject>`` count into ``mixes`` (stream -> counts),
        fed whole by `_feed_mixes` once the bucket's rows are read."""
        if n <= 0:
            return
        subject = self.subject_index.get(signal)
        if subject is not None:
            if TOPIC_SIGNAL.name in self.signals:
                counts = mixes.get(stream)
                if counts is None:
                    counts = mixes[stream] = np.zeros(len(self.subjects))
                counts[subject] += n
            return
        if signal not in self.signals:
            return
        self.last_seen[stream] = bucket
        change = self.chart(signal, stream).update_bucket(n, total, total_sq, at=bucket)  # type: ignore[union-attr]
        if change is not None:
            self._fired(signal, stream, change, bucket)

    def _feed_mixes(self, mixes: Mapping[str, np.ndarray], bucket: int) -> None:
        """Each stream's subject counts of one bucket into its topic chart."""
        for stream, counts in mixes.items():
            self.last_seen[stream] = bucket
            chart = self.chart(TOPIC_SIGNAL.name, stream)
            change = chart.update_counts(counts, at=bucket)  # type: ignore[union-attr]
            if change is not None:
                self._fired(TOPIC_SIGNAL.name, stream, change, bucket)

    def _fired(self, signal: str, stream: str, change: BucketChange, bucket: int) -> None:
        self.rearmed[f"{signal}|{stream}"] = bucket
        self.pending.append(self._alarm(signal, stream, change, bucket))

    def _alarm(self, signal: str, stream: str, change: BucketChange, bucket: int) -> Alarm:
        return Alarm(signal, stream, change.direction, int(change.start if change.start is not None else bucket),
                     bucket, change.before, change.after, change.details)

    def _decide(self, conn: Connection, bucket: int) -> list[dict[str, Any]]:
        """Attribute the alarms that have settled by the end of ``bucket``; return their events."""
        settle = round(self.config.settle_s * 1000)
        max_settle = max(settle, round(self.config.max_settle_s * 1000))
        events = []
        waiting: set[str] = set()
        while True:
            due = [a for a in self.pending if a.fired + settle <= bucket and a.signal not in waiting]
            if not due:
                return events
            first = min(due, key=lambda a: (a.fired, a.start))
            same = [a for a in self.pending if a.signal == first.signal and a.direction == first.direction]
            # Where the change began: the latest excursion start among the alarms (an earlier one is a
            # detector whose excursion had begun on noise, and would dilute the evidence).
            start = max(min(a.start, a.fired) for a in same)
            charts = self.charts.get(first.signal, {})
            counts: dict[str, np.ndarray] = {}
            if first.signal == TOPIC_SIGNAL.name:
                counts = self._topic_counts(conn, start, bucket)
                sums = {s: (float(c.sum()), 0.0) for s, c in counts.items()}
                judged: Mapping[str, Any] = mix_judges(charts, counts)  # type: ignore[arg-type]
            else:
                sums = self._sums(conn, first.signal, start, bucket)
                judged = charts
            fired = {a.stream for a in same}
            target = attribute(first.direction, fired, sums, judged,
                               final=first.fired + max_settle <= bucket)
            if target is None:  # too few records yet to tell which stream changed: decide at a later bucket
                waiting.add(first.signal)
                continue
            explained = [a for a in same if overlaps(a.stream, target)]
            if not explained:  # cannot happen (the global stream contains all), kept for safety
                explained = [first]
                target = first.stream
            events.append(self._event(first.signal, target, first.direction, explained, sums, bucket,
                                      counts.get(target)))
            for a in explained:
                self.pending.remove(a)
            moved = None
            if target == GLOBAL:
                # The whole traffic moves whenever the share of its models or apps does (a model added or
                # retired, an app's traffic doubling), though none of them changed: a stream with no sign of
                # the change keeps its reference, so that a global event does not blind, for a new warm-up,
                # a model's chart that is about to see a change of its own.
                topic = first.signal == TOPIC_SIGNAL.name  # a mix's deviation is unsigned and needs no total
                sign = -1.0 if first.direction == "down" and not topic else 1.0
                moved = {a.stream for a in explained} | {target} | {
                    s for s, (n, total) in sums.items()
                    if s in judged and n
                    and sign * judged[s].deviation(n, 0.0 if topic else total) / math.sqrt(n) >= SHIFTED_Z}
            for stream, chart in charts.items():
                # Charts still warming up restart too: their warm-up so far describes the old level, and a
                # reference half before and half after the change fired a second event for the same change
                # once it armed (bench.drift refusal: a (model, app) stream 800 records old at the change).
                if overlaps(stream, target) and (moved is None or stream in moved):
                    chart.rearm()
                    self.rearmed[f"{first.signal}|{stream}"] = bucket

    def _sums(self, conn: Connection, signal: str, start: int, end: int) -> dict[str, tuple[float, float]]:
        t = drift_buckets.c
        rows = conn.execute(select(t.stream, func.sum(t.n), func.sum(t.total))
                            .where(t.signal == signal, t.bucket_ms >= start, t.bucket_ms <= end)
                            .group_by(t.stream))
        return {stream: (float(n), float(total)) for stream, n, total in rows}

    def _topic_counts(self, conn: Connection, start: int, end: int) -> dict[str, np.ndarray]:
        """Per stream, the subject counts of buckets ``start`` to ``end``."""
        t = drift_buckets.c
        rows = conn.execute(select(t.stream, t.signal, func.sum(t.n))
                            .where(t.signal.like(f"{TOPIC_PREFIX}%"), t.bucket_ms >= start, t.bucket_ms <= end)
                            .group_by(t.stream, t.signal))
        out: dict[str, np.ndarray] = {}
        for stream, signal, n in rows:
            subject = self.subject_index.get(signal)
            if subject is not None:
                out.setdefault(stream, np.zeros(len(self.subjects)))[subject] += float(n)
        return out

    def _event(self, signal: str, target: str, direction: str, explained: list[Alarm],
               sums: Mapping[str, tuple[float, float]], bucket: int,
               counts: np.ndarray | None = None) -> dict[str, Any]:
        own = next((a for a in explained if a.stream == target), None)
        chart = self.charts[signal].get(target) or self.chart(signal, target)
        n, total = sums.get(target, (0.0, 0.0))
        before = own.before if own is not None else chart.reference()
        moved: dict[str, Any] = {}
        if isinstance(chart, BucketMix):
            after = chart.describe_counts(counts) if counts is not None and n else (own.after if own else {})
            if before.get("shares") and after.get("shares"):
                moved = {"moved": moved_shares(before["shares"], after["shares"]), "prompts_since": n}
            n = round(n / self.config.topic_sample_rate)  # records: the chart sees the sampled prompts only
        else:
            after = chart.describe(n, total) if n else (own.after if own else {})
        start = max(min(a.start, a.fired) for a in explained)
        # detected_at is event time: the end of the bucket where the first of these detectors fired (the
        # evidence was complete then); the report waited settle_s more for attribution (see created_at).
        fired = min(a.fired for a in explained)
        details = {"direction": direction, "records_since": n, "explains": sorted({a.stream for a in explained}),
                   "fired_on": explained[0].stream, "start_bucket_ms": start, "fired_bucket_ms": fired,
                   "bucket_ms": bucket, **moved,
                   **({"river": own.details["river"]} if own and "river" in own.details else {})}
        river = isinstance(chart, RiverBuckets | RiverMix)
        detector = f"river:{chart.detector}" if river else chart.kind  # type: ignore[union-attr]
        now = datetime.now(UTC)
        return {"stream": target, "signal": signal, "detector": detector,
                "detected_at": datetime.fromtimestamp((fired + self.width) / 1000, UTC), "created_at": now,
                "record_id": None, "before": _clean(before), "after": _clean(after), "details": _clean(details)}

    def _evict(self) -> None:
        if len(self.last_seen) <= self.config.max_streams:
            return
        keep = {s for s, _ in sorted(self.last_seen.items(), key=lambda kv: kv[1])[-self.config.max_streams:]}
        keep.add(GLOBAL)
        for stream in [s for s in self.last_seen if s not in keep]:
            del self.last_seen[stream]
            for by_stream in self.charts.values():
                by_stream.pop(stream, None)

    # -- state --------------------------------------------------------------------------------------------

    def _load(self, conn: Connection) -> datetime | None:
        """Bring the in-memory state up to the stored one; return the stored row's version (updated_at)."""
        row = conn.execute(select(detector_state.c.state, detector_state.c.updated_at)
                           .where(detector_state.c.key == STATE_KEY)).first()
        if row is None:
            if self._version is not None:
                self._reset_state()
            self._version = None
            return None
        state, version = row[0], as_utc(row[1])
        if version == self._version:
            return version
        data = orjson.loads(zlib.decompress(bytes(state)))
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"drift fold state in unknown format {data.get('format')!r}")
        self.cursor = data["cursor"]
        self.charts = {signal: {stream: _chart_from_state(s) for stream, s in by_stream.items()}
                       for signal, by_stream in data["charts"].items()}
        self.last_seen = dict(data["last_seen"])
        self.late = data.get("late", 0.0)
        self.rearmed = dict(data.get("rearmed", {}))
        self.pending = [Alarm(**a) for a in data["pending"]]
        self._version = version
        return version

    def _save(self, conn: Connection, version: datetime | None) -> None:
        data = {"format": STATE_FORMAT, "cursor": self.cursor, "last_seen": self.last_seen, "late": self.late,
                "rearmed": self.rearmed,
                "pending": [asdict(a) for a in self.pending],
                "charts": {signal: {stream: c.state() for stream, c in by_stream.items()}
                           for signal, by_stream in self.charts.items()}}
        blob = zlib.compress(orjson.dumps(_clean(data)), 6)
        now = datetime.now(UTC)
        if version is not None and now <= version:
            now = version + timedelta(microseconds=1)
        if version is None:
            conn.execute(insert(detector_state).values(key=STATE_KEY, state=blob, updated_at=now))
        else:
            done = conn.execute(update(detector_state).where(detector_state.c.key == STATE_KEY,
                                                             detector_state.c.updated_at == version)
                                .values(state=blob, updated_at=now)).rowcount
            if done != 1:
                self._version = None  # re-read next time
                raise Superseded("drift fold state was written by another instance meanwhile; rolled back")
        self._version = now


Chart = BucketChart | BucketMix
"""A fold detector: a scalar bucket chart, or the topic mix chart."""


def _chart_from_state(state: dict[str, Any]) -> Chart:
    mixes = {BucketMix.kind: BucketMix, RiverMix.kind: RiverMix}
    mix = mixes.get(state["kind"])
    return mix.from_state(state) if mix is not None else BucketChart.from_state(state)


@dataclass
class _Judged:
    """A stream's topic counts since a change as `attribute` sees a scalar chart's: a fixed deviation."""

    value: float

    def deviation(self, n: float, total: float) -> float:
        return self.value


def mix_judges(charts: Mapping[str, BucketMix], counts: Mapping[str, np.ndarray]) -> dict[str, _Judged]:
    """Per stream, how far its subject counts since a change lie from what was expected, for `attribute`.

    Each (model, app) pair is judged against its own reference mix (`BucketMix.deviation`: a G-test as a
    z-score, times sqrt(n)): the mix of each pair moves its own way (a support app loses support questions, a
    coding app coding ones), so no single direction fits all. A wider stream is the sum of its pairs'
    deviations (Stouffer's pooling, as `attribute` pools the rest of a stream): judged against its own
    reference, a model's mix would look changed whenever its apps' shares of traffic moved.
    """
    pairs = {s: charts[s].deviation(c)[0] for s, c in counts.items()
             if s in charts and None not in parse_stream(s)}
    pairs = {s: d for s, d in pairs.items() if not math.isnan(d)}
    out = {s: _Judged(d) for s, d in pairs.items()}
    for stream in counts:
        if stream not in pairs and stream in charts:
            inside = [d for p, d in pairs.items() if overlaps(p, stream)]
            out[stream] = _Judged(sum(inside) if inside else math.nan)
    return out


def moved_shares(before: Mapping[str, float], after: Mapping[str, float], top: int = 3) -> list[list[Any]]:
    """The ``top`` subjects whose share moved most: ``[subject, before, after]`` each, largest move first.

    >>> moved_shares({"a": 0.8, "b": 0.2, "c": 0.0}, {"a": 0.6, "b": 0.2, "c": 0.2}, top=2)
    [['a', 0.8, 0.6], ['c', 0.0, 0.2]]
    """
    names = sorted(set(before) | set(after), key=lambda s: -abs(after.get(s, 0.0) - before.get(s, 0.0)))
    return [[s, before.get(s, 0.0), after.get(s, 0.0)] for s in names[:top]]


def _clean(value: Any) -> Any:
    """JSON for the database: NaN and infinities become null (Postgres JSONB rejects them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def build_jobs(config: Config) -> list[Job]:
    """The fold job, when drift detection is on."""
    if not config.drift.enabled:
        return []
    fold = DriftFold(config.drift, config.kafka.group_id)
    # A short lease: after a daemon dies, another takes the fold over within it (a run takes well under it).
    lease = timedelta(seconds=max(15.0, 20 * config.drift.fold_every_s))
    return [Job("drift-fold", timedelta(seconds=config.drift.fold_every_s), fold.run, lease=lease)]
