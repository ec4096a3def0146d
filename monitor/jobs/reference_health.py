"""The reference servers' health as a time series: a scheduled scrape of each reference's /health and /metrics.

Every ``[shadow] health_interval`` (on one daemon at a time, like every job) each HTTP reference is scraped
(`inference.health.scrape`) and one ``reference_health`` row is stored: up or down (and why), the gauges as
read (running, waiting, KV-cache usage) and what happened since the previous scrape (requests finished, their
latency sum and p50/p95, time-to-first-token p50/p95, tokens, finish reasons), plus NVML GPU memory and
utilisation where this host has a GPU. The reference_* alert rules (`monitor.alerts.rules.reference`) read
these rows. In-process references have no server to scrape and are left out.

The previous scrape is kept in memory: after a daemon restart (or when another daemon takes the job over) the
first row's interval values cover the server's whole life and are therefore stored empty, not as a spike.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import Engine

from inference.client import display_url
from inference.health import Scrape, gpu_stats, interval, scrape
from inference.tls import client_context
from monitor.config import Config, ReferenceConfig
from monitor.jobs.scheduler import Job
from monitor.storage.db import insert_ignore
from monitor.storage.schema import reference_health

log = logging.getLogger(__name__)


def reference_label(reference: ReferenceConfig) -> str:
    """The label a reference's rows carry: the same one its ``shadow_comparisons`` rows carry (its URL without
    credentials when it has no name)."""
    return reference.name or display_url(reference.url.rstrip("/").removesuffix("/v1"))


@dataclass(slots=True)
class _Watched:
    reference: ReferenceConfig
    label: str
    base_url: str
    previous: Scrape | None = None


class ReferenceHealth:
    """Scrapes every HTTP reference and stores a row each; `run` is the job, `scrape_once` the same for tests
    and ``watchkeeper`` tools. Never raises for a reference's sake: a dead server is an ``up = false`` row."""

    def __init__(self, config: Config, *, timeout_s: float = 5.0, gpu: bool = True) -> None:
        self.timeout_s = timeout_s
        self.gpu = gpu
        self._watched = [_Watched(r, reference_label(r), r.url.rstrip("/").removesuffix("/v1"))
                         for r in config.shadow.references if r.backend == "http" and r.url]

    def run(self, engine: Engine, slot: datetime) -> None:
        del slot
        self.scrape_once(engine)

    def scrape_once(self, engine: Engine, now: datetime | None = None) -> list[dict[str, Any]]:
        """One row per reference, stored and returned."""
        now = now or datetime.now(UTC)
        scrapes = asyncio.run(self._scrape_all())
        gpu = gpu_stats() if self.gpu else None
        rows = [self._row(w, s, now, gpu) for w, s in zip(self._watched, scrapes, strict=True)]
        if rows:
            with engine.begin() as conn:
                insert_ignore(conn, reference_health, rows)
        for row in rows:
            if not row["up"]:
                log.warning("reference %s is down: %s", row["reference"], row["error"])
        return rows

    async def _scrape_all(self) -> list[Scrape]:
        async def one(w: _Watched) -> Scrape:
            headers = ({"Authorization": f"Bearer {w.reference.api_key.get_secret_value()}"}
                       if w.reference.api_key else {})
            async with httpx.AsyncClient(base_url=w.base_url, headers=headers, timeout=httpx.Timeout(self.timeout_s),
                                         verify=client_context(w.reference.ca_file)) as http:
                return await scrape(http, self.timeout_s)

        return list(await asyncio.gather(*(one(w) for w in self._watched)))

    def _row(self, w: _Watched, seen: Scrape, now: datetime, gpu: list[dict[str, float]] | None) -> dict[str, Any]:
        row: dict[str, Any] = {"reference": w.label, "ts": now, "model": w.reference.model, "up": seen.up,
                               "error": seen.error, "gpu": gpu}
        if not seen.up:
            return row
        row |= {"running": seen.gauges.get("running"), "waiting": seen.gauges.get("waiting"),
                "kv_cache_usage": seen.gauges.get("kv_cache_usage")}
        if w.previous is not None:
            delta = interval(seen, w.previous)
            row |= {"requests": delta.get("e2e_n"), "e2e_sum_s": delta.get("e2e_sum_s"),
                    "e2e_p50_s": delta.get("e2e_p50_s"), "e2e_p95_s": delta.get("e2e_p95_s"),
                    "ttft_p50_s": delta.get("ttft_p50_s"), "ttft_p95_s": delta.get("ttft_p95_s"),
                    "generation_tokens": delta.get("generation_tokens"),
                    "finished": {k: v for k, v in delta["finished"].items() if v} or None}
        w.previous = seen
        return row


def build_jobs(config: Config) -> list[Job]:
    """The scrape job, when an HTTP reference is configured."""
    health = ReferenceHealth(config)
    if not health._watched:
        return []
    return [Job("reference_health", config.shadow.health_interval, health.run)]
