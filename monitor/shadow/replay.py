"""Shadow replay: sampled prompts are re-asked of a reference model and the two answers compared.

Where it sits: beside the ingest chain, never in it. The daemon runs it as a scheduled job (one instance at a
time, `monitor.jobs.scheduler`) on its own thread and event loop; it reads candidates from the database
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
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, Table

from detectors.base import Detector
from detectors.chain import DetectorChain
from inference.backoff import Backoff
from inference.base import Backend, PermanentError, Prompt, TransientError
from inference.budget import DailyCapReached, ReplayBudget
from inference.client import EndpointSettings, OpenAIBackend
from inference.compare import Comparer, Comparison, Pair, Thresholds, comparison_metrics
from inference.guest import GuestLimit
from inference.inprocess import InProcessBackend, InProcessSettings
from monitor.config import Config, ReferenceConfig, ShadowConfig
from monitor.ingest.steps.sampling import stratum_of, window_start
from monitor.shadow.candidates import BOOST_REASON, Candidate
from monitor.storage.db import insert_ignore
from monitor.storage.schema import samples, shadow_comparisons

log = logging.getLogger(__name__)

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
    """Drops in the agreement rate found by the drift charts (`monitor.shadow.agreement`), stored as drift events."""
    latencies_ms: list[float] = field(default_factory=list)
    guest_backoffs: int = 0
    """Times the replay concurrency was cut because the reference queued requests or slowed down."""
    guest_lowest: int | None = None
    """The lowest replay concurrency the guest limit allowed in this run (None: no guest limit)."""


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
        timeout_s=reference.timeout_s, max_retries=reference.max_retries, ca_file=reference.ca_file,
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
        guest: GuestLimit | None = None,
    ) -> None:
        """``guest``: how many requests may be in flight given the reference's load (`GuestLimit`); None
        leaves only the budget's ``max_concurrent``."""
        self.engine = engine
        self.backend = backend
        self.comparer = comparer
        self.budget = budget
        self.replay_as = replay_as
        self.boost_disagreements = boost_disagreements
        self.sampling_window_s = sampling_window_s
        self.backoff = backoff or Backoff(2.0, 120.0)
        self.max_consecutive_failures = max_consecutive_failures
        self.guest = guest

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
                    async with self._guest_slot(), self.budget.slot():
                        answer = await self.backend.answer(self.prompt_for(candidate))
                        if self.guest is not None:
                            self.guest.observe_latency(answer.latency_ms)
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

        backoffs_before = self.guest.backoffs if self.guest is not None else 0
        if self.guest is not None:
            self.guest.lowest = self.guest.limit
        await asyncio.gather(*(worker() for _ in range(self.budget.max_concurrent)))
        if self.guest is not None:
            stats.guest_backoffs = self.guest.backoffs - backoffs_before
            stats.guest_lowest = self.guest.lowest
        stats.left = len(queue)
        stats.stopped = stop[0] if stop and queue else None
        return stats

    def _guest_slot(self) -> Any:
        return self.guest.slot() if self.guest is not None else contextlib.nullcontext()

    def _row(self, candidate: Candidate) -> dict[str, Any]:
        return {
            "record_id": candidate.record_id,
            "reference_model": self.backend.model,
            "reference_endpoint": self.backend.name,
            "created_at": datetime.now(UTC),
        }

    def _store_rejection(self, candidate: Candidate, error: str) -> None:
        self._insert(shadow_comparisons, [self._row(candidate) | {"error": error[:2000]}])

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
        self._insert(shadow_comparisons, [row])
        if not c.agree and self.boost_disagreements:
            self._insert(samples, [{
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

    def _insert(self, table: Table, rows: list[dict[str, Any]]) -> None:
        with self.engine.begin() as conn:
            insert_ignore(conn, table, rows)
