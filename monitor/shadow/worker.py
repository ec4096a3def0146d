"""The daemon's side of shadow replay: a scheduled job that runs every configured reference's replayer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from detectors.base import Detector
from inference.backoff import Backoff
from inference.base import PermanentError, TransientError
from inference.budget import ReplayBudget
from inference.guest import GuestLimit
from monitor.config import Config
from monitor.shadow.agreement import AgreementDrift
from monitor.shadow.candidates import select_candidates, used_today
from monitor.shadow.replay import ReplayStats, ShadowReplayer, answer_detectors, build_backend, build_comparer

log = logging.getLogger(__name__)


class ShadowWorker:
    """The daemon's side of shadow replay: one replayer per configured reference, on a private event loop in
    its own thread. `run` is the scheduler job (``Job("shadow", config.shadow.interval, worker.run)``): one
    bounded run that ends before the next is due. `close` at shutdown.

    The worker never touches the ingest path; it only reads ``samples``/``records`` and writes its own rows.
    After each run it feeds the new comparisons to the agreement drift charts (`monitor.shadow.agreement`) unless
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
            backend = build_backend(reference)
            probe = getattr(backend, "queue_length", None)
            guest = GuestLimit(shadow.max_concurrent, max_waiting=shadow.guest_max_waiting,
                               latency_factor=shadow.guest_latency_factor, probe=probe) if shadow.guest else None
            self._replayers.append(ShadowReplayer(
                self.engine, backend, comparer,
                ReplayBudget(shadow.prompts_per_minute, shadow.max_concurrent, shadow.daily_cap),
                replay_as=shadow.replay_as, boost_disagreements=shadow.boost_disagreements,
                sampling_window_s=self.config.sampling.window_s,
                backoff=Backoff(shadow.outage_backoff_initial_s, shadow.outage_backoff_max_s),
                guest=guest,
            ))
            if self.config.drift.enabled:
                self._agreement[reference.model] = AgreementDrift.from_config(
                    self.config.drift, self.engine, reference.model)

    def run(self, engine: Engine | None = None, slot: datetime | None = None) -> dict[str, ReplayStats]:
        """One replay run for every reference, ending before ``shadow.interval`` has passed."""
        del engine, slot  # the scheduler's arguments; the worker keeps its own engine
        if not self.enabled:
            return {}
        if not self._replayers:  # loading the comparer's models must not eat the first run's replay window
            self._submit(self._build())
        deadline = time.monotonic() + 0.9 * self.config.shadow.interval.total_seconds()
        return self._submit(self._run(deadline))

    async def _run(self, deadline: float) -> dict[str, ReplayStats]:
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
        log.info("shadow replay %s: %d compared, %d disagree, %d rejected, %d left, %d guest back-offs%s",
                 replayer.backend.name, stats.compared, stats.disagreed, stats.rejected, stats.left,
                 stats.guest_backoffs,
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
