"""Shadow replay: sampled prompts are re-asked of a reference model and the two answers compared.

Where it sits: beside the ingest chain, never in it. The daemon runs it as a scheduled job (one instance at a
time, `monitor.scheduler`) on its own thread and event loop; it reads candidates from the database
(``samples`` rows whose record has no ``shadow_comparisons`` row yet for that reference), so ingest neither
waits for it nor feeds it. A slow or dead reference therefore costs ingest nothing: the replayer backs off
(jittered, growing pauses), leaves unanswered prompts in the database, and takes at most ``queue_size`` of
them per run — that bounded slice is the queue. ``watchkeeper shadow replay`` runs the same replayer on demand
over any records (backfills, trying a new reference model).

What is replayed is what the database holds: ``records.prompt`` after redaction (``[EMAIL]`` and the like
where the detectors found something), and only the prompt text, because records do not keep chat turns. It is
sent as one user turn (``replay_as = "chat"``, the default) or as a raw completion prompt. Records stored
without text (``store_text = "none"``) cannot be replayed.

Each answered prompt becomes one ``shadow_comparisons`` row (reference answer, latency, tokens, metrics,
agreement); a disagreement also becomes a ``samples`` row with reason ``shadow_disagreement`` so a reviewer
sees it, with the reference answer beside the production one. A prompt the reference rejects outright (a 4xx)
is stored with its ``error`` so it is not retried forever.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from sqlalchemy import Engine, and_, case, exists, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from detectors.base import Detector
from detectors.chain import DetectorChain
from inference.backoff import Backoff
from inference.base import Backend, PermanentError, Prompt, TransientError
from inference.budget import DailyCapReached, ReplayBudget
from inference.client import EndpointSettings, OpenAIBackend
from inference.compare import Comparer, Comparison, Pair, Thresholds, comparison_metrics
from inference.inprocess import InProcessBackend, InProcessSettings
from monitor.config import Config, ReferenceConfig, ShadowConfig
from monitor.sampling import stratum_of, window_start
from monitor.shadow_drift import AgreementDrift
from monitor.storage.db import as_utc as _aware
from monitor.storage.schema import records, samples, shadow_comparisons

log = logging.getLogger(__name__)

BOOST_REASON = "shadow_disagreement"


@dataclass(slots=True, frozen=True)
class Candidate:
    """A stored record to replay: its (stored, redacted) prompt and production answer."""

    record_id: str
    prompt: str
    response: str
    model: str
    app: str | None
    ts: datetime


@dataclass(slots=True)
class ReplayStats:
    """What one replay run did, per reference."""

    compared: int = 0
    disagreed: int = 0
    rejected: int = 0
    """Prompts the reference refused outright (stored with their error)."""
    failed_attempts: int = 0
    """Attempts lost to an unreachable, overloaded or slow reference (retried later, nothing stored)."""
    left: int = 0
    """Candidates not answered in this run (outage, daily cap or deadline); they stay in the database."""
    stopped: str | None = None
    """Why the run ended early: ``outage``, ``daily cap`` or ``deadline``."""
    agreement_drops: int = 0
    """Drops in the agreement rate found by the drift charts (`monitor.shadow_drift`), stored as drift events."""
    latencies_ms: list[float] = field(default_factory=list)


def select_candidates(
    engine: Engine,
    reference_model: str,
    *,
    since: datetime,
    limit: int,
    sampled_only: bool = True,
    model: str | None = None,
) -> list[Candidate]:
    """Records from ``since`` on with text and an ok status, not yet compared against ``reference_model``.

    ``sampled_only`` keeps the records the sampler picked (the daemon's choice, newest first); otherwise every
    stored record is a candidate (backfills, oldest first, so a limit resumes where the last run stopped).
    """
    done = exists().where(and_(shadow_comparisons.c.record_id == records.c.id,
                               shadow_comparisons.c.reference_model == reference_model))
    query = (
        select(records.c.id, records.c.prompt, records.c.response, records.c.model, records.c.app,
               records.c.ts)
        .where(records.c.ts >= since, records.c.status == "ok", records.c.prompt.is_not(None),
               records.c.response.is_not(None), records.c.prompt != "", ~done)
        .limit(limit)
    )
    if model is not None:
        query = query.where(records.c.model == model)
    if sampled_only:
        sampled = select(samples.c.record_id).where(samples.c.reason != BOOST_REASON, samples.c.ts >= since)
        query = query.where(records.c.id.in_(sampled)).order_by(records.c.ts.desc())
    else:
        query = query.order_by(records.c.ts, records.c.id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [Candidate(r.id, r.prompt, r.response, r.model, r.app, _aware(r.ts)) for r in rows]


def used_today(engine: Engine, reference_model: str, now: datetime | None = None) -> int:
    """Comparisons stored today (UTC) for ``reference_model`` by every daemon: the daily cap's count."""
    now = now or datetime.now(UTC)
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(shadow_comparisons).where(
                shadow_comparisons.c.reference_model == reference_model,
                shadow_comparisons.c.created_at >= midnight,
            )
        ).scalar_one()


