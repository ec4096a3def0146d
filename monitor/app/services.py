"""Everything the daemon runs beside the data path: scheduled jobs, the shadow worker, the review page.

None of it touches the ingest chain: jobs read and write the database on their own connections, on the
scheduler's threads, and each job runs on one instance at a time (see `monitor.jobs.scheduler`).
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine

from monitor.alerts import jobs as alert_jobs
from monitor.config import Config
from monitor.jobs import compare, drift, reference_health, reports, retention, rollups
from monitor.jobs.scheduler import Job, Scheduler
from monitor.shadow.worker import ShadowWorker

log = logging.getLogger(__name__)


def build_jobs(config: Config, engine: Engine) -> tuple[list[Job], list[object]]:
    """The periodic jobs this configuration asks for, and the objects that own resources to close."""
    jobs = [
        *alert_jobs.build_jobs(config),
        *reports.build_jobs(config),
        *rollups.build_jobs(config),
        *retention.build_jobs(config),
        *drift.build_jobs(config),
        *compare.build_jobs(config),
        *reference_health.build_jobs(config),
    ]
    owners: list[object] = []
    if config.shadow.references:
        worker = ShadowWorker(config, engine)
        jobs.append(Job("shadow-replay", config.shadow.interval, worker.run))
        owners.append(worker)
    return jobs, owners


class Services:
    """Start with `start()`, stop with `stop()`; safe to stop twice."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.scheduler: Scheduler | None = None
        self._owners: list[object] = []
        self._review: object | None = None

    def start(self) -> None:
        if self.config.scheduler.enabled:
            jobs, self._owners = build_jobs(self.config, self.engine)
            self.scheduler = Scheduler(self.engine, jobs, owner=self.config.scheduler.owner,
                                       tick=self.config.scheduler.tick)
            self.scheduler.start()
        if self.config.review.serve_in_daemon:
            from monitor.review.app import ReviewServer  # the web stack loads only where the page is served

            server = ReviewServer(self.engine, self.config)
            server.start()
            self._review = server
            log.info("review page on http://%s:%s/", self.config.review.host, server.port)

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None
        for owner in self._owners:
            owner.close()  # type: ignore[attr-defined]
        self._owners = []
        if self._review is not None:
            self._review.stop()  # type: ignore[attr-defined]
            self._review = None