def agreement_rates(engine: Engine, since: datetime) -> dict[tuple[str, str], tuple[int, float]]:
    """(production model, reference model) -> (comparisons, share that agree) since ``since``.

    The signal for the drift detectors and the "agreement dropping" alert rule.
    """
    query = (
        select(records.c.model, shadow_comparisons.c.reference_model, func.count(),
               func.avg(case((shadow_comparisons.c.agree, 1.0), else_=0.0)))
        .join(records, records.c.id == shadow_comparisons.c.record_id)
        .where(shadow_comparisons.c.created_at >= since, shadow_comparisons.c.agree.is_not(None))
        .group_by(records.c.model, shadow_comparisons.c.reference_model)
    )
    with engine.connect() as conn:
        return {(m, ref): (n, float(rate)) for m, ref, n, rate in conn.execute(query)}


def _insert_ignore(engine: Engine, table: Any, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    dialect = engine.dialect.name
    stmt = (postgresql.insert(table) if dialect == "postgresql" else
            sqlite.insert(table) if dialect == "sqlite" else insert(table))
    if dialect in ("postgresql", "sqlite"):
        stmt = stmt.on_conflict_do_nothing()
    with engine.begin() as conn:
        conn.execute(stmt, rows)


def build_backend(reference: ReferenceConfig) -> Backend:
    """The backend a reference's config asks for."""
    if reference.backend == "inprocess":
        return InProcessBackend(
            InProcessSettings(model=reference.model, max_tokens=reference.max_tokens,
                              temperature=reference.temperature, seed=reference.seed or 0,
                              llm_kwargs=dict(reference.llm_kwargs)),
            name=reference.name or "in-process",
        )
    if not reference.url:
        raise ValueError(f"reference {reference.model!r}: url is required for the http backend")
    return OpenAIBackend(EndpointSettings(
        url=reference.url, model=reference.model, name=reference.name,
        api_key=reference.api_key.get_secret_value() if reference.api_key else None,
        max_tokens=reference.max_tokens, temperature=reference.temperature, seed=reference.seed,
        timeout_s=reference.timeout_s, max_retries=reference.max_retries,
    ))


def answer_detectors(config: Config) -> dict[str, Detector]:
    """The refusal, toxicity and PII detectors as ``[detectors]`` configures them for the pipeline, by name."""
    chain = DetectorChain.from_config(config.detectors, store_text="full")
    return {d.name: d for d in chain.detectors if d.name in ("refusal", "toxicity", "pii")}


def build_comparer(config: ShadowConfig, detectors: Mapping[str, Detector]) -> Comparer:
    """A comparer with the configured thresholds; ``detectors`` by name (``refusal``, ``toxicity``, ``pii``)
    are the pipeline's own per-record detectors (`answer_detectors`), reused on the answers."""
    return Comparer(
        Thresholds(min_similarity=config.min_similarity, min_rouge_l=config.min_rouge_l,
                   min_length_ratio=config.min_length_ratio, max_length_ratio=config.max_length_ratio,
                   refusal_mismatch_disagrees=config.refusal_mismatch_disagrees),
        refusal=detectors.get("refusal"), toxicity=detectors.get("toxicity"), pii=detectors.get("pii"),
    )


class ShadowReplayer:
    """Replays candidates against one reference within its budget and stores the comparisons.

    Contract: `replay` returns when every candidate is answered or rejected, or when it stops early
    (outage: ``max_consecutive_failures`` attempts in a row failed; the daily cap; the deadline). Candidates it
    did not answer are not stored, so a later run picks them up again. It must run on one event loop only.
    """

    def __init__(
        self,
        engine: Engine,
        backend: Backend,
        comparer: Comparer,
        budget: ReplayBudget,
        *,
        replay_as: str = "chat",
        boost_disagreements: bool = True,
        sampling_window_s: int = 86_400,
        backoff: Backoff | None = None,
        max_consecutive_failures: int = 5,
    ) -> None:
        self.engine = engine
        self.backend = backend
        self.comparer = comparer
        self.budget = budget
        self.replay_as = replay_as
        self.boost_disagreements = boost_disagreements
        self.sampling_window_s = sampling_window_s
        self.backoff = backoff or Backoff(2.0, 120.0)
        self.max_consecutive_failures = max_consecutive_failures

    def prompt_for(self, candidate: Candidate) -> Prompt:
        return Prompt.chat(candidate.prompt) if self.replay_as == "chat" else Prompt(candidate.prompt)

    async def replay(
        self,
        candidates: Sequence[Candidate],
        *,
        deadline: float | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> ReplayStats:
        """Replay ``candidates``; ``deadline`` is a `time.monotonic` value; ``on_progress(n)`` after each one
        is settled (stored or rejected)."""
        stats = ReplayStats()
        queue = deque(candidates)
        resume_at = 0.0
        consecutive = 0
        stop: list[str] = []

        async def worker() -> None:
            nonlocal resume_at, consecutive
            while queue and not stop:
                if deadline is not None and time.monotonic() >= deadline:
                    stop.append("deadline")
                    return
                if (pause := resume_at - time.monotonic()) > 0:
                    await asyncio.sleep(pause if deadline is None else min(pause, deadline - time.monotonic()))
                    continue
                candidate = queue.popleft()
                try:
                    async with self.budget.slot():
                        answer = await self.backend.answer(self.prompt_for(candidate))
                except DailyCapReached:
                    queue.appendleft(candidate)
                    stop.append("daily cap")
                    return
                except TransientError as exc:
                    self.budget.refund()
                    queue.append(candidate)
                    stats.failed_attempts += 1
                    consecutive += 1
                    delay = self.backoff.next_delay()
                    resume_at = max(resume_at, time.monotonic() + delay)
                    log.warning("reference %s: %s; pausing replays %.1f s", self.backend.name, exc, delay)
                    if consecutive >= self.max_consecutive_failures:
                        stop.append("outage")
                    continue
                except PermanentError as exc:
                    self._store_rejection(candidate, str(exc))
                    stats.rejected += 1
                else:
                    consecutive = 0
                    self.backoff.reset()
                    [comparison] = self.comparer.compare([Pair(candidate.prompt, candidate.response, answer.text)])
                    self._store(candidate, answer, comparison)
                    stats.compared += 1
                    stats.disagreed += not comparison.agree
                    stats.latencies_ms.append(answer.latency_ms)
                if on_progress is not None:
                    on_progress(1)

        await asyncio.gather(*(worker() for _ in range(self.budget.max_concurrent)))
        stats.left = len(queue)
        stats.stopped = stop[0] if stop and queue else None
        return stats

    def _row(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "record_id": candidate.record_id,
            "reference_model": self.backend.model,
            "reference_endpoint": self.backend.name,
            "created_at": datetime.now(UTC),
        }

    def _store_rejection(self, candidate: Candidate, error: str) -> None:
        _insert_ignore(self.engine, shadow_comparisons, [self._row(candidate) | {"error": error[:2000]}])

    def _store(self, candidate: Candidate, answer: Any, c: Comparison) -> None:
        row = self._row(candidate) | {
            "reference_answer": answer.text,
            "latency_ms": answer.latency_ms,
            "tokens_in": answer.tokens_in,
            "tokens_out": answer.tokens_out,
            "similarity": c.similarity,
            "rouge_l": c.rouge_l,
            "length_ratio": c.length_ratio,
            "refusal_mismatch": c.refusal_mismatch,
            "reference_toxicity": c.reference_toxicity,
            "reference_pii": c.reference_pii,
            "agree": c.agree,
            "metrics": comparison_metrics(c) | {"finish_reason": answer.finish_reason},
        }
        _insert_ignore(self.engine, shadow_comparisons, [row])
        if not c.agree and self.boost_disagreements:
            _insert_ignore(self.engine, samples, [{
                "record_id": candidate.record_id,
                "reason": BOOST_REASON,
                "stratum": stratum_of(candidate.model, candidate.app),
                "model": candidate.model,
                "app": candidate.app,
                "ts": candidate.ts,
                "window_start": window_start(candidate.ts, 0, self.sampling_window_s),
                "inclusion_probability": 1.0,
                "reviews_wanted": 1,
                "sampled_at": row["created_at"],
            }])


class ShadowWorker:
    """The daemon's side of shadow replay: one replayer per configured reference, on a private event loop in
    its own thread. `run` is the scheduler job (``Job("shadow", config.shadow.interval, worker.run)``): one
    bounded run that ends before the next is due. `close` at shutdown.

    The worker never touches the ingest path; it only reads ``samples``/``records`` and writes its own rows.
    After each run it feeds the new comparisons to the agreement drift charts (`monitor.shadow_drift`) unless
    ``[drift] enabled = false``.
    """

    def __init__(self, config: Config, engine: Engine, detectors: Mapping[str, Detector] | None = None) -> None:
        """``detectors``: refusal/toxicity/pii by name; default `answer_detectors` (as ``[detectors]`` says)."""
        self.config = config
        self.engine = engine
        self._detectors = detectors
        self._replayers: list[ShadowReplayer] = []
        self._agreement: dict[str, AgreementDrift] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="shadow-replay", daemon=True)
        self._thread.start()

    @property
    def enabled(self) -> bool:
        return bool(self.config.shadow.references)

    def _submit(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _build(self) -> None:
        shadow = self.config.shadow
        detectors = self._detectors if self._detectors is not None else answer_detectors(self.config)
        comparer = build_comparer(shadow, detectors)
        comparer.embedder.load()
        for reference in shadow.references:
            self._replayers.append(ShadowReplayer(
                self.engine, build_backend(reference), comparer,
                ReplayBudget(shadow.prompts_per_minute, shadow.max_concurrent, shadow.daily_cap),
                replay_as=shadow.replay_as, boost_disagreements=shadow.boost_disagreements,
                sampling_window_s=self.config.sampling.window_s,
                backoff=Backoff(shadow.outage_backoff_initial_s, shadow.outage_backoff_max_s),
            ))
            if self.config.drift.enabled:
                self._agreement[reference.model] = AgreementDrift.from_config(
                    self.config.drift, self.engine, reference.model)

    def run(self, engine: Engine | None = None, slot: datetime | None = None) -> dict[str, ReplayStats]:
        """One replay run for every reference, ending before ``shadow.interval`` has passed."""
        del engine, slot  # the scheduler's arguments; the worker keeps its own engine
        if not self.enabled:
            return {}
        deadline = time.monotonic() + 0.9 * self.config.shadow.interval.total_seconds()
        return self._submit(self._run(deadline))

    async def _run(self, deadline: float) -> dict[str, ReplayStats]:
        if not self._replayers:
            await self._build()
        results = await asyncio.gather(*(self._run_one(r, deadline) for r in self._replayers))
        return {r.backend.name: s for r, s in zip(self._replayers, results, strict=True) if s is not None}

    async def _run_one(self, replayer: ShadowReplayer, deadline: float) -> ReplayStats | None:
        shadow = self.config.shadow
        try:
            await replayer.backend.check()
        except (TransientError, PermanentError) as exc:
            log.warning("shadow replay skipped for %s: %s", replayer.backend.name, exc)
            return None
        model = replayer.backend.model
        replayer.budget.sync_used_today(used_today(self.engine, model))
        limit = min(shadow.queue_size, replayer.budget.remaining_today)
        if limit <= 0:
            return ReplayStats(stopped="daily cap")
        since = datetime.now(UTC) - shadow.lookback
        candidates = select_candidates(self.engine, model, since=since, limit=limit)
        stats = await replayer.replay(candidates, deadline=deadline)
        if (agreement := self._agreement.get(model)) is not None:
            stats.agreement_drops = len(agreement.update())
        log.info("shadow replay %s: %d compared, %d disagree, %d rejected, %d left%s", replayer.backend.name,
                 stats.compared, stats.disagreed, stats.rejected, stats.left,
                 f" ({stats.stopped})" if stats.stopped else "")
        return stats

    def close(self) -> None:
        async def _close() -> None:
            for replayer in self._replayers:
                await replayer.backend.aclose()

        if self._thread.is_alive():
            self._submit(_close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._loop.close()


# -- command line --------------------------------------------------------------------------------------------


def _parse_since(value: str) -> datetime:
    """``7d``, ``12h``, ``30m`` ago, or an ISO 8601 date/time (UTC when no offset)."""
    units = {"m": 60, "h": 3600, "d": 86_400, "w": 604_800}
    text = value.strip()
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(UTC) - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: use 7d, 12h, 30m or an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


_config_option = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                              help="Path to monitor.toml (default: ./monitor.toml if present).")


def _references(config: Config, name: str | None) -> list[ReferenceConfig]:
    refs = [r for r in config.shadow.references if name in (None, r.model, r.name)]
    if not refs:
        raise click.ClickException(
            "no reference model configured" + (f" named {name!r}" if name else "")
            + ": add [[shadow.references]] to monitor.toml or set WATCHKEEPER_REFERENCE_URL and "
            "WATCHKEEPER_REFERENCE_MODEL"
        )
    return refs


@click.group()
def shadow() -> None:
    """Shadow replay against reference models."""


@shadow.command()
@_config_option
@click.option("--since", "since_text", default="1d", show_default=True,
              help="Replay records from this time on: 7d, 12h, 30m ago or an ISO 8601 time.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(min=1),
              help="Most records to replay per reference.")
@click.option("--reference", default=None, help="Only this reference (model or name); default all.")
@click.option("--model", default=None, help="Only records of this production model.")
@click.option("--sampled-only", is_flag=True, help="Only records the sampler picked (as the daemon does).")
@click.option("--ignore-daily-cap", is_flag=True, help="Backfill beyond the daily cap (rate limits still hold).")
def replay(config_path: str | None, since_text: str, limit: int, reference: str | None, model: str | None,
           sampled_only: bool, ignore_daily_cap: bool) -> None:
    """Replay past records against the reference model(s) and store the comparisons."""
    from monitor.cli import load
    from monitor.storage.db import make_engine

    config = load(config_path)
    since = _parse_since(since_text)
    engine = make_engine(config.database.url)
    failed = False
    try:
        for ref in _references(config, reference):
            stats = asyncio.run(_replay_cli(engine, config, ref, since, limit, model, sampled_only,
                                            ignore_daily_cap))
            failed |= stats is None or stats.stopped == "outage"
    finally:
        engine.dispose()
    if failed:
        raise SystemExit(1)


async def _replay_cli(engine: Engine, config: Config, ref: ReferenceConfig, since: datetime, limit: int,
                      model: str | None, sampled_only: bool, ignore_daily_cap: bool) -> ReplayStats | None:
    shadow_cfg = config.shadow
    backend = build_backend(ref)
    try:
        try:
            await backend.check()
        except (TransientError, PermanentError) as exc:
            click.echo(f"reference {backend.name} ({ref.model}) is not usable: {exc}", err=True)
            return None
        budget = ReplayBudget(shadow_cfg.prompts_per_minute, shadow_cfg.max_concurrent,
                              limit if ignore_daily_cap else shadow_cfg.daily_cap)
        if not ignore_daily_cap:
            budget.sync_used_today(used_today(engine, ref.model))
            limit = min(limit, budget.remaining_today)
        candidates = select_candidates(engine, ref.model, since=since, limit=limit,
                                       sampled_only=sampled_only, model=model)
        replayer = ShadowReplayer(
            engine, backend, build_comparer(shadow_cfg, answer_detectors(config)), budget,
            replay_as=shadow_cfg.replay_as,
            boost_disagreements=shadow_cfg.boost_disagreements, sampling_window_s=config.sampling.window_s,
            backoff=Backoff(shadow_cfg.outage_backoff_initial_s, shadow_cfg.outage_backoff_max_s),
        )
        with click.progressbar(length=len(candidates), label=f"{ref.model} @ {backend.name}",
                               file=sys.stderr) as bar:
            stats = await replayer.replay(candidates, on_progress=bar.update)
        click.echo(f"{ref.model}: {stats.compared} compared, {stats.disagreed} disagree, "
                   f"{stats.rejected} rejected, {stats.left} left"
                   + (f" (stopped: {stats.stopped})" if stats.stopped else ""))
        return stats
    finally:
        await backend.aclose()


@shadow.command()
@_config_option
@click.option("--since", "since_text", default="1d", show_default=True, help="Window: 7d, 12h or ISO time.")
def status(config_path: str | None, since_text: str) -> None:
    """Agreement rate per production model and reference model."""
    from monitor.cli import load
    from monitor.storage.db import make_engine

    config = load(config_path)
    engine = make_engine(config.database.url)
    try:
        rates = agreement_rates(engine, _parse_since(since_text))
    finally:
        engine.dispose()
    if not rates:
        click.echo("no comparisons in this window")
    for (model, ref), (n, rate) in sorted(rates.items()):
        click.echo(f"{model} vs {ref}: {rate:.1%} agree over {n} comparisons")
